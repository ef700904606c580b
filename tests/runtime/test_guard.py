"""Access control inside a service: the Guard on a real ServiceHost, Redis, PostgreSQL, NATS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import jwt
import pytest
import redis.asyncio as aioredis

from sutazai.auth.v1 import auth_service_pb2  # noqa: F401 - puts AuthService in the pool
from sutazai.runtime.audit import AuditLog
from sutazai.runtime.auth import Guard, open_guard
from sutazai.runtime.faults import RpcStatusError
from sutazai.runtime.key_files import edit_key_ring, ensure_key_ring, load_key_ring
from sutazai.runtime.keys import SigningKey
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.revocations import Revocations
from sutazai.runtime.roles import Role, access_table
from sutazai.runtime.settings import MeshSettings, ServiceSettings
from sutazai.runtime.tokens import TokenIssuer
from sutazai.services.system.server import build
from sutazai.system.v1 import system_service_pb2 as pb
from sutazai.system.v1 import system_service_pb2_grpc as pb_grpc
from tests.gateway.tokens import hs256_with_public_key, unsigned
from tests.harness.waiting import wait_for

ADMIN_ONLY = "/sutazai.auth.v1.AuthService/ListUsers"


@pytest.fixture(scope="module")
async def settings(mesh_settings: MeshSettings) -> MeshSettings:
    ensure_key_ring(mesh_settings.keys_file, mesh_settings.jwks_file)
    return mesh_settings.as_principal("system")


def issuer(settings: MeshSettings, ttl: timedelta = timedelta(minutes=5)) -> TokenIssuer:
    return TokenIssuer(
        lambda: load_key_ring(settings.keys_file), issuer=settings.auth.issuer, ttl=ttl
    )


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
async def system(settings: MeshSettings) -> AsyncIterator[pb_grpc.SystemServiceStub]:
    async with contextlib.AsyncExitStack() as stack:
        host = await build(settings, ServiceSettings(metrics_port=-1), stack)
        await host.start()
        stack.push_async_callback(host.stop)
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(host.address))
        yield pb_grpc.SystemServiceStub(channel)


async def test_anonymous_status_is_a_summary_signed_in_is_complete(
    settings: MeshSettings, system: pb_grpc.SystemServiceStub
) -> None:
    anonymous = await system.GetStatus(pb.GetStatusRequest(), timeout=5)
    assert anonymous.overall != pb.OVERALL_STATE_UNSPECIFIED
    assert list(anonymous.components) == []

    token = issuer(settings).issue(user_id="u1", username="ada", role=Role.USER).token
    signed_in = await system.GetStatus(pb.GetStatusRequest(), metadata=bearer(token), timeout=5)
    assert {"postgres", "redis", "nats"} <= {c.name for c in signed_in.components}


async def test_untrustworthy_tokens_are_unauthenticated(
    settings: MeshSettings, system: pb_grpc.SystemServiceStub
) -> None:
    ring = load_key_ring(settings.keys_file)
    now = datetime.now(UTC)
    claims = {
        "iss": settings.auth.issuer,
        "sub": "u1",
        "role": "admin",
        "jti": "j1",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    key = ring.signing
    kid = {"kid": key.kid}
    stranger = SigningKey.generate()
    tokens = {
        "another key, ring's kid": jwt.encode(claims, stranger.private_key, "EdDSA", headers=kid),
        "kid not in the ring": jwt.encode(
            claims, stranger.private_key, "EdDSA", headers={"kid": stranger.kid}
        ),
        "expired": jwt.encode(
            {**claims, "exp": int((now - timedelta(minutes=1)).timestamp())},
            key.private_key,
            "EdDSA",
            headers=kid,
        ),
        "alg none": unsigned(key, claims),
        "HS256 with the public key": hs256_with_public_key(key, claims),
        "other issuer": jwt.encode(
            {**claims, "iss": "elsewhere"}, key.private_key, "EdDSA", headers=kid
        ),
        "not a JWT": "not-a-jwt",
        # The claim is the lowercase label, never the API's enum name.
        "role claim not a label": jwt.encode(
            {**claims, "role": "ROLE_ADMIN"}, key.private_key, "EdDSA", headers=kid
        ),
    }
    for what, token in tokens.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await system.GetStatus(pb.GetStatusRequest(), metadata=bearer(token), timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED, what


async def test_signed_in_only_rpc_refuses_anonymous_callers(
    system: pb_grpc.SystemServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.RefreshStatus(pb.RefreshStatusRequest(), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def refuses(token: str, system: pb_grpc.SystemServiceStub) -> bool:
    """Whether the system service answers ``token`` with UNAUTHENTICATED."""
    try:
        await system.GetStatus(pb.GetStatusRequest(), metadata=bearer(token), timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code() is grpc.StatusCode.UNAUTHENTICATED
    return False


async def test_revoked_token_stops_working_at_once(
    settings: MeshSettings, system: pb_grpc.SystemServiceStub
) -> None:
    issued = issuer(settings).issue(user_id="u2", username="bob", role=Role.USER)
    await system.GetStatus(pb.GetStatusRequest(), metadata=bearer(issued.token), timeout=5)
    await revoke(
        settings, lambda r: r.revoke_token(issued.identity.token_id, issued.identity.expires_at)
    )

    # The revocation reaches the service's mirror by its watch of the bucket, within a second.
    await wait_for(
        lambda: refuses(issued.token, system),
        timeout=1,
        interval=0.01,
        message="revoked token refused",
    )


async def revoke(settings: MeshSettings, how: Callable[[Revocations], Awaitable[object]]) -> None:
    """Write a revocation as the auth service does (principal ``auth``)."""
    nc = await connect_nats(settings.as_principal("auth"), name="tests-revoke")
    try:
        revocations = Revocations(settings.auth)
        revocations.attach(await nc.jetstream().key_value(settings.auth.revocations_bucket))
        await how(revocations)
    finally:
        await nc.close()


async def test_tokens_issued_before_the_account_stamp_are_refused(
    settings: MeshSettings, system: pb_grpc.SystemServiceStub
) -> None:
    old = issuer(settings).issue(user_id="u6", username="fay", role=Role.USER)
    other = issuer(settings).issue(user_id="u7", username="gus", role=Role.USER)
    await system.GetStatus(pb.GetStatusRequest(), metadata=bearer(old.token), timeout=5)
    await revoke(settings, lambda r: r.revoke_account("u6"))

    await wait_for(
        lambda: refuses(old.token, system),
        timeout=1,
        interval=0.01,
        message="stamped account's token refused",
    )
    # Other accounts are untouched.
    await system.GetStatus(pb.GetStatusRequest(), metadata=bearer(other.token), timeout=5)


async def test_rotation_keeps_old_tokens_until_the_old_key_retires(
    settings: MeshSettings, system: pb_grpc.SystemServiceStub
) -> None:
    old_token = issuer(settings).issue(user_id="u3", username="cy", role=Role.USER).token
    original = load_key_ring(settings.keys_file)
    edit_key_ring(settings.keys_file, settings.jwks_file, lambda ring: ring.rotated())
    try:
        new_token = issuer(settings).issue(user_id="u3", username="cy", role=Role.USER).token
        assert jwt.get_unverified_header(new_token)["kid"] != original.signing.kid
        for token in (old_token, new_token):
            await system.GetStatus(pb.GetStatusRequest(), metadata=bearer(token), timeout=5)

        edit_key_ring(
            settings.keys_file,
            settings.jwks_file,
            lambda ring: ring.retired(original.signing.kid),
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await system.GetStatus(pb.GetStatusRequest(), metadata=bearer(old_token), timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        await system.GetStatus(pb.GetStatusRequest(), metadata=bearer(new_token), timeout=5)
    finally:
        edit_key_ring(settings.keys_file, settings.jwks_file, lambda _: original)


@pytest.fixture
async def guard(settings: MeshSettings) -> AsyncIterator[tuple[Guard, AuditLog]]:
    # An auth service's guard: the auth role reads the audit log back.
    auth = settings.as_principal("auth")
    pool = await asyncpg.create_pool(auth.postgres_dsn, min_size=1, max_size=2)
    client = aioredis.Redis.from_url(auth.redis_url)
    nc = await connect_nats(settings, name="tests-guard")
    audit = AuditLog(pool)
    limits = {"user_rate_burst": 2, "user_rate_per_second": 0.01}
    tight = auth.model_copy(update={"auth": settings.auth.model_copy(update=limits)})
    built = open_guard(
        tight, ["sutazai.auth.v1.AuthService"], redis=client, audit=audit, js=nc.jetstream()
    )
    follower = asyncio.create_task(built.run())
    await asyncio.wait_for(built.wait_ready(), timeout=10)
    try:
        yield built, audit
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await client.aclose()
        await nc.close()
        await pool.close()


async def test_role_is_enforced_and_denials_are_audited(
    settings: MeshSettings, guard: tuple[Guard, AuditLog]
) -> None:
    checker, audit = guard
    user = issuer(settings).issue(user_id="u4", username="dora", role=Role.USER)
    admin = issuer(settings).issue(user_id="u5", username="eve", role=Role.ADMIN)
    policy = checker.policy(ADMIN_ONLY)
    assert policy.role is Role.ADMIN

    with pytest.raises(RpcStatusError) as caught:
        await checker.admit(policy, ADMIN_ONLY, {"authorization": f"Bearer {user.token}"}, "peer")
    assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED
    await checker.settle(ADMIN_ONLY, policy, grpc.StatusCode.PERMISSION_DENIED)
    await checker.admit(policy, ADMIN_ONLY, {"authorization": f"Bearer {admin.token}"}, "peer")

    (event,) = await audit.page(limit=1, actor="dora")
    assert (event.action, event.outcome) == (ADMIN_ONLY, "PERMISSION_DENIED")


async def test_per_user_limit_does_not_touch_other_users(
    settings: MeshSettings, guard: tuple[Guard, AuditLog]
) -> None:
    checker, _ = guard
    method = "/sutazai.auth.v1.AuthService/ChangePassword"
    policy = checker.policy(method)
    assert policy.rate_limited
    heavy = issuer(settings).issue(user_id="heavy-user", username="hu", role=Role.USER)
    light = issuer(settings).issue(user_id="light-user", username="lu", role=Role.USER)
    headers = {"authorization": f"Bearer {heavy.token}"}
    for _ in range(2):
        await checker.admit(policy, method, headers, "peer")
    with pytest.raises(RpcStatusError) as caught:
        await checker.admit(policy, method, headers, "peer")
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    await checker.admit(policy, method, {"authorization": f"Bearer {light.token}"}, "peer")


def test_access_table_comes_from_the_protos() -> None:
    table = access_table(["sutazai.auth.v1.AuthService", "sutazai.system.v1.SystemService"])
    assert table["/sutazai.auth.v1.AuthService/Login"].public
    assert table["/sutazai.auth.v1.AuthService/SetUserRole"].audited
    assert table["/sutazai.auth.v1.AuthService/SetUserRole"].role is Role.ADMIN
    assert not table["/sutazai.auth.v1.AuthService/GetMe"].public
    assert table["/sutazai.system.v1.SystemService/GetStatus"].public
    assert not table["/sutazai.system.v1.SystemService/RefreshStatus"].allows(Role.ANONYMOUS)
    assert table["/sutazai.auth.v1.AuthService/ListUsers"].allows(Role.ADMIN)
    assert not table["/sutazai.auth.v1.AuthService/ListUsers"].allows(Role.OPERATOR)


def test_verified_tokens_are_remembered_until_the_keys_change_or_they_expire() -> None:
    from sutazai.runtime.keys import KeyRing
    from sutazai.runtime.tokens import InvalidTokenError, TokenVerifier

    ring = KeyRing((SigningKey.generate(),))
    public = [ring.public]
    verifier = TokenVerifier(lambda: public[0], issuer="t", cache_size=2)
    short = TokenIssuer(lambda: ring, issuer="t", ttl=timedelta(seconds=-1)).issue(
        user_id="u", username="n", role=Role.USER
    )
    issued = TokenIssuer(lambda: ring, issuer="t", ttl=timedelta(minutes=5)).issue(
        user_id="u", username="n", role=Role.USER
    )
    assert verifier.verify(issued.token) == verifier.verify(issued.token) == issued.identity
    with pytest.raises(InvalidTokenError):
        verifier.verify(short.token)

    public[0] = KeyRing((SigningKey.generate(),)).public  # the signing key was retired
    with pytest.raises(InvalidTokenError):
        verifier.verify(issued.token)


async def test_a_malformed_revocation_is_skipped_and_the_watch_goes_on(
    settings: MeshSettings, system: pb_grpc.SystemServiceStub
) -> None:
    issued = issuer(settings).issue(user_id="u8", username="hal", role=Role.USER)
    # Only admin (and auth) may write the bucket: the guard under test runs as "system".
    nc = await connect_nats(settings.as_principal("admin"), name="tests-malformed")
    try:
        kv = await nc.jetstream().key_value(settings.auth.revocations_bucket)
        await kv.put("token.garbage", b"\xff not json")
        await kv.put("nonsense", b"{}")
        await kv.put("account.u8", b'{"after": "tomorrow"}')
    finally:
        await nc.close()
    await revoke(
        settings, lambda r: r.revoke_token(issued.identity.token_id, issued.identity.expires_at)
    )

    # The revocation written after the malformed entries still arrives: the watch lives on.
    await wait_for(
        lambda: refuses(issued.token, system),
        timeout=1,
        interval=0.01,
        message="revocation after malformed ones",
    )
