"""Revoked access tokens and accounts: a NATS KV bucket, mirrored in every process.

Two kinds of entry live in the bucket (``AuthSettings.revocations_bucket``), written only by the
``auth`` principal (the auth service, and the CLI as ``admin``):

- ``token.<jti>`` → ``{"exp": <epoch seconds>}``: one access token signed out (logout).
- ``account.<user id>`` → ``{"after": <epoch seconds>}``: the account's "valid after" stamp. Its
  tokens issued (``iat``) before it are refused: set on deactivation, role change, password
  change and "revoke all sessions".

An entry only matters while a token it refuses can still be valid, so the bucket's ``max_age``
is the access-token lifetime plus the clock skew allowed, and the mirror drops what has aged
out on its own. Every process watches the bucket (a push consumer: a revocation reaches it in
milliseconds) into a local mirror, so checking a token costs no round trip. A NATS outage does
not stop signed-in calls (the mirror keeps what it knew; nothing can be revoked meanwhile, the
writer answers UNAVAILABLE), and the watch resumes with a full replay when NATS is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import nats.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from sutazai.runtime.errors import MeshRuntimeError
from sutazai.runtime.kv_watch import DELETE_OPERATIONS, watch_entries
from sutazai.runtime.settings import AuthSettings
from sutazai.runtime.tokens import Identity

log = structlog.get_logger(__name__)

TOKEN_PREFIX = "token."  # noqa: S105 - a key prefix
ACCOUNT_PREFIX = "account."
_NATS_FAILURES = (nats.errors.Error, OSError, TimeoutError)

BucketOpener = Callable[[], Awaitable[KeyValue]]
"""Binds the revocation bucket (called again after a failure)."""


class RevocationsUnknownError(MeshRuntimeError):
    """The mirror has never been filled, so no token can be trusted yet."""


class RevocationStoreError(MeshRuntimeError):
    """The revocation bucket cannot be written (NATS unreachable): nothing was revoked."""


class MalformedRevocationError(MeshRuntimeError):
    """A bucket entry that is not a revocation this module writes."""


@dataclass(frozen=True, slots=True)
class Revocation:
    """One parsed bucket entry."""

    kind: str
    """``token`` or ``account``."""
    subject: str
    """The token's ``jti`` or the account's user id."""
    at: int
    """Epoch seconds: when the token expires, or the account's "valid after" stamp."""


def parse_entry(key: str, value: bytes | None) -> Revocation:
    """The revocation a bucket entry holds.

    Raises:
        MalformedRevocationError: an unknown key or a value that is not the expected JSON.
    """
    kind, field = ("token", "exp") if key.startswith(TOKEN_PREFIX) else ("account", "after")
    if kind == "account" and not key.startswith(ACCOUNT_PREFIX):
        raise MalformedRevocationError(f"unknown key {key[:80]!r}")
    subject = key.partition(".")[2]
    try:
        document = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRevocationError(f"{key[:80]}: not JSON") from exc
    at = document.get(field) if isinstance(document, dict) else None
    if not subject or not isinstance(at, int) or isinstance(at, bool):
        raise MalformedRevocationError(f"{key[:80]}: expected {{{field!r}: <epoch seconds>}}")
    return Revocation(kind, subject, at)


def bucket_config(settings: AuthSettings) -> KeyValueConfig:
    """The revocation bucket: latest value per key, aged out once no token it refuses lives."""
    return KeyValueConfig(
        bucket=settings.revocations_bucket,
        description="SutazAI revoked access tokens (jti) and account valid-after stamps",
        history=1,
        ttl=float(settings.revocation_max_age_seconds),
    )


async def ensure_bucket(js: JetStreamContext, settings: AuthSettings) -> KeyValue:
    """Create the bucket, or widen its ``max_age`` to the settings (``admin`` only)."""
    config = bucket_config(settings)
    try:
        kv = await js.key_value(settings.revocations_bucket)
    except BucketNotFoundError:
        return await js.create_key_value(config)
    info = await js.stream_info(f"KV_{settings.revocations_bucket}")
    if (info.config.max_age or 0) < settings.revocation_max_age_seconds:
        # A longer access-token lifetime needs entries to live longer (never shorter: a shorter
        # age would forget revocations of tokens issued under the old lifetime).
        info.config.max_age = float(settings.revocation_max_age_seconds)
        await js.update_stream(info.config)
    return kv


