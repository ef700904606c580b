"""The client's task, agent, coordinator and resource calls against a stand-in edge.

The stand-in (``tests/client/work_edge.py``) is a real grpc.aio server reached as Envoy is,
through ``settings.envoy.port``; its statuses carry the rich details the real services send.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.client import CallFailed, MeshClient
from sutazai.client.mesh import FINAL_STATES, as_struct
from sutazai.coordinator.v1 import coordinator_service_pb2 as coord_pb
from sutazai.resources.v1 import resource_service_pb2 as res_pb
from sutazai.tasks.v1 import task_service_pb2 as pb
from tests.client.test_streams import settings_for, signed_in
from tests.client.work_edge import DEAD_ID, WorkEdge, work_edge
from tests.harness import wait_for

pytestmark = pytest.mark.integration

DEADLINE = 10.0


@pytest.fixture
async def edge() -> AsyncIterator[WorkEdge]:
    async with work_edge() as started:
        yield started


def client_of(edge: WorkEdge, tmp_path: Path, access_token: str = "operator") -> MeshClient:  # noqa: S107
    return MeshClient(
        settings_for(tmp_path, edge.port), tokens=signed_in(access_token), call_timeout=5.0
    )


async def test_create_sends_every_field_and_a_repeated_key_returns_the_first(
    edge: WorkEdge, tmp_path: Path
) -> None:
    async with client_of(edge, tmp_path) as client:
        created = await client.create_task(
            "text.summarize",
            {"text": "a long text", "max_words": 12, "nested": {"ok": True}},
            priority=2,
            required_capabilities=["lang.en"],
            timeout_seconds=60,
            idempotency_key="k-1",
            max_attempts=5,
        )
        again = await client.create_task("text.summarize", {}, idempotency_key="k-1")
    assert created.created
    assert created.task.state == pb.TASK_STATE_QUEUED
    assert not again.created
    assert again.task.task_id == created.task.task_id
    sent = edge.tasks.requests[0]
    assert isinstance(sent, pb.CreateTaskRequest)
    assert (sent.type, sent.priority, list(sent.required_capabilities)) == (
        "text.summarize",
        2,
        ["lang.en"],
    )
    assert (sent.timeout_seconds, sent.idempotency_key, sent.max_attempts) == (60, "k-1", 5)
    assert dict(sent.payload) == {
        "text": "a long text",
        "max_words": 12.0,
        "nested": sent.payload["nested"],
    }
    assert sent.payload["nested"]["ok"] is True
    assert edge.tasks.tokens[0] == "Bearer operator"


async def test_invalid_input_names_each_field(edge: WorkEdge, tmp_path: Path) -> None:
    async with client_of(edge, tmp_path) as client:
        with pytest.raises(CallFailed) as invalid:
            await client.create_task("", priority=7)
        with pytest.raises(CallFailed) as malformed:
            await client.get_task("not-a-uuid")
        with pytest.raises(CallFailed) as missing:
            await client.get_task("00000000-0000-4000-8000-999999999999")
    assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(invalid.value.violations) == {"type", "priority"}
    assert malformed.value.violations == {"task_id": "must be a UUID"}
    assert missing.value.code == grpc.StatusCode.NOT_FOUND


def test_a_payload_that_is_not_json_is_refused_before_any_call() -> None:
    assert as_struct(None) == struct_pb2.Struct()
    given = struct_pb2.Struct()
    given.update({"a": 1})
    assert as_struct(given) == given
    assert as_struct(given) is not given
    with pytest.raises(ValueError, match="JSON object"):
        as_struct({"when": object()})


async def test_get_list_and_cancel(edge: WorkEdge, tmp_path: Path) -> None:
    async with client_of(edge, tmp_path) as client:
        ids = [(await client.create_task("slow.task", {"n": n})).task.task_id for n in range(5)]
        got = await client.get_task(ids[0])
        listed = await client.list_tasks(states=[pb.TASK_STATE_QUEUED], limit=3)
        every = await client.list_tasks(all_users=True, limit=1000)
        cancelled = await client.cancel_task(ids[0], reason="not needed")
        with pytest.raises(CallFailed) as finished:
            await client.cancel_task(ids[0])
    assert got.task_id == ids[0]
    assert [t.task_id for t in listed] == list(reversed(ids))[:3]
    assert len(every) == 6  # and the dead letter
    pages = [r for r in edge.tasks.requests if isinstance(r, pb.ListTasksRequest)]
    assert [r.page_size for r in pages] == [3, 100]
    assert list(pages[0].states) == [pb.TASK_STATE_QUEUED]
    assert cancelled.state == pb.TASK_STATE_CANCELLED
    assert cancelled.error.message == "not needed"
    assert finished.value.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_user_listing_every_users_tasks_is_refused(edge: WorkEdge, tmp_path: Path) -> None:
    async with client_of(edge, tmp_path, access_token="user") as client:
        with pytest.raises(CallFailed) as denied:
            await client.list_tasks(all_users=True)
        with pytest.raises(CallFailed) as dead:
            await client.list_dead_letters()
    assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert dead.value.code == grpc.StatusCode.PERMISSION_DENIED


async def test_watch_task_reconnects_skips_keep_alives_and_ends_after_a_final_state(
    edge: WorkEdge, tmp_path: Path
) -> None:
    async with client_of(edge, tmp_path) as client:
        task = (await client.create_task("text.summarize", {"text": "x"})).task

        async def states() -> list[int]:
            return [seen.state async for seen in client.watch_task(task.task_id)]

        seen = await asyncio.wait_for(states(), DEADLINE)
    # The first stream ended early (after a keep-alive); the second carried it to the end.
    assert edge.tasks.watch_calls[task.task_id] == 2
    assert seen == [pb.TASK_STATE_QUEUED, pb.TASK_STATE_RUNNING, pb.TASK_STATE_SUCCEEDED]
    assert seen[-1] in FINAL_STATES


async def test_watch_task_of_a_failing_task_ends_failed(edge: WorkEdge, tmp_path: Path) -> None:
    async with client_of(edge, tmp_path) as client:
        task = (await client.create_task("always.fail")).task

        async def last() -> pb.Task:
            return [seen async for seen in client.watch_task(task.task_id)][-1]

        ended = await asyncio.wait_for(last(), DEADLINE)
    assert ended.state == pb.TASK_STATE_FAILED
    assert "RuntimeError" in ended.error.message


async def test_watch_tasks_sends_the_snapshot_then_changes_without_keep_alives(
    edge: WorkEdge, tmp_path: Path
) -> None:
    seen: list[pb.WatchTasksResponse] = []
    async with client_of(edge, tmp_path) as client:

        async def follow() -> None:
            async for message in client.watch_tasks(
                states=[pb.TASK_STATE_QUEUED], task_type="x", all_users=True, snapshot_size=10
            ):
                seen.append(message)

        reader = asyncio.create_task(follow())
        try:
            await wait_for(lambda: len(seen) == 1, DEADLINE, message="the snapshot")
            created = await client.create_task("text.summarize")
            await wait_for(lambda: len(seen) == 2, DEADLINE, message="the change")
        finally:
            reader.cancel()
    assert seen[0].snapshot
    assert seen[0].task.task_id == DEAD_ID
    assert not seen[1].snapshot
    assert seen[1].task.task_id == created.task.task_id
    [request] = [r for r in edge.tasks.requests if isinstance(r, pb.WatchTasksRequest)]
    assert request == pb.WatchTasksRequest(
        states=[pb.TASK_STATE_QUEUED], type="x", all_users=True, snapshot_size=10
    )


async def test_dead_letters_are_listed_and_requeued(edge: WorkEdge, tmp_path: Path) -> None:
    async with client_of(edge, tmp_path) as client:
        [dead] = await client.list_dead_letters()
        requeued = await client.requeue_dead_letter(dead.task_id)
        assert await client.list_dead_letters() == []
        with pytest.raises(CallFailed) as again:
            await client.requeue_dead_letter(dead.task_id)
    assert dead.task_id == DEAD_ID
    assert requeued.state == pb.TASK_STATE_QUEUED
    assert not requeued.dead_lettered
    assert again.value.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_agents_are_listed_got_and_watched(edge: WorkEdge, tmp_path: Path) -> None:
    async with client_of(edge, tmp_path, access_token="user") as client:
        listed = await client.list_agents()
        one = await client.get_agent("text.2")
        with pytest.raises(CallFailed) as missing:
            await client.get_agent("text.9")
        watched: list[agents_pb.WatchAgentsResponse] = []
        async with asyncio.timeout(DEADLINE):
            async for message in client.watch_agents():
                watched.append(message)
                if len(watched) == 3:
                    break
    assert [a.heartbeat.agent_id for a in listed] == ["text.1", "text.2"]
    assert one.load == 0
    assert missing.value.code == grpc.StatusCode.NOT_FOUND
    assert [m.snapshot for m in watched] == [True, True, False]  # the keep-alive skipped
    assert watched[2].agent.state == agents_pb.AGENT_STATE_OFFLINE


async def test_the_coordinator_calls_are_for_operators(edge: WorkEdge, tmp_path: Path) -> None:
    async with client_of(edge, tmp_path) as client:
        assert (await client.get_strategy()).strategy == coord_pb.STRATEGY_ROUND_ROBIN
        now = await client.set_strategy(coord_pb.STRATEGY_LEAST_LOADED)
        stats = await client.coordinator_stats()
        streams = await client.list_streams()
        with pytest.raises(CallFailed) as unset:
            await client.set_strategy(coord_pb.STRATEGY_UNSPECIFIED)
    assert now == coord_pb.STRATEGY_LEAST_LOADED
    assert stats.strategy == coord_pb.STRATEGY_LEAST_LOADED
    assert list(stats.queued_by_priority) == [4, 2, 1, 0]
    assert [s.name for s in streams] == ["SUTAZAI_TASKS"]
    assert unset.value.violations == {"strategy": "must be set"}
    async with client_of(edge, tmp_path, access_token="user") as client:
        with pytest.raises(CallFailed) as denied:
            await client.coordinator_stats()
    assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED


async def test_resources_allocations_and_policies(edge: WorkEdge, tmp_path: Path) -> None:
    async with client_of(edge, tmp_path, access_token="user") as client:
        [cpu] = await client.get_resources()
        leases = await client.list_allocations(holder="text.1")
        none = await client.list_allocations(
            resource_type=res_pb.RESOURCE_TYPE_GPU, holder="text.2"
        )
        [policy] = await client.get_policies()
    assert (cpu.resource_type, cpu.capacity) == (res_pb.RESOURCE_TYPE_CPU, 8)
    assert [lease.allocation_id for lease in leases] == ["a-1"]
    assert none == []
    assert policy.max_total_percent == 80
