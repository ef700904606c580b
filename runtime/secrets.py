"""Secrets generated on first start and kept, mode 0600, in the state directory.

There are no default passwords: an embedded PostgreSQL, Redis or NATS gets a random password the
first time the mesh starts. Only the supervisor and the administrator's tools (the CLI) read this
file; every child process gets its own credentials only (:mod:`.credentials`).

The file (``<state dir>/secrets.json``)::

    {
      "postgres_password": "...",      # bootstrap superuser of the embedded PostgreSQL
      "redis_password": "...",         # Redis's default user: the supervisor and tools only
      "nats_passwords": {"admin": "...", "gateway": "...", "system": "..."},
      "postgres_passwords": {"auth": "...", "system": "..."},  # one role per service
      "redis_passwords": {"auth": "...", "system": "..."}      # one ACL user per service
    }

A secret that is missing (a state directory from an older release, a service added to the
catalog) is generated and added by :func:`ensure_secrets`; existing ones are never changed.
Retired fields (the shared ``postgres_app_password`` of older releases) are dropped, and so,
when the caller names the whole mesh (``retire=True``), are the passwords of principals and
services it no longer has.
"""

from __future__ import annotations

import json
import secrets as _random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.files import exclusive_lock, replace_file

SECRETS_FILE = "secrets.json"
_LOCK_FILE = ".secrets.lock"
_PASSWORDS = ("postgres_password", "redis_password")
"""The single-password fields, in file order."""
_NATS_PASSWORDS = "nats_passwords"
_POSTGRES_PASSWORDS = "postgres_passwords"
_REDIS_PASSWORDS = "redis_passwords"
_MAPS = (_NATS_PASSWORDS, _POSTGRES_PASSWORDS, _REDIS_PASSWORDS)
"""The per-principal fields: principal name to password."""


def _new_password() -> str:
    """256 random bits, URL-safe (no quoting needed in DSNs, URLs or configs)."""
    return _random.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class MeshSecrets:
    """Credentials of the embedded infrastructure (signing keys live in :mod:`.keys`)."""

    postgres_password: str
    """The embedded PostgreSQL's bootstrap superuser: administration by the supervisor only."""
    redis_password: str
    """The embedded Redis's default user: the supervisor and the administrator's tools only."""
    nats_passwords: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """One password per NATS principal of the embedded server (``admin``, ``gateway``, each
    service of the catalog)."""
    postgres_passwords: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """One password per service: its own PostgreSQL role."""
    redis_passwords: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """One password per service: its own Redis ACL user."""

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
    def generate(
        cls, nats_principals: Iterable[str] = (), services: Iterable[str] = ()
    ) -> MeshSecrets:
        """A fresh set of random secrets (256 bits each)."""
        return _parse(Path(SECRETS_FILE), _completed({}, nats_principals, services))


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


def ensure_secrets(
    state_dir: Path,
    *,
    nats_principals: Iterable[str] = (),
    services: Iterable[str] = (),
    retire: bool = False,
) -> MeshSecrets:
    """Return the state directory's secrets, generating and storing what is missing.

    On first use every secret is generated; afterwards only missing ones are added (a NATS
    principal or a service (PostgreSQL role, Redis user) not seen before, a field a newer
    release introduced). With ``retire``, ``nats_principals`` and ``services`` are the whole
    mesh and the passwords of any other (a service or agent removed from the catalog) are
    dropped; without it they are kept (the caller may name only part of the mesh). The file is
    replaced
    atomically with mode 0600, under a lock, so a crash or a concurrent caller never leaves a
    half-written, world-readable or doubly generated secret.

    Raises:
        ConfigurationError: the existing file is unreadable, malformed or readable by others.

    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = secrets_path(state_dir)
    with exclusive_lock(state_dir / _LOCK_FILE):
        raw = _read(path) if path.exists() else {}
        completed = _completed(raw, nats_principals, services, retire=retire)
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
    refuse_exposed(path, mode)
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path} is not a JSON object")
    return raw


def _completed(
    raw: Mapping[str, object],
    nats_principals: Iterable[str],
    services: Iterable[str],
    *,
    retire: bool = False,
) -> dict[str, object]:
    """``raw`` with every missing secret generated; unknown (retired) fields are dropped.

    With ``retire`` the password maps keep only the names wanted.
    """
    completed: dict[str, object] = {name: raw.get(name) or _new_password() for name in _PASSWORDS}
    services = list(services)
    wanted = {
        _NATS_PASSWORDS: list(nats_principals),
        _POSTGRES_PASSWORDS: services,
        _REDIS_PASSWORDS: services,
    }
    for field_name, names in wanted.items():
        passwords = raw.get(field_name, {})
        # A malformed value is kept as it is, for _parse to reject, rather than silently replaced.
        if isinstance(passwords, dict):
            kept = {n: p for n, p in passwords.items() if n in names} if retire else passwords
            passwords = {**kept, **{n: _new_password() for n in names if n not in passwords}}
        completed[field_name] = passwords
    return completed


def _parse(path: Path, raw: Mapping[str, object]) -> MeshSecrets:
    passwords: dict[str, str] = {}
    for name in _PASSWORDS:
        value = raw.get(name)
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{path} lacks {name}")
        passwords[name] = value
    maps: dict[str, Mapping[str, str]] = {}
    for name in _MAPS:
        value = raw.get(name, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
        ):
            raise ConfigurationError(f"{path}: {name} must map principal names to strings")
        maps[name] = MappingProxyType(dict(value))
    return MeshSecrets(
        postgres_password=passwords["postgres_password"],
        redis_password=passwords["redis_password"],
        nats_passwords=maps[_NATS_PASSWORDS],
        postgres_passwords=maps[_POSTGRES_PASSWORDS],
        redis_passwords=maps[_REDIS_PASSWORDS],
    )


def refuse_exposed(path: Path, mode: int) -> None:
    """Refuse a secret-holding file that its group or other users may read or write.

    Raises:
        ConfigurationError: ``mode`` grants any permission beyond the owner's.

    """
    if mode & 0o077:
        raise ConfigurationError(f"{path} is mode {mode:o}; it must be 0600")
