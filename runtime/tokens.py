"""Access tokens: EdDSA (Ed25519) JWTs with ``sub``, ``role``, ``jti``, ``iss``, ``iat``, ``exp``.

Only the auth service signs (with the private :class:`KeyRing`); every verifier holds
:class:`PublicKeys` alone and accepts ``alg: EdDSA`` only, so a token "signed" HS256 with a
public key, an ``alg: none`` token or one naming a key outside the set is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from sutazai.runtime.errors import MeshRuntimeError
from sutazai.runtime.keys import ALGORITHM, KeyRing, PublicKeys
from sutazai.runtime.roles import Role


class InvalidTokenError(MeshRuntimeError):
    """A token that is malformed, forged, expired, revoked or from another issuer."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling, as proven by a verified access token."""

    user_id: str
    username: str
    role: Role
    token_id: str
    """The token's ``jti`` (what logout revokes)."""
    expires_at: datetime
    issued_at: datetime
    """The token's ``iat`` (whole seconds): account revocations refuse tokens issued before."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed access token and what it says."""

    token: str
    identity: Identity


class TokenIssuer:
    """Signs access tokens with the ring's newest key."""

    def __init__(
        self,
        keys: Callable[[], KeyRing],
        *,
        issuer: str,
        ttl: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._ttl = ttl
        self._clock = clock

    def issue(self, *, user_id: str, username: str, role: Role) -> IssuedToken:
        """Sign a token for a user."""
        now = self._clock()
        identity = Identity(
            user_id=user_id,
            username=username,
            role=role,
            token_id=uuid.uuid4().hex,
            # Whole seconds, as in the token's `exp`: the issued identity is what verify returns.
            expires_at=(now + self._ttl).replace(microsecond=0),
            issued_at=now.replace(microsecond=0),
        )
        key = self._keys().signing
        claims = {
            "iss": self._issuer,
            "sub": user_id,
            "name": username,
            "role": role.label,
            "jti": identity.token_id,
            "iat": int(identity.issued_at.timestamp()),
            "exp": int(identity.expires_at.timestamp()),
        }
        token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
        return IssuedToken(token, identity)


class TokenVerifier:
    """Checks signature (by ``kid``), algorithm, issuer, expiry and claims of a token.

    The public keys are asked for on every check (it is cheap: the caller caches them), so a
    rotated key is honoured as soon as they are reloaded. A client sends the same token on every
    call, so verified tokens are remembered (as Envoy's ``jwt_authn`` does) until they expire or
    the keys change; revocation is checked separately, on every call, by the caller.
    """

    def __init__(
        self, keys: Callable[[], PublicKeys], *, issuer: str, cache_size: int = 4096
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._cache_size = cache_size
        self._verified: dict[str, tuple[PublicKeys, Identity]] = {}

    def verify(self, token: str) -> Identity:
        """The identity a token proves.

        Raises:
            InvalidTokenError: for any token that must not be trusted.
        """
        keys = self._keys()
        remembered = self._verified.get(token)
        if remembered is not None:
            verified_with, identity = remembered
            if verified_with is keys and identity.expires_at > datetime.now(UTC):
                return identity
            del self._verified[token]
        identity = self._verify(token, keys)
        if len(self._verified) >= self._cache_size:
            # Dicts keep insertion order: drop the oldest entry.
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (keys, identity)
        return identity

    def _verify(self, token: str, keys: PublicKeys) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
            key = keys.find(str(header.get("kid", "")))
            if key is None:
                raise InvalidTokenError("token signed with an unknown key")
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                options={"require": ["exp", "iat", "iss", "sub", "jti", "role"]},
            )
            role = Role.from_label(str(claims["role"]))
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(str(exc)) from exc
        except ValueError as exc:
            raise InvalidTokenError(f"bad role claim: {exc}") from exc
        return Identity(
            user_id=str(claims["sub"]),
            username=str(claims.get("name", "")),
            role=role,
            token_id=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
        )
