"""Token signing keys: Ed25519 key pairs (JWT ``alg: EdDSA``) and their public JWKS.

The newest key of a :class:`KeyRing` signs; every key verifies. Rotation adds a key (tokens
signed with the old one keep working until they expire) and later retires the old one. Only
the auth service and the ``sutazai keys`` command hold the private ring; Envoy, the gateway and
every other service see :class:`PublicKeys`, whose JWKS carries no private part (``d``). Files
are in :mod:`sutazai.runtime.key_files`.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from sutazai.runtime.errors import ConfigurationError

ALGORITHM: Final = "EdDSA"
"""The JWT ``alg`` of every token; the only one any verifier accepts."""
_KTY: Final = "OKP"
_CRV: Final = "Ed25519"


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    """The public half of a signing key and its id (the JWT ``kid`` header)."""

    kid: str
    public_key: Ed25519PublicKey

    def jwk(self) -> dict[str, str]:
        """The key as a public JWK (``kty: OKP``, ``crv: Ed25519``; base64url without padding)."""
        raw = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"kty": _KTY, "crv": _CRV, "alg": ALGORITHM, "kid": self.kid, "x": _b64(raw)}

    @classmethod
    def from_jwk(cls, jwk: object) -> VerifyingKey:
        """Parse a public Ed25519 JWK.

        Raises:
            ConfigurationError: not an Ed25519 public JWK, or one carrying a private part.
        """
        if not isinstance(jwk, dict):
            raise ConfigurationError("a JWK must be a JSON object")
        if "d" in jwk:
            raise ConfigurationError(f"JWK {jwk.get('kid')!r} holds a private key")
        if (
            jwk.get("kty") != _KTY
            or jwk.get("crv") != _CRV
            or jwk.get("alg", ALGORITHM) != ALGORITHM
        ):
            raise ConfigurationError(f"JWK {jwk.get('kid')!r} is not an Ed25519 (EdDSA) key")
        try:
            public = Ed25519PublicKey.from_public_bytes(_unb64(str(jwk["x"])))
            return cls(kid=str(jwk["kid"]), public_key=public)
        except (KeyError, ValueError) as exc:
            raise ConfigurationError(f"malformed JWK {jwk.get('kid')!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class PublicKeys:
    """The keys tokens are verified with: what everyone but the signer gets."""

    keys: tuple[VerifyingKey, ...]

    def find(self, kid: str) -> VerifyingKey | None:
        """The key with this id, if it is in the set."""
        return next((k for k in self.keys if k.kid == kid), None)

    def jwks(self) -> str:
        """The keys as a JWKS document (Envoy's ``local_jwks``, the public key file)."""
        return json.dumps({"keys": [k.jwk() for k in self.keys]}, sort_keys=True)

    @classmethod
    def from_jwks(cls, document: str) -> PublicKeys:
        """Parse a JWKS document of Ed25519 public keys.

        Raises:
            ConfigurationError: malformed, empty, or any key not a public Ed25519 key.
        """
        try:
            raw = json.loads(document)
            items = raw["keys"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"not a JWKS document: {exc}") from exc
        if not isinstance(items, list) or not items:
            raise ConfigurationError("the JWKS holds no key")
        return cls(tuple(VerifyingKey.from_jwk(item) for item in items))


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One Ed25519 private key, its id and when it was made."""

    kid: str
    private_key: Ed25519PrivateKey
    created_at: datetime

    @classmethod
    def generate(cls, now: datetime | None = None) -> SigningKey:
        """A fresh key named after its creation time."""
        created = now or datetime.now(UTC)
        # 64 random bits: rotations in the same second (several operators, scripts) must never
        # mint two keys with one id, which would make a token's `kid` ambiguous.
        kid = f"k{created:%Y%m%d%H%M%S}-{secrets.token_hex(8)}"
        return cls(kid=kid, private_key=Ed25519PrivateKey.generate(), created_at=created)

    @property
    def verifying(self) -> VerifyingKey:
        """The public half."""
        return VerifyingKey(self.kid, self.private_key.public_key())

    def private_jwk(self) -> dict[str, str]:
        """The key as a private JWK (with ``d``), plus ``created_at``: the private file's form."""
        raw = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {**self.verifying.jwk(), "d": _b64(raw), "created_at": self.created_at.isoformat()}

    @classmethod
    def from_private_jwk(cls, jwk: dict[str, object]) -> SigningKey:
        """Parse :meth:`private_jwk`'s form.

        Raises:
            ConfigurationError: malformed, or not an Ed25519 key.
        """
        if jwk.get("kty") != _KTY or jwk.get("crv") != _CRV:
            raise ConfigurationError(f"key {jwk.get('kid')!r} is not an Ed25519 key")
        try:
            private = Ed25519PrivateKey.from_private_bytes(_unb64(str(jwk["d"])))
            created = datetime.fromisoformat(str(jwk["created_at"]))
            return cls(kid=str(jwk["kid"]), private_key=private, created_at=created)
        except (KeyError, ValueError) as exc:
            raise ConfigurationError(f"malformed key {jwk.get('kid')!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The private keys in force, oldest first; the last one signs."""

    keys: tuple[SigningKey, ...]

    @property
    def signing(self) -> SigningKey:
        """The key new tokens are signed with."""
        return self.keys[-1]

    @property
    def public(self) -> PublicKeys:
        """The public halves, for verifiers."""
        return PublicKeys(tuple(k.verifying for k in self.keys))

    def find(self, kid: str) -> SigningKey | None:
        """The key with this id, if it is in the ring."""
        return next((k for k in self.keys if k.kid == kid), None)

    def rotated(self, now: datetime | None = None) -> KeyRing:
        """The ring with a new signing key added (its id unused in the ring)."""
        taken = {k.kid for k in self.keys}
        key = SigningKey.generate(now)
        while key.kid in taken:
            key = SigningKey.generate(now)
        return KeyRing((*self.keys, key))

    def retired(self, kid: str) -> KeyRing:
        """The ring without ``kid``, which must not be the signing key.

        Retiring the signing key would make an older key sign again without anyone deciding
        so; rotate first, then retire the old key.

        Raises:
            ConfigurationError: the key is unknown, or is the signing key.
        """
        if self.find(kid) is None:
            raise ConfigurationError(f"no signing key {kid!r}")
        if kid == self.signing.kid:
            raise ConfigurationError(
                f"{kid} is the current signing key: run 'sutazai keys rotate' first, "
                "then retire it once the tokens it signed have expired"
            )
        return KeyRing(tuple(k for k in self.keys if k.kid != kid))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
