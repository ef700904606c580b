"""Authentication and authorisation inside every service (defence in depth behind Envoy).

The :class:`Guard` runs in the server interceptor before each handler: its
:class:`Authenticator` verifies the bearer token again (signature, issuer, expiry) and refuses
revoked tokens and tokens of revoked accounts (:mod:`.revocations`); it enforces the method's access
policy from the protos, takes a token from the caller's bucket for expensive calls, and
afterwards writes audited calls and every denial to the audit log. Handlers read the caller
with :func:`current_identity` or :func:`require_identity`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextvars import ContextVar

import grpc
import redis.asyncio as aioredis
import structlog
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from redis.exceptions import RedisError

from sutazai.runtime import context as rpc_context
from sutazai.runtime.audit import OK, AuditEvent, AuditLog
from sutazai.runtime.faults import (
    permission_denied,
    resource_exhausted,
    unauthenticated,
    unavailable,
)
from sutazai.runtime.key_watch import KeyFileWatch
from sutazai.runtime.ratelimit import RateLimiter
from sutazai.runtime.revocations import (
    BucketOpener,
    Revocations,
    RevocationsUnknownError,
)
from sutazai.runtime.roles import MethodAccess, Role, access_table, standard_access
from sutazai.runtime.settings import MeshSettings
from sutazai.runtime.sockets import is_unix_peer
from sutazai.runtime.tokens import Identity, InvalidTokenError, TokenVerifier

log = structlog.get_logger(__name__)

caller: ContextVar[Identity | None] = ContextVar("sutazai_caller", default=None)
"""The verified identity of the current RPC's caller; ``None`` when anonymous."""


def current_identity() -> Identity | None:
    """The caller of the current RPC, or ``None`` if anonymous."""
    return caller.get()


def require_identity() -> Identity:
    """The caller of the current RPC.

    Raises:
        RpcStatusError: UNAUTHENTICATED when anonymous.
    """
    identity = caller.get()
    if identity is None:
        raise unauthenticated("sign in first")
    return identity


class Authenticator:
    """Turns an ``authorization`` header into a trusted identity, or refuses it.

    Shared by every service's :class:`Guard` and the gateway (reflection, health), so a token is
    judged the same everywhere: signature, issuer, expiry, then the revocation mirror.
    """

    def __init__(
        self, verifier: TokenVerifier, revocations: Revocations, open_bucket: BucketOpener
    ) -> None:
        self._verifier = verifier
        self._revocations = revocations
        self._open_bucket = open_bucket

    @property
    def revocations(self) -> Revocations:
        """The revocations checked (revoke through them: the local mirror learns at once)."""
        return self._revocations

    def identify(self, authorization: str) -> Identity | None:
        """The caller proven by ``authorization`` (``None`` when it is empty).

        Raises:
            RpcStatusError: UNAUTHENTICATED for a bad, expired or revoked token; UNAVAILABLE
                while revocations are not known yet.
        """
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise unauthenticated("expected a Bearer token")
        try:
            identity = self._verifier.verify(token.strip())
        except InvalidTokenError as exc:
            raise unauthenticated(f"invalid token: {exc}") from exc
        try:
            refusal = self._revocations.refusal(identity)
        except RevocationsUnknownError as exc:
            raise unavailable(str(exc)) from exc
        if refusal is not None:
            raise unauthenticated(refusal)
        return identity

    async def run(self) -> None:
        """Follow revocations forever."""
        await self._revocations.run(self._open_bucket)

    async def wait_ready(self) -> None:
        """Return once revocations are known (signed-in callers can be admitted)."""
        await self._revocations.wait_synced()


def open_authenticator(mesh: MeshSettings, open_bucket: BucketOpener) -> Authenticator:
    """Token checks with the mesh's public keys, following the revocations ``open_bucket`` binds.

    Raises:
        ConfigurationError: the public keys are missing or unreadable.
    """
    return Authenticator(_verifier(mesh), Revocations(mesh.auth), open_bucket)


def revocation_bucket(js: JetStreamContext, bucket: str) -> BucketOpener:
    """Binds the revocation bucket (created by the supervisor: services only bind it)."""

    async def bind() -> KeyValue:
        return await js.key_value(bucket)

    return bind


def _verifier(mesh: MeshSettings) -> TokenVerifier:
    keys = KeyFileWatch.public_keys(mesh.jwks_file)
    keys.load()  # fail at start-up, not on the first call, when the keys are missing or unreadable
    return TokenVerifier(keys, issuer=mesh.auth.issuer)


