"""Secrets generated on first start and kept, mode 0600, in the state directory.

There are no default passwords: an embedded PostgreSQL, Redis or NATS gets a random password the
first time the mesh starts, and every process of the mesh reads it from this file afterwards.
"""

from __future__ import annotations

import json
import os
import secrets as _random
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from sutazai.services.runtime.errors import ConfigurationError

SECRETS_FILE = "secrets.json"


@dataclass(frozen=True, slots=True)
class MeshSecrets:
    """Credentials of the embedded infrastructure and the token signing key."""

    postgres_password: str
    redis_password: str
    nats_password: str
    jwt_signing_key: str

    @classmethod
    def generate(cls) -> MeshSecrets:
        """Create a fresh set of random secrets (256 bits each)."""
        return cls(**{f.name: _random.token_urlsafe(32) for f in fields(cls)})


def secrets_path(state_dir: Path) -> Path:
    """Where the secrets file of a state directory lives."""
    return state_dir / SECRETS_FILE


def load_secrets(state_dir: Path) -> MeshSecrets:
    """Read the secrets of a state directory.

    Raises:
        ConfigurationError: the file is missing, unreadable, malformed, or readable by others.

    """
    path = secrets_path(state_dir)
    try:
        mode = path.stat().st_mode & 0o777
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"no secrets in {state_dir}: start the mesh with 'sutazai up' first"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    if mode & 0o077:
        raise ConfigurationError(f"{path} is mode {mode:o}; it must be 0600")
    try:
        return MeshSecrets(**{f.name: str(raw[f.name]) for f in fields(MeshSecrets)})
    except KeyError as exc:
        raise ConfigurationError(f"{path} lacks {exc.args[0]}") from exc


def ensure_secrets(state_dir: Path) -> MeshSecrets:
    """Return the state directory's secrets, generating and storing them on first use.

    The file is created with mode 0600 atomically (written to a private temporary file, then
    renamed), so a crash never leaves a half-written or world-readable secrets file.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = secrets_path(state_dir)
    if path.exists():
        return load_secrets(state_dir)
    generated = MeshSecrets.generate()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(asdict(generated), handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return generated
