"""An instance that drains ends its audit watches, so their clients reconnect elsewhere."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import grpc
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from sutazai.auth.v1 import auth_service_pb2 as pb
from sutazai.auth.v1 import auth_service_pb2_grpc as pb_grpc
from sutazai.runtime.settings import MeshSettings
from sutazai.services.auth.accounts import Accounts
from tests.auth.conftest import hosted
from tests.auth.helpers import bearer, make_admin


async def test_a_draining_instance_ends_its_audit_watches_cleanly(
    auth_settings: MeshSettings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    auth_js: JetStreamContext,
    accounts: Accounts,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        # A grace far longer than the test: only the drain hook can end the watch cleanly;
        # waiting out the grace would cut it (CANCELLED), not end it (OK).
        caller = await stack.enter_async_context(
            hosted(auth_settings, pool, redis_client, auth_js, grace_seconds=60.0)
        )
        token = await make_admin(accounts, caller)
        async with grpc.aio.insecure_channel(caller.address) as channel:
            watch = pb_grpc.AuthServiceStub(channel).WatchAuditEvents(
                pb.WatchAuditEventsRequest(), metadata=bearer(token)
            )
            assert isinstance(await watch.read(), pb.WatchAuditEventsResponse)

            stopping = asyncio.create_task(stack.aclose())
            while (message := await watch.read()) is not grpc.aio.EOF:
                assert isinstance(message, pb.WatchAuditEventsResponse)
            assert await watch.code() == grpc.StatusCode.OK
            await stopping