class Guard:
    """Admits or refuses each call according to the access table."""

    def __init__(
        self,
        table: Mapping[str, MethodAccess],
        authenticator: Authenticator,
        limiter: RateLimiter,
        audit: AuditLog,
    ) -> None:
        self._table = table
        self._authenticator = authenticator
        self._limiter = limiter
        self._audit = audit

    @property
    def revocations(self) -> Revocations:
        """The revocations this guard checks (revoke through them: its mirror learns at once)."""
        return self._authenticator.revocations

    def policy(self, method: str) -> MethodAccess:
        """The access policy of a gRPC path: declared in the protos, else the standard one."""
        declared = self._table.get(method)
        return declared if declared is not None else standard_access(method)

    async def admit(
        self, policy: MethodAccess, method: str, metadata: Mapping[str, str], peer: str
    ) -> None:
        """Authenticate and authorise one call of ``method``; set :data:`caller` for the handler.

        Raises:
            RpcStatusError: UNAUTHENTICATED, PERMISSION_DENIED or RESOURCE_EXHAUSTED.
        """
        identity = self._authenticator.identify(metadata.get("authorization", ""))
        caller.set(identity)
        role = identity.role if identity else Role.ANONYMOUS
        if not policy.allows(role):
            if identity is None:
                raise unauthenticated("sign in first")
            needed = max(policy.role, Role.USER).label
            raise permission_denied(
                f"{method} needs the {needed} role; you are {role.label}",
                reason="ROLE_REQUIRED",
                domain="sutazai",
                metadata={"role": needed},
            )
        if policy.rate_limited:
            key = caller_key(identity, metadata, peer)
            try:
                decision = await self._limiter.take(key)
            except (RedisError, OSError) as exc:
                raise unavailable("rate limiter unavailable (Redis)") from exc
            if not decision.allowed:
                raise resource_exhausted(
                    f"rate limit: retry in {decision.retry_after_seconds:.1f}s",
                    decision.retry_after_seconds,
                )

    async def settle(self, method: str, policy: MethodAccess, code: grpc.StatusCode) -> None:
        """Audit the finished call if its method is audited or it was refused a permission."""
        if not (policy.audited or code is grpc.StatusCode.PERMISSION_DENIED):
            return
        identity = caller.get()
        event = AuditEvent(
            action=method,
            outcome=OK if code is grpc.StatusCode.OK else code.name,
            actor=identity.username if identity else "",
            request_id=rpc_context.request_id.get() or "",
        )
        try:
            await self._audit.record(event)
        except Exception:
            # The call already happened; losing its audit line is logged loudly, not hidden.
            log.exception("audit.write_failed", action=method, outcome=event.outcome)

    async def run(self) -> None:
        """Background work of the guard: following revocations."""
        await self._authenticator.run()

    async def wait_ready(self) -> None:
        """Return once revocations are known (the guard can admit signed-in callers)."""
        await self._authenticator.wait_ready()


def caller_key(identity: Identity | None, metadata: Mapping[str, str], peer: str) -> str:
    """Who a per-caller limit counts against.

    ``user:<id>`` when signed in, else the address Envoy saw (``peer:<address>``).
    """
    if identity is not None:
        return f"user:{identity.user_id}"
    return f"peer:{_client_address(metadata, peer)}"


def _client_address(metadata: Mapping[str, str], peer: str) -> str:
    """The address a per-client limit is keyed on.

    From a Unix-socket peer (Envoy, or another process of the mesh's user: nobody else can
    reach the 0700 run directory) it is the address Envoy saw, which Envoy writes into
    :data:`~sutazai.runtime.context.CLIENT_ADDRESS_HEADER` over any client value.
    From a TCP peer it is the peer itself: every address header is the caller's to forge.
    """
    if is_unix_peer(peer):
        return metadata.get(rpc_context.CLIENT_ADDRESS_HEADER, "") or "unix"
    # "ipv4:1.2.3.4:port" or "ipv6:[::1]:port": drop the port.
    address = peer.partition(":")[2] or peer
    return address.rpartition(":")[0] or address


def open_guard(
    mesh: MeshSettings,
    services: Iterable[str],
    *,
    redis: aioredis.Redis,
    audit: AuditLog,
    js: JetStreamContext,
) -> Guard:
    """The guard of a service process hosting ``services``, from the mesh's settings.

    Its per-user buckets live under the Redis key prefix of ``mesh.principal`` (the service).
    """
    return Guard(
        access_table(services),
        open_authenticator(mesh, revocation_bucket(js, mesh.auth.revocations_bucket)),
        RateLimiter(
            redis,
            key_prefix=mesh.redis.key_prefix(mesh.principal),
            per_second=mesh.auth.user_rate_per_second,
            burst=mesh.auth.user_rate_burst,
        ),
        audit,
    )
