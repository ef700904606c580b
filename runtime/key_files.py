"""The two key files: the private ring (0600) and the public JWKS derived from it.

- ``<state dir>/jwt_keys.json`` (:attr:`MeshSettings.keys_file`): the private Ed25519 keys, as
  private JWKs, mode 0600. Read only by the auth service (to sign) and ``sutazai keys``.
- ``<state dir>/jwks.json`` (:attr:`MeshSettings.jwks_file`): the public JWKS, mode 0644. Read
  by the gateway (which hands it to Envoy) and every service's guard. It never holds ``d``.

Every change of the ring (first start, upgrade, rotation, retirement) goes through
:func:`edit_key_ring` or :func:`ensure_key_ring`: under an exclusive lock, each file replaced
atomically, the public file first listing every key that may sign before the private file
changes, so no verifier ever lags behind the signer's file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import structlog

from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.files import exclusive_lock, replace_file
from sutazai.runtime.keys import KeyRing, PublicKeys, SigningKey

log = structlog.get_logger(__name__)


class LegacyKeyRingError(ConfigurationError):
    """The private key file is an HS256 ring of an older release."""


def load_key_ring(path: Path) -> KeyRing:
    """Read the private ring.

    Raises:
        LegacyKeyRingError: the file is an HS256 ring ('sutazai up' replaces it).
        ConfigurationError: missing, malformed, empty, or readable by others.
    """
    try:
        mode = path.stat().st_mode & 0o777
        raw = json.loads(path.read_text(encoding="utf-8"))
        items = raw["keys"]
        if any(isinstance(item, dict) and "secret" in item for item in items):
            raise LegacyKeyRingError(
                f"{path} holds HS256 keys of an older release; 'sutazai up' replaces them"
            )
        keys = tuple(SigningKey.from_private_jwk(item) for item in items)
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"no signing keys at {path}: start the mesh with 'sutazai up' first"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigurationError(f"cannot read signing keys {path}: {exc}") from exc
    if mode & 0o077:
        raise ConfigurationError(f"{path} is mode {mode:o}; it must be 0600")
    if not keys:
        raise ConfigurationError(f"{path} holds no signing key")
    return KeyRing(keys)


def load_public_keys(path: Path) -> PublicKeys:
    """Read the public JWKS.

    Raises:
        ConfigurationError: missing, malformed, empty, writable by others, or holding anything
            but public Ed25519 keys.
    """
    try:
        mode = path.stat().st_mode & 0o777
        document = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"no public keys at {path}: start the mesh with 'sutazai up' first"
        ) from exc
    except OSError as exc:
        raise ConfigurationError(f"cannot read public keys {path}: {exc}") from exc
    # Public, so others may read it; whoever may write it could make the mesh trust their key.
    if mode & 0o022:
        raise ConfigurationError(f"{path} is mode {mode:o}; others must not write it (0644)")
    try:
        return PublicKeys.from_jwks(document)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc


def edit_key_ring(
    keys_file: Path, jwks_file: Path, change: Callable[[KeyRing], KeyRing]
) -> KeyRing:
    """Apply ``change`` to the private ring under the ring's lock; both files follow. The new ring.

    Raises:
        ConfigurationError: the ring cannot be read, or ``change`` refused (e.g. retiring the
            signing key); nothing is written then.
    """
    with exclusive_lock(_lock_file(keys_file)):
        ring = load_key_ring(keys_file)
        changed = change(ring)
        _publish(keys_file, jwks_file, before=ring, after=changed)
    return changed


def ensure_key_ring(keys_file: Path, jwks_file: Path) -> KeyRing:
    """The private ring, generated with one key on first use; the public JWKS rewritten from it.

    An HS256 ring of an older release is replaced by a fresh Ed25519 ring (logged once): the
    tokens it signed are no longer accepted, so everyone signs in again.

    Raises:
        ConfigurationError: the existing ring is malformed or readable by others.
    """
    with exclusive_lock(_lock_file(keys_file)):
        before: KeyRing | None = None
        if keys_file.exists():
            try:
                before = load_key_ring(keys_file)
            except LegacyKeyRingError:
                log.warning(
                    "keys.hs256_ring_replaced",
                    path=str(keys_file),
                    effect="tokens signed with the old HS256 keys are refused; sign in again",
                )
        ring = before or KeyRing((SigningKey.generate(),))
        _publish(keys_file, jwks_file, before=before, after=ring)
    return ring


def _publish(keys_file: Path, jwks_file: Path, *, before: KeyRing | None, after: KeyRing) -> None:
    """Write ``after`` to both files, never letting a key sign before verifiers know it."""
    known = before.public.keys if before is not None else ()
    known_ids = {k.kid for k in known}
    added = tuple(k for k in after.public.keys if k.kid not in known_ids)
    if added or not jwks_file.exists():
        replace_file(jwks_file, PublicKeys((*known, *added)).jwks(), mode=0o644)
    if after is not before:
        replace_file(keys_file, _private_document(after), mode=0o600)
    replace_file(jwks_file, after.public.jwks(), mode=0o644)


def _private_document(ring: KeyRing) -> str:
    return json.dumps({"keys": [k.private_jwk() for k in ring.keys]}, indent=2)


def _lock_file(keys_file: Path) -> Path:
    return keys_file.with_name(f".{keys_file.name}.lock")