class Revocations:
    """The local mirror of the bucket, and (in the auth service) the way to write it."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        clock: Callable[[], float] = time.time,
        retry_seconds: float = 1.0,
        prune_seconds: float = 30.0,
    ) -> None:
        self._max_age = settings.revocation_max_age_seconds
        self._clock = clock
        self._retry_seconds = retry_seconds
        self._prune_seconds = prune_seconds
        self._tokens: dict[str, int] = {}
        self._accounts: dict[str, int] = {}
        self._kv: KeyValue | None = None
        self._synced = asyncio.Event()

    def refusal(self, identity: Identity) -> str | None:
        """Why a verified token must be refused, or ``None`` when it is still good.

        Raises:
            RevocationsUnknownError: the mirror was never filled (NATS unreachable since start).
        """
        if not self._synced.is_set():
            raise RevocationsUnknownError("revocations are not known yet: NATS is unreachable")
        now = self._clock()
        expires = self._tokens.get(identity.token_id)
        if expires is not None and expires >= now:
            return "token revoked (signed out)"
        if identity.issued_at.timestamp() < self.valid_after(identity.user_id):
            return "token issued before the account's sessions were revoked; sign in again"
        return None

    def valid_after(self, user_id: str) -> int:
        """The account's stamp (epoch seconds; 0 if none): older tokens are refused."""
        stamp = self._accounts.get(user_id, 0)
        return stamp if stamp + self._max_age >= self._clock() else 0

    @property
    def size(self) -> int:
        """Entries in the mirror (tokens and accounts)."""
        return len(self._tokens) + len(self._accounts)

    def attach(self, kv: KeyValue) -> None:
        """Write through ``kv`` (before :meth:`run` has bound it, e.g. in a one-shot tool)."""
        self._kv = kv

    async def revoke_token(self, token_id: str, expires_at: datetime) -> None:
        """Refuse the token ``token_id`` everywhere until it expires.

        Raises:
            RevocationStoreError: the bucket cannot be written; the token is not revoked.
        """
        expires = math.ceil(expires_at.timestamp())
        await self._put(Revocation("token", token_id, expires))

    async def revoke_account(self, user_id: str) -> int:
        """Refuse every token of ``user_id`` issued up to now; return the stamp.

        Tokens carry whole seconds (``iat``), so the stamp is the next whole second: a token
        of the current second might predate the revocation. :meth:`valid_after` tells issuers
        when the account's next token may be signed.

        Raises:
            RevocationStoreError: the bucket cannot be written; nothing is revoked.
        """
        stamp = math.floor(self._clock()) + 1
        await self._put(Revocation("account", user_id, stamp))
        return stamp

    async def wait_synced(self) -> None:
        """Return once the mirror has been filled at least once."""
        await self._synced.wait()

    async def run(self, open_bucket: BucketOpener) -> None:
        """Follow the bucket forever (re-binding after failures) and prune the mirror."""
        pruner = asyncio.create_task(self._prune_forever(), name="revocations:prune")
        try:
            while True:
                try:
                    kv = await open_bucket()
                    self._kv = kv
                    await self._follow(kv)
                except _NATS_FAILURES as exc:
                    log.warning("revocations.disconnected", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(self._retry_seconds)
        finally:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner

    def prune(self) -> None:
        """Forget entries that no longer refuse any valid token."""
        now = self._clock()
        self._tokens = {k: v for k, v in self._tokens.items() if v >= now}
        self._accounts = {k: v for k, v in self._accounts.items() if v + self._max_age >= now}

    async def _put(self, revocation: Revocation) -> None:
        if self._kv is None:
            raise RevocationStoreError("the revocation bucket is not reachable (NATS)")
        field = "exp" if revocation.kind == "token" else "after"
        value = json.dumps({field: revocation.at}).encode()
        try:
            await self._kv.put(f"{revocation.kind}.{revocation.subject}", value)
        except _NATS_FAILURES as exc:
            raise RevocationStoreError(f"cannot write the revocation bucket: {exc}") from exc
        self._remember(revocation)

    async def _follow(self, kv: KeyValue) -> None:
        entries = watch_entries(kv)
        async with contextlib.aclosing(entries):
            async for entry in entries:
                if entry is None:
                    # End of the initial values: the mirror is complete.
                    self._synced.set()
                    log.info("revocations.synced", entries=self.size)
                    continue
                if entry.operation in DELETE_OPERATIONS:
                    continue
                try:
                    self._remember(parse_entry(entry.key, entry.value))
                except MalformedRevocationError as exc:
                    log.warning("revocations.malformed_entry", error=str(exc))

    def _remember(self, revocation: Revocation) -> None:
        table = self._tokens if revocation.kind == "token" else self._accounts
        table[revocation.subject] = max(revocation.at, table.get(revocation.subject, 0))

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(self._prune_seconds)
            self.prune()
