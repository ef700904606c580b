"""Authentication and authorisation inside every service (defence in depth behind Envoy).

The :class:`Guard` runs in the server interceptor before each handler: it verifies the bearer
token again (signature, issuer, expiry), refuses revoked tokens, enforces the method's access
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
from google.rpc import error_details_pb2
from redis.exceptions import RedisError

from sutazai.services.runtime import context as rpc_context
from sutazai.services.runtime.audit import OK, AuditEvent, AuditLog
from sutazai.services.runtime.denylist import DenyList, RevocationsUnknownError
from sutazai.services.runtime.faults import RpcStatusError
from sutazai.services.runtime.keys import watched_key_ring
from sutazai.services.runtime.ratelimit import RateLimiter
from sutazai.services.runtime.roles import PUBLIC, SIGNED_IN, MethodAccess, Role, access_table
from sutazai.services.runtime.settings import MeshSettings
from sutazai.services.runtime.tokens import Identity, InvalidTokenError, TokenVerifier

log = structlog.get_logger(__name__)

caller: ContextVar[Identity | None] = ContextVar("sutazai_caller", default=None)
"""The verified identity of the current RPC's caller; ``None`` when anonymous."""

# Standard services every instance serves; health stays public (Envoy and probes call it).
_STANDARD = {
    "/grpc.health.v1.Health/": PUBLIC,
    "/grpc.reflection.v1alpha.ServerReflection/": SIGNED_IN,
    "/grpc.reflection.v1.ServerReflection/": SIGNED_IN,
}


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
        raise RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, "sign in first")
    return identity


class Guard:
    """Admits or refuses each call according to the access table."""

    def __init__(
        self,
        table: Mapping[str, MethodAccess],
        verifier: TokenVerifier,
        deny_list: DenyList,
        limiter: RateLimiter,
        audit: AuditLog,
    ) -> None:
        self._table = table
        self._verifier = verifier
        self._deny_list = deny_list
        self._limiter = limiter
        self._audit = audit

    @property
    def deny_list(self) -> DenyList:
        """The revocations this guard checks (revoke through it: its mirror learns at once)."""
        return self._deny_list

    def policy(self, method: str) -> MethodAccess:
        """The access policy of a gRPC path; undeclared methods need a signed-in caller."""
        declared = self._table.get(method)
        if declared is not None:
            return declared
        prefix = method[: method.rfind("/") + 1]
        return _STANDARD.get(prefix, SIGNED_IN)

    async def admit(
        self, policy: MethodAccess, method: str, metadata: Mapping[str, str], peer: str
    ) -> None:
        """Authenticate and authorise one call of ``method``; set :data:`caller` for the handler.

        Raises:
            RpcStatusError: UNAUTHENTICATED, PERMISSION_DENIED or RESOURCE_EXHAUSTED.
        """
        identity = await self._identify(metadata.get("authorization", ""))
        caller.set(identity)
        role = identity.role if identity else Role.ANONYMOUS
        if not policy.allows(role):
            if identity is None:
                raise RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, "sign in first")
            needed = max(policy.role, Role.USER).label
            raise RpcStatusError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method} needs the {needed} role; you are {role.label}",
                [
                    error_details_pb2.ErrorInfo(
                        reason="ROLE_REQUIRED", domain="sutazai", metadata={"role": needed}
                    )
                ],
            )
        if policy.rate_limited:
            key = (
                f"user:{identity.user_id}"
                if identity
                else f"peer:{_client_address(metadata, peer)}"
            )
            try:
                decision = await self._limiter.take(key)
            except (RedisError, OSError) as exc:
                raise RpcStatusError(
                    grpc.StatusCode.UNAVAILABLE, "rate limiter unavailable (Redis)"
                ) from exc
            if not decision.allowed:
                retry = error_details_pb2.RetryInfo()
                retry.retry_delay.FromNanoseconds(int(decision.retry_after_seconds * 1e9))
                raise RpcStatusError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"rate limit: retry in {decision.retry_after_seconds:.1f}s",
                    [retry],
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

    async def _identify(self, authorization: str) -> Identity | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, "expected a Bearer token")
        try:
            identity = self._verifier.verify(token.strip())
        except InvalidTokenError as exc:
            raise RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, f"invalid token: {exc}") from exc
        try:
            revoked = self._deny_list.is_revoked(identity.token_id)
        except RevocationsUnknownError as exc:
            raise RpcStatusError(grpc.StatusCode.UNAVAILABLE, str(exc)) from exc
        if revoked:
            raise RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, "token revoked (signed out)")
        return identity

    async def run(self) -> None:
        """Background work of the guard: following revocations."""
        await self._deny_list.run()

    async def wait_ready(self) -> None:
        """Return once revocations are known (the guard can admit signed-in callers)."""
        await self._deny_list.wait_synced()


def _client_address(metadata: Mapping[str, str], peer: str) -> str:
    # Envoy (use_remote_address) appends the real client to x-forwarded-for; without Envoy the
    # peer is the client, as "ipv4:1.2.3.4:port" or "ipv6:[::1]:port": drop the port.
    forwarded = metadata.get("x-forwarded-for", "")
    if forwarded:
        return forwarded.split(",")[-1].strip()
    address = peer.partition(":")[2] or peer
    return address.rpartition(":")[0] or address


def open_guard(
    mesh: MeshSettings,
    services: Iterable[str],
    *,
    redis: aioredis.Redis,
    audit: AuditLog,
) -> Guard:
    """The guard of a service process hosting ``services``, from the mesh's settings.

    Its per-user buckets live under the Redis key prefix of ``mesh.principal`` (the service).
    """
    keys = watched_key_ring(mesh.keys_file)
    keys()  # fail at start-up, not on the first call, when the ring is missing or unreadable
    return Guard(
        access_table(services),
        TokenVerifier(keys, issuer=mesh.auth.issuer),
        DenyList(redis),
        RateLimiter(
            redis,
            key_prefix=mesh.redis.key_prefix(mesh.principal),
            per_second=mesh.auth.user_rate_per_second,
            burst=mesh.auth.user_rate_burst,
        ),
        audit,
    )
