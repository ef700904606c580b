"""WatchAuditEvents through Envoy: an admin sees other calls' audit events as they happen."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from sutazai.auth.v1 import access_pb2
from sutazai.auth.v1 import auth_service_pb2 as pb
from sutazai.auth.v1 import auth_service_pb2_grpc as pb_grpc
from sutazai.runtime.settings import MeshSettings
from sutazai.services.auth.trail import DEACTIVATED, ROLE_CHANGED
from tests.e2e.test_auth import bearer, registered_user

PUSHED_WITHIN = 5.0
"""Seconds an event may take to reach a watcher: a push, far below the 30 s keep-alive re-read."""


@pytest.fixture(scope="module")
async def auth(mesh_services: MeshSettings) -> AsyncIterator[pb_grpc.AuthServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh_services.envoy.port}") as channel:
        yield pb_grpc.AuthServiceStub(channel)


@pytest.fixture
async def rest(mesh_services: MeshSettings) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{mesh_services.envoy.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


def signed(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def next_events(
    call: grpc.aio.UnaryStreamCall, within: float = PUSHED_WITHIN
) -> list[pb.AuditEvent]:
    """The events of the next message that has any (keep-alives are skipped)."""
    async with asyncio.timeout(within):
        while True:
            message = await call.read()
            assert message is not grpc.aio.EOF
            if message.events:
                return list(message.events)


async def test_an_admin_sees_a_role_change_and_a_deactivation_as_they_happen(
    auth: pb_grpc.AuthServiceStub, rest: httpx.AsyncClient, admin_token: str
) -> None:
    username, _ = await registered_user(rest)
    everything = auth.WatchAuditEvents(
        pb.WatchAuditEventsRequest(), metadata=signed(admin_token), timeout=60
    )
    deactivations = auth.WatchAuditEvents(
        pb.WatchAuditEventsRequest(action=DEACTIVATED), metadata=signed(admin_token), timeout=60
    )
    try:
        for call in (everything, deactivations):
            assert list((await call.read()).events) == []  # the watch is open
        await auth.SetUserRole(
            pb.SetUserRoleRequest(username=username, role=access_pb2.ROLE_OPERATOR),
            metadata=signed(admin_token),
            timeout=10,
        )
        await auth.DeactivateUser(
            pb.DeactivateUserRequest(username=username), metadata=signed(admin_token), timeout=10
        )
        seen: list[pb.AuditEvent] = []
        while not any(e.action == DEACTIVATED and e.target == username for e in seen):
            seen += await next_events(everything)
        mine = [e.action for e in seen if e.target == username]
        assert mine.index(ROLE_CHANGED) < mine.index(DEACTIVATED)
        ids = [e.event_id for e in seen]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)

        filtered = await next_events(deactivations)
        assert {e.action for e in filtered} == {DEACTIVATED}
        assert filtered[0].target == username

        role_change = next(e for e in seen if e.action == ROLE_CHANGED and e.target == username)
        replay = auth.WatchAuditEvents(
            pb.WatchAuditEventsRequest(after_event_id=role_change.event_id - 1, actor=""),
            metadata=signed(admin_token),
            timeout=60,
        )
        try:
            replayed = await next_events(replay)
            assert replayed[0].event_id == role_change.event_id
            assert replayed[0].detail == role_change.detail
            assert DEACTIVATED in {e.action for e in replayed}
        finally:
            replay.cancel()
    finally:
        everything.cancel()
        deactivations.cancel()


async def test_an_actor_filter_keeps_other_actors_out(
    auth: pb_grpc.AuthServiceStub, rest: httpx.AsyncClient, admin_token: str
) -> None:
    username, _ = await registered_user(rest)
    nobody = auth.WatchAuditEvents(
        pb.WatchAuditEventsRequest(after_event_id=1, actor="no-such-actor"),
        metadata=signed(admin_token),
        timeout=60,
    )
    try:
        assert list((await nobody.read()).events) == []
        await auth.DeactivateUser(
            pb.DeactivateUserRequest(username=username), metadata=signed(admin_token), timeout=10
        )
        with pytest.raises(TimeoutError):
            await next_events(nobody, within=2)
    finally:
        nobody.cancel()


async def test_only_admins_may_watch(auth: pb_grpc.AuthServiceStub, operator_token: str) -> None:
    call = auth.WatchAuditEvents(
        pb.WatchAuditEventsRequest(), metadata=signed(operator_token), timeout=10
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_bad_filters_are_invalid_arguments(
    auth: pb_grpc.AuthServiceStub, admin_token: str
) -> None:
    for request in (
        pb.WatchAuditEventsRequest(after_event_id=-1),
        pb.WatchAuditEventsRequest(actor="x" * 257),
    ):
        call = auth.WatchAuditEvents(request, metadata=signed(admin_token), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_rest_watch_is_ndjson(rest: httpx.AsyncClient, admin_token: str) -> None:
    async with rest.stream(
        "GET",
        "/v1/audit/events:watch",
        params={"after_event_id": 1, "action": ROLE_CHANGED},
        headers=bearer(admin_token),
    ) as reply:
        assert reply.status_code == 200
        first = json.loads(await anext(reply.aiter_lines()))
    assert first["events"]
    assert {e["action"] for e in first["events"]} == {ROLE_CHANGED}
    refused = await rest.get("/v1/audit/events:watch", params={"after_event_id": -1})
    assert refused.status_code == 401
