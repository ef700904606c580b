"""Revocation by token and by account on the auth service's own port, and what happens while
the revocation bucket (NATS) cannot be written."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from sutazai.auth.v1 import auth_service_pb2 as pb
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.revocations import bucket_config
from sutazai.runtime.settings import MeshSettings
from sutazai.services.auth.accounts import Accounts
from tests.auth.conftest import hosted
from tests.auth.helpers import (
    TIMEOUT,
    Caller,
    bearer,
    failure,
    make_admin,
    refused_by_all,
    retry_delay,
)
from tests.harness.waiting import wait_for


@pytest.fixture
async def admin_nats(mesh_settings: MeshSettings) -> AsyncIterator[NatsClient]:
    client = await connect_nats(mesh_settings, name="tests-revocation-admin")
    yield client
    await client.close()


async def test_logout_while_revocations_cannot_be_written_is_unavailable_and_revokes_nothing(
    mesh_settings: MeshSettings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    admin_nats: NatsClient,
) -> None:
    # An instance on a bucket of its own, which the test then takes away (as NATS being
    # unreachable would): admin may create and delete any bucket.
    bucket = f"tests_revocations_{secrets.token_hex(4)}"
    auth_settings = mesh_settings.auth.model_copy(update={"revocations_bucket": bucket})
    settings = mesh_settings.model_copy(update={"auth": auth_settings})
    js: JetStreamContext = admin_nats.jetstream()
    await js.create_key_value(bucket_config(auth_settings))
    async with hosted(settings, pool, redis_client, js) as auth:
        _, pair = await auth.signed_in()
        token = bearer(pair.access_token)
        await js.delete_key_value(bucket)

        error = await failure(
            auth.stub.Logout(
                pb.LogoutRequest(refresh_token=pair.refresh_token), metadata=token, timeout=TIMEOUT
            )
        )
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert retry_delay(error) > 0
        # It did not pretend: the access token still works, so the client knows to retry.
        await auth.stub.GetMe(pb.GetMeRequest(), metadata=token, timeout=TIMEOUT)

        await js.create_key_value(bucket_config(auth_settings))
        await auth.stub.Logout(
            pb.LogoutRequest(refresh_token=pair.refresh_token), metadata=token, timeout=TIMEOUT
        )
        signed_out = await failure(
            auth.stub.GetMe(pb.GetMeRequest(), metadata=token, timeout=TIMEOUT)
        )
        assert signed_out.code() is grpc.StatusCode.UNAUTHENTICATED
    await js.delete_key_value(bucket)


async def test_revoke_sessions_ends_refresh_and_access_tokens_within_a_second(
    auth: Caller, strict: Caller, accounts: Accounts
) -> None:
    admin = await make_admin(accounts, auth)
    user, pair = await auth.signed_in()
    other_user, other_pair = await auth.signed_in()
    token = bearer(pair.access_token)

    reply = await auth.stub.RevokeUserSessions(
        pb.RevokeUserSessionsRequest(username=user.username.upper()),
        metadata=bearer(admin),
        timeout=TIMEOUT,
    )
    assert reply.refresh_tokens_revoked == 1
    assert reply.valid_after.seconds > 0

    # ``strict`` is another instance: it learns of the stamp by watching the bucket.
    await wait_for(
        lambda: refused_by_all((auth, strict), token),
        timeout=1,
        interval=0.01,
        message="revoked everywhere",
    )
    refresh = await failure(
        auth.stub.Refresh(pb.RefreshRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT)
    )
    assert refresh.code() is grpc.StatusCode.UNAUTHENTICATED
    # Another user is untouched, and the user signs in again with a token that works.
    await strict.stub.GetMe(
        pb.GetMeRequest(), metadata=bearer(other_pair.access_token), timeout=TIMEOUT
    )
    assert other_user.username != user.username
    fresh = await auth.login(user.username, user.password)
    await strict.stub.GetMe(pb.GetMeRequest(), metadata=bearer(fresh.access_token), timeout=TIMEOUT)

    denied = await failure(
        auth.stub.RevokeUserSessions(
            pb.RevokeUserSessionsRequest(username=other_user.username),
            metadata=bearer(fresh.access_token),
            timeout=TIMEOUT,
        )
    )
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
    page = await auth.stub.ListAuditEvents(
        pb.ListAuditEventsRequest(action="auth.sessions_revoked"),
        metadata=bearer(admin),
        timeout=TIMEOUT,
    )
    assert any(e.target == user.username for e in page.events)
