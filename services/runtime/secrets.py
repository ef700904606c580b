"""Secrets generated on first start and kept, mode 0600, in the state directory.

There are no default passwords: an embedded PostgreSQL, Redis or NATS gets a random password the
first time the mesh starts, and every process of the mesh reads it from this file afterwards.

The file (``<state dir>/secrets.json``)::

    {
      "postgres_password": "...",      # bootstrap superuser of the embedded PostgreSQL
      "postgres_app_password": "...",  # the application role every service connects as
      "redis_password": "...",
      "nats_passwords": {"admin": "...", "gateway": "...", "system": "..."}
    }

A secret that is missing (a state directory from an older release, a service added to the
catalog) is generated and added by :func:`ensure_secrets`; existing ones are never changed.
"""

from __future__ import annotations

import json
import secrets as _random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from sutazai.services.runtime.errors import ConfigurationError
from sutazai.services.runtime.files import exclusive_lock, replace_file

SECRETS_FILE = "secrets.json"
_LOCK_FILE = ".secrets.lock"
_PASSWORDS = ("postgres_password", "postgres_app_password", "redis_password")
"""The single-password fields, in file order."""
_NATS_PASSWORDS = "nats_passwords"


def _new_password() -> str:
    """256 random bits, URL-safe (no quoting needed in DSNs, URLs or configs)."""
    return _random.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class MeshSecrets:
    """Credentials of the embedded infrastructure (signing keys live in :mod:`.keys`)."""

    postgres_password: str
    """The embedded PostgreSQL's bootstrap superuser: administration by the supervisor only."""
    postgres_app_password: str
    """The non-superuser application role that services connect as."""
    redis_password: str
    nats_passwords: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """One password per NATS principal of the embedded server (``admin``, ``gateway``, each
    service of the catalog)."""

    def nats_password(self, principal: str) -> str:
        """The password of one NATS principal.

        Raises:
            ConfigurationError: no password was generated for ``principal``.

        """
        try:
            return self.nats_passwords[principal]
        except KeyError:
            known = ", ".join(sorted(self.nats_passwords)) or "none"
            raise ConfigurationError(
                f"no NATS password for principal {principal!r} (known: {known}); "
                "'sutazai up' generates one for every service of deploy/mesh.toml"
            ) from None

    @classmethod
    def generate(cls, nats_principals: Iterable[str] = ()) -> MeshSecrets:
        """A fresh set of random secrets (256 bits each)."""
        return _parse(Path(SECRETS_FILE), _completed({}, nats_principals))


def secrets_path(state_dir: Path) -> Path:
    """Where the secrets file of a state directory lives."""
    return state_dir / SECRETS_FILE


def load_secrets(state_dir: Path) -> MeshSecrets:
    """Read the secrets of a state directory.

    Raises:
        ConfigurationError: the file is missing, unreadable, malformed, lacks a secret, or is
            readable by others.

    """
    path = secrets_path(state_dir)
    return _parse(path, _read(path))


def ensure_secrets(state_dir: Path, *, nats_principals: Iterable[str] = ()) -> MeshSecrets:
    """Return the state directory's secrets, generating and storing what is missing.

    On first use every secret is generated; afterwards only missing ones are added (a NATS
    principal not seen before, a field a newer release introduced). The file is replaced
    atomically with mode 0600, under a lock, so a crash or a concurrent caller never leaves a
    half-written, world-readable or doubly generated secret.

    Raises:
        ConfigurationError: the existing file is unreadable, malformed or readable by others.

    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = secrets_path(state_dir)
    with exclusive_lock(state_dir / _LOCK_FILE):
        raw = _read(path) if path.exists() else {}
        completed = _completed(raw, nats_principals)
        secrets = _parse(path, completed)
        if completed != raw:
            replace_file(path, json.dumps(completed, indent=2))
    return secrets


def _read(path: Path) -> dict[str, object]:
    try:
        mode = path.stat().st_mode & 0o777
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"no secrets in {path.parent}: start the mesh with 'sutazai up' first"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    if mode & 0o077:
        raise ConfigurationError(f"{path} is mode {mode:o}; it must be 0600")
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path} is not a JSON object")
    return raw


def _completed(raw: Mapping[str, object], nats_principals: Iterable[str]) -> dict[str, object]:
    """``raw`` with every missing secret generated; unknown (retired) fields are dropped."""
    completed: dict[str, object] = {name: raw.get(name) or _new_password() for name in _PASSWORDS}
    nats = raw.get(_NATS_PASSWORDS, {})
    # A malformed value is kept as it is, for _parse to reject, rather than silently replaced.
    if isinstance(nats, dict):
        nats = {**nats, **{p: _new_password() for p in nats_principals if p not in nats}}
    completed[_NATS_PASSWORDS] = nats
    return completed


def _parse(path: Path, raw: Mapping[str, object]) -> MeshSecrets:
    passwords: dict[str, str] = {}
    for name in _PASSWORDS:
        value = raw.get(name)
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{path} lacks {name}")
        passwords[name] = value
    nats = raw.get(_NATS_PASSWORDS, {})
    if not isinstance(nats, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in nats.items()
    ):
        raise ConfigurationError(f"{path}: {_NATS_PASSWORDS} must map principal names to strings")
    return MeshSecrets(**passwords, nats_passwords=MappingProxyType(dict(nats)))
