"""Key rings in temp dirs and tokens signed directly with PyJWT, good and bad."""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from sutazai.services.runtime.keys import KeyRing, SigningKey, save_key_ring

ISSUER = "sutazai-test"
TEST_JWKS = KeyRing((SigningKey.generate(),)).jwks()
"""A JWKS for snapshots that are built but never checked against a token."""
OTHER_JWKS = KeyRing((SigningKey.generate(),)).jwks()
"""Another one, as after a rotation."""


class KeyRingFile:
    """A key ring saved at ``path``, rotated and retired the way operators do."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ring = KeyRing((SigningKey.generate(),))
        save_key_ring(path, self.ring)

    def rotate(self) -> SigningKey:
        """Add a new signing key; returns it."""
        self.ring = self.ring.rotated()
        save_key_ring(self.path, self.ring)
        return self.ring.signing

    def retire(self, key: SigningKey) -> None:
        """Remove ``key`` from the ring."""
        self.ring = self.ring.retired(key.kid)
        save_key_ring(self.path, self.ring)


def sign(
    key: SigningKey,
    *,
    name: str = "alice",
    role: str = "user",
    issuer: str = ISSUER,
    ttl: float = 300,
    algorithm: str = "HS256",
) -> str:
    """A token shaped like the auth service's, signed with ``key``."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": f"user-{name}",
        "name": name,
        "role": role,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": int(now + ttl),
    }
    with warnings.catch_warnings():
        # HS384/HS512 with the ring's 32-byte key: the point is a token Envoy must refuse.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, key.secret, algorithm=algorithm, headers={"kid": key.kid})


def unsigned(key: SigningKey, *, name: str = "mallory") -> str:
    """An ``alg: none`` token naming a real key id, with an empty signature."""
    now = int(time.time())
    header = {"alg": "none", "typ": "JWT", "kid": key.kid}
    claims = {
        "iss": ISSUER,
        "sub": name,
        "name": name,
        "role": "admin",
        "iat": now,
        "exp": now + 300,
    }
    return f"{_b64(header)}.{_b64(claims)}."


def bearer(token: str) -> dict[str, str]:
    """HTTP headers carrying ``token``."""
    return {"authorization": f"Bearer {token}"}


def _b64(document: Mapping[str, object]) -> str:
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
