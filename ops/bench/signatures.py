"""Cost of one token signature check in-process: EdDSA (Ed25519) against ES256 (P-256).

Both are verified by Envoy's ``jwt_authn``; this measures what a service's guard pays for a
token it has not seen yet (PyJWT over ``cryptography``), and what the auth service pays to sign.
No mesh is needed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Far-future expiry: the token stays valid however long the run takes.
_CLAIMS = {"iss": "sutazai", "sub": "u", "name": "n", "role": "user", "iat": 0, "exp": 2**31}


def _per_call_us(function: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return round((time.perf_counter() - started) / calls * 1e6, 1)


def _algorithm(
    name: str, key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey, calls: int
) -> dict[str, object]:
    claims = {**_CLAIMS, "jti": uuid.uuid4().hex}
    token = jwt.encode(claims, key, algorithm=name)
    public = key.public_key()
    return {
        "algorithm": name,
        "sign_us": _per_call_us(lambda: jwt.encode(claims, key, algorithm=name), calls),
        "verify_us": _per_call_us(lambda: jwt.decode(token, public, algorithms=[name]), calls),
        "token_bytes": len(token),
    }


def compare(calls: int) -> dict[str, object]:
    """Microseconds per sign and per verify, for each algorithm, over ``calls`` calls each."""
    return {
        "benchmark": "signatures",
        "calls": calls,
        "runs": [
            _algorithm("EdDSA", Ed25519PrivateKey.generate(), calls),
            _algorithm("ES256", ec.generate_private_key(ec.SECP256R1()), calls),
        ],
    }
