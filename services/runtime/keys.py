"""Token signing keys: a small ring kept in a 0600 JSON file.

The newest key signs; every key in the ring verifies. Rotation adds a key (tokens signed with the
old one keep working until they expire) and later retires the old one. Envoy gets the same ring
as ``local_jwks`` from the gateway, which re-reads the file when it changes.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sutazai.services.runtime.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One HS256 key and its id (the JWT ``kid`` header)."""

    kid: str
    secret: bytes
    created_at: datetime

    @classmethod
    def generate(cls, now: datetime | None = None) -> SigningKey:
        """A fresh 256-bit key named after its creation time."""
        created = now or datetime.now(UTC)
        kid = f"k{created:%Y%m%d%H%M%S}-{secrets.token_hex(2)}"
        return cls(kid=kid, secret=secrets.token_bytes(32), created_at=created)

    def jwk(self) -> dict[str, str]:
        """The key as a JWK (``kty: oct``; base64url without padding, as Envoy requires)."""
        k = base64.urlsafe_b64encode(self.secret).rstrip(b"=").decode()
        return {"kty": "oct", "alg": "HS256", "kid": self.kid, "k": k}


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The keys in force, oldest first; the last one signs."""

    keys: tuple[SigningKey, ...]

    @property
    def signing(self) -> SigningKey:
        """The key new tokens are signed with."""
        return self.keys[-1]

    def find(self, kid: str) -> SigningKey | None:
        """The key with this id, if it is in the ring."""
        return next((k for k in self.keys if k.kid == kid), None)

    def jwks(self) -> str:
        """The ring as a JWKS document (for Envoy's ``local_jwks``)."""
        return json.dumps({"keys": [k.jwk() for k in self.keys]}, sort_keys=True)

    def rotated(self, now: datetime | None = None) -> KeyRing:
        """The ring with a new signing key added."""
        return KeyRing((*self.keys, SigningKey.generate(now)))

    def retired(self, kid: str) -> KeyRing:
        """The ring without ``kid``.

        Raises:
            ConfigurationError: the key is unknown, or is the only key left.
        """
        if self.find(kid) is None:
            raise ConfigurationError(f"no signing key {kid!r}")
        remaining = tuple(k for k in self.keys if k.kid != kid)
        if not remaining:
            raise ConfigurationError("cannot retire the last signing key")
        return KeyRing(remaining)


def load_key_ring(path: Path) -> KeyRing:
    """Read a key ring.

    Raises:
        ConfigurationError: missing, malformed, empty, or readable by others.
    """
    try:
        mode = path.stat().st_mode & 0o777
        raw = json.loads(path.read_text(encoding="utf-8"))
        keys = tuple(
            SigningKey(
                kid=str(item["kid"]),
                secret=base64.urlsafe_b64decode(str(item["secret"]) + "=="),
                created_at=datetime.fromisoformat(str(item["created_at"])),
            )
            for item in raw["keys"]
        )
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"no signing keys at {path}: start the mesh with 'sutazai up' first"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"cannot read signing keys {path}: {exc}") from exc
    if mode & 0o077:
        raise ConfigurationError(f"{path} is mode {mode:o}; it must be 0600")
    if not keys:
        raise ConfigurationError(f"{path} holds no signing key")
    return KeyRing(keys)


def save_key_ring(path: Path, ring: KeyRing) -> None:
    """Write a key ring atomically with mode 0600."""
    document = {
        "keys": [
            {
                "kid": k.kid,
                "secret": base64.urlsafe_b64encode(k.secret).decode(),
                "created_at": k.created_at.isoformat(),
            }
            for k in ring.keys
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def ensure_key_ring(path: Path) -> KeyRing:
    """The key ring at ``path``, generated with one key on first use."""
    if path.exists():
        return load_key_ring(path)
    ring = KeyRing((SigningKey.generate(),))
    save_key_ring(path, ring)
    return ring


def watched_key_ring(path: Path) -> Callable[[], KeyRing]:
    """The key ring at ``path``, re-read whenever the file changes (rotation needs no restart).

    Each call costs one ``stat``; the file is parsed only after it changed.
    """
    seen: tuple[int, int, int] | None = None
    ring: KeyRing | None = None

    def current() -> KeyRing:
        nonlocal seen, ring
        stamp = _stamp(path)
        if ring is None or stamp != seen:
            ring, seen = load_key_ring(path), stamp
        return ring

    return current


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return (0, 0, 0)
    return (info.st_ino, info.st_mtime_ns, info.st_size)
