"""Key rings in temp dirs and tokens signed directly with PyJWT, good and bad."""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from hashlib import sha256
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sutazai.runtime.key_files import edit_key_ring, ensure_key_ring
from sutazai.runtime.keys import KeyRing, PublicKeys, SigningKey

ISSUER = "sutazai-test"
TEST_JWKS = KeyRing((SigningKey.generate(),)).public
"""Public keys for snapshots that are built but never checked against a token."""
OTHER_JWKS = KeyRing((SigningKey.generate(),)).public
"""Other ones, as after a rotation."""


class KeyRingFile:
    """A private ring at ``path`` and its public JWKS beside it, edited the way operators do."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.jwks_path = path.with_name("jwks.json")
        self.ring = ensure_key_ring(self.path, self.jwks_path)

    @property
    def public(self) -> PublicKeys:
        """The public keys of the ring."""
        return self.ring.public

    def rotate(self) -> SigningKey:
        """Add a new signing key; returns it."""
        self.ring = edit_key_ring(self.path, self.jwks_path, lambda ring: ring.rotated())
        return self.ring.signing

    def retire(self, key: SigningKey) -> None:
        """Remove ``key`` from the ring."""
        self.ring = edit_key_ring(self.path, self.jwks_path, lambda ring: ring.retired(key.kid))


def claims(
    *, name: str = "alice", role: str = "user", issuer: str = ISSUER, ttl: float = 300
) -> dict[str, object]:
    """Claims shaped like the auth service's."""
    now = int(time.time())
    return {
        "iss": issuer,
        "sub": f"user-{name}",
        "name": name,
        "role": role,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": int(now + ttl),
    }


def sign(
    key: SigningKey,
    *,
    name: str = "alice",
    role: str = "user",
    issuer: str = ISSUER,
    ttl: float = 300,
) -> str:
    """A token shaped like the auth service's, signed with ``key`` (EdDSA)."""
    return jwt.encode(
        claims(name=name, role=role, issuer=issuer, ttl=ttl),
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid},
    )


def hs256_with_public_key(key: SigningKey, payload: Mapping[str, object] | None = None) -> str:
    """The algorithm-confusion forgery: HS256 "signed" with the public key as the HMAC secret.

    Anyone can read the public key; a verifier that let the token pick its algorithm would use
    those bytes as a shared secret and accept this. PyJWT refuses to build it (it spots key
    material), so the token is assembled by hand. ``payload`` defaults to an admin's claims.
    """
    raw = key.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    body = payload if payload is not None else claims(name="mallory", role="admin")
    signing_input = f"{_b64(header)}.{_b64(body)}"
    mac = hmac.new(raw, signing_input.encode(), sha256).digest()
    return f"{signing_input}.{_b64bytes(mac)}"


def unsigned(key: SigningKey, payload: Mapping[str, object] | None = None) -> str:
    """An ``alg: none`` token naming a real key id, with an empty signature."""
    header = {"alg": "none", "typ": "JWT", "kid": key.kid}
    body = payload if payload is not None else claims(name="mallory", role="admin")
    return f"{_b64(header)}.{_b64(body)}."


def bearer(token: str) -> dict[str, str]:
    """HTTP headers carrying ``token``."""
    return {"authorization": f"Bearer {token}"}


def _b64(document: Mapping[str, object]) -> str:
    return _b64bytes(json.dumps(document, separators=(",", ":")).encode())


def _b64bytes(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
