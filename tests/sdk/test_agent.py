"""The agent SDK against real NATS JetStream, with the test playing the coordinator.

Each test runs an agent instance of its own (a fresh instance id, so its own consumer, work
subject and report subject), assigns it work on ``SUTAZAI_WORK`` and reads what it reports on
``SUTAZAI_REPORTS`` and writes to ``sutazai_agents``, as the coordinator and the task service
would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2
from nats.aio.client import Client

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.ops.supervisor.environment import settings_environment
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.settings import MeshSettings
from sutazai.sdk import Agent, AgentSettings, InvalidPayloadError, TaskContext, TaskError, subjects
from tests.harness.waiting import wait_for
from tests.sdk.coordinator import Coordinator

QUICK = AgentSettings(
    heartbeat_seconds=0.5,
    heartbeat_min_seconds=0.0,
    ack_wait_seconds=3.0,
    fetch_seconds=0.5,
    drain_seconds=10.0,
    cancel_grace_seconds=2.0,
    progress_interval_seconds=0.0,
)
"""Short cadences, so the tests wait on conditions for seconds, not minutes."""

AgentFactory = Callable[..., Awaitable[Agent]]


@pytest.fixture
async def nc(mesh_settings: MeshSettings) -> AsyncIterator[Client]:
    client = await connect_nats(mesh_settings, name="sutazai-tests-sdk")
    yield client
    await client.close()


@pytest.fixture
def instance() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def coordinator(nc: Client, instance: str) -> AsyncIterator[Coordinator]:
    playing = Coordinator(nc, "tester", instance)
    await playing.start()
    yield playing
    await playing.close()


@pytest.fixture
async def start_agent(nc: Client, instance: str) -> AsyncIterator[AgentFactory]:
    """Starts an agent named ``tester`` with the test's instance id; stopped at the end."""
    started: list[Agent] = []

    async def start(
        handlers: dict[str, Any], *, settings: AgentSettings = QUICK, **options: Any
    ) -> Agent:
        agent = Agent("tester", settings=settings, instance_id=instance, **options)
        for task_type, handler in handlers.items():
            agent.register(task_type, handler)
        await agent.start(nc)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        await agent.stop()


def status_of(report: Any) -> tuple[int, str, bool]:
    failed = report.failed
    return failed.error.code, failed.error.message, failed.retryable


# Results, progress, failures -----------------------------------------------------------------


async def test_a_handler_result_is_reported_after_started_and_progress(
    start_agent: AgentFactory, coordinator: Coordinator
) -> None:
    async def echo(task: TaskContext) -> dict[str, Any]:
        await task.report_progress(0.5, "halfway")
        return {"echo": task.payload["text"], "attempt": task.attempt, "type": task.type}

    await start_agent({"test.echo": echo})
    task_id = await coordinator.assign("test.echo", {"text": "hello"}, attempt=2)

    final = await coordinator.final(task_id)

    events = [r.WhichOneof("event") for r in coordinator.of(task_id)]
    assert events == ["started", "progress", "succeeded"]
    progress = coordinator.of(task_id, "progress")[0].progress
    assert (progress.fraction, progress.message) == (0.5, "halfway")
    assert json_format.MessageToDict(final.succeeded.result) == {
        "echo": "hello",
        "attempt": 2,
        "type": "test.echo",
    }
    assert final.attempt == 2
    assert final.agent_id == f"tester.{coordinator.instance}"
    # Acknowledged after the report was stored: nothing is left for the instance.
    await wait_for(coordinator.settled, timeout=10, message="assignment acknowledged")


async def test_handler_failures_say_whether_a_retry_can_help(
    start_agent: AgentFactory, coordinator: Coordinator
) -> None:
    async def fails(task: TaskContext) -> dict[str, Any]:
        match task.payload["how"]:
            case "crash":
                raise RuntimeError("disk on fire")
            case "final":
                raise TaskError("cannot parse", retryable=False, code=grpc.StatusCode.DATA_LOSS)
            case _:
                raise InvalidPayloadError({"how": "must be crash or final"})

    await start_agent({"test.fail": fails})
    crash = await coordinator.assign("test.fail", {"how": "crash"})
    final = await coordinator.assign("test.fail", {"how": "final"})
    invalid = await coordinator.assign("test.fail", {"how": "other"})

    assert status_of(await coordinator.final(crash)) == (
        code_pb2.UNKNOWN,
        "RuntimeError: disk on fire",
        True,
    )
    assert status_of(await coordinator.final(final)) == (code_pb2.DATA_LOSS, "cannot parse", False)
    report = await coordinator.final(invalid)
    code, message, retryable = status_of(report)
    assert (code, retryable) == (code_pb2.INVALID_ARGUMENT, False)
    assert "how: must be crash or final" in message
    bad_request = error_details_pb2.BadRequest()
    assert report.failed.error.details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("how", "must be crash or final")
    ]
    await wait_for(coordinator.settled, timeout=10, message="assignments acknowledged")


async def test_results_over_256_kib_and_unknown_types_fail(
    start_agent: AgentFactory, coordinator: Coordinator
) -> None:
    async def big(task: TaskContext) -> dict[str, Any]:
        return {"blob": "x" * (256 * 1024)}

    await start_agent({"test.big": big})
    too_big = await coordinator.assign("test.big")
    unknown = await coordinator.assign("test.nobody")

    code, message, retryable = status_of(await coordinator.final(too_big))
    assert (code, retryable) == (code_pb2.RESOURCE_EXHAUSTED, False)
    assert "at most 262144" in message
    code, _, _ = status_of(await coordinator.final(unknown))
    assert code == code_pb2.UNIMPLEMENTED


async def test_an_assignment_delivered_again_after_its_run_is_answered_not_run_again(
    start_agent: AgentFactory, coordinator: Coordinator
) -> None:
    runs: list[int] = []

    async def count(task: TaskContext) -> dict[str, Any]:
        runs.append(task.attempt)
        return {"runs": len(runs)}

    await start_agent({"test.count": count})
    task_id = await coordinator.assign("test.count")
    first = await coordinator.final(task_id)
    await wait_for(coordinator.settled, timeout=10, message="assignment acknowledged")

    # The same attempt once more, as JetStream delivers it when the acknowledgement was lost
    # (NATS restarted): answered with the same report, acknowledged, and not run.
    await coordinator.assign("test.count", task_id=task_id, msg_id=f"{task_id}.1.again")
    await wait_for(coordinator.settled, timeout=10, message="acknowledged again")

    assert runs == [1]
    assert json_format.MessageToDict(first.succeeded.result) == {"runs": 1}
    # Published with the same message id: the stream kept the first one only.
    assert [r.WhichOneof("event") for r in coordinator.of(task_id)] == ["started", "succeeded"]
    # Another attempt is another run.
    await coordinator.assign("test.count", task_id=task_id, attempt=2)
    assert json_format.MessageToDict((await coordinator.final_of(task_id, 2)).succeeded.result) == {
        "runs": 2
    }


# Deadlines and cancellation --------------------------------------------------------------------


async def test_a_handler_past_its_deadline_is_cancelled_and_fails(
    start_agent: AgentFactory, coordinator: Coordinator
) -> None:
    observed = asyncio.Event()

    async def slow(task: TaskContext) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            observed.set()
            raise
        return {}

    await start_agent({"test.slow": slow})
    task_id = await coordinator.assign("test.slow", deadline_seconds=1.0)

    code, message, retryable = status_of(await coordinator.final(task_id))

    assert (code, retryable) == (code_pb2.DEADLINE_EXCEEDED, True)
    assert "deadline" in message
    assert observed.is_set()
    await wait_for(coordinator.settled, timeout=10, message="assignment acknowledged")


async def test_a_cancel_stops_the_handler_and_is_reported(
    start_agent: AgentFactory, coordinator: Coordinator
) -> None:
    observed = asyncio.Event()
    seen_cancelled_flag: list[bool] = []

    async def waits(task: TaskContext) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen_cancelled_flag.append(task.cancelled)
            observed.set()
            raise
        return {}

    await start_agent({"test.wait": waits})
    task_id = await coordinator.assign("test.wait")
    await coordinator.event(task_id, "started")

    await coordinator.cancel(task_id)

    final = await coordinator.final(task_id)
    assert final.WhichOneof("event") == "cancelled"
    assert observed.is_set()
    assert seen_cancelled_flag == [True]
    await wait_for(coordinator.settled, timeout=10, message="assignment acknowledged")


async def test_a_cancel_for_another_attempt_changes_nothing(
    start_agent: AgentFactory, coordinator: Coordinator
) -> None:
    release = asyncio.Event()

    async def waits(task: TaskContext) -> dict[str, Any]:
        await release.wait()
        return {"done": True}

    await start_agent({"test.wait": waits})
    task_id = await coordinator.assign("test.wait", attempt=2)
    await coordinator.event(task_id, "started")

    await coordinator.cancel(task_id, attempt=1)
    await coordinator.nc.flush()
    release.set()

    assert (await coordinator.final(task_id)).WhichOneof("event") == "succeeded"


# Heartbeats and drain ------------------------------------------------------------------------


async def test_the_heartbeat_shows_capabilities_and_load(
    start_agent: AgentFactory, coordinator: Coordinator
) -> None:
    release = asyncio.Event()

    async def waits(task: TaskContext) -> dict[str, Any]:
        await release.wait()
        return {}

    await start_agent({"test.wait": waits}, capabilities=["gpu"], max_concurrency=3)

    async def beat(check: Callable[[agents_pb.AgentHeartbeat], bool]) -> bool:
        heartbeat = await coordinator.heartbeat()
        return heartbeat is not None and check(heartbeat)

    await wait_for(lambda: beat(lambda h: h.running == 0), timeout=10, message="idle heartbeat")
    first = await coordinator.heartbeat()
    assert first is not None
    assert first.agent_id == f"tester.{coordinator.instance}"
    assert list(first.capabilities) == ["test.wait", "gpu"]
    assert first.max_concurrency == 3
    assert first.state == agents_pb.AGENT_STATE_ONLINE
    assert first.runtime.startswith("python/")
    assert first.started_at.seconds > 0

    task_id = await coordinator.assign("test.wait")
    await wait_for(lambda: beat(lambda h: h.running == 1), timeout=10, message="running 1")
    release.set()
    await coordinator.final(task_id)
    await wait_for(
        lambda: beat(lambda h: h.running == 0 and h.succeeded == 1 and h.mean_duration_ms > 0),
        timeout=10,
        message="running 0, succeeded 1",
    )


async def test_a_drain_finishes_running_work_takes_no_more_and_leaves(
    start_agent: AgentFactory, coordinator: Coordinator, nc: Client
) -> None:
    release = asyncio.Event()

    async def waits(task: TaskContext) -> dict[str, Any]:
        await release.wait()
        return {"finished": True}

    agent = await start_agent({"test.wait": waits}, max_concurrency=2)
    running = await coordinator.assign("test.wait")
    await coordinator.event(running, "started")

    stopping = asyncio.create_task(agent.stop())
    await wait_for(
        lambda: _state(coordinator, agents_pb.AGENT_STATE_DRAINING), timeout=10, message="DRAINING"
    )
    late = await coordinator.assign("test.wait")
    release.set()
    await asyncio.wait_for(stopping, timeout=20)

    assert (await coordinator.final(running)).WhichOneof("event") == "succeeded"
    assert coordinator.of(late) == []
    # The late assignment is still in the work stream, for the instance's successor.
    last = await nc.jetstream().get_last_msg(
        subjects.WORK_STREAM, subjects.work_subject("tester", coordinator.instance)
    )
    assert last.data is not None
    assert await coordinator.heartbeat() is None


async def test_a_drain_cancels_what_outlives_its_bound(
    start_agent: AgentFactory, coordinator: Coordinator
) -> None:
    async def forever(task: TaskContext) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    agent = await start_agent(
        {"test.forever": forever}, settings=QUICK.model_copy(update={"drain_seconds": 0.5})
    )
    task_id = await coordinator.assign("test.forever")
    await coordinator.event(task_id, "started")

    await asyncio.wait_for(agent.stop(), timeout=20)

    code, message, retryable = status_of(await coordinator.final(task_id))
    assert (code, retryable) == (code_pb2.UNAVAILABLE, True)
    assert "stopped" in message


# A killed instance -----------------------------------------------------------------------------


async def test_an_unacknowledged_assignment_is_redelivered_to_the_restarted_instance(
    mesh_settings: MeshSettings,
    start_agent: AgentFactory,
    coordinator: Coordinator,
    instance: str,
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SUTAZAI_")},
        **settings_environment(mesh_settings),
        "SUTAZAI_AGENT_INSTANCE_ID": instance,
        "SUTAZAI_AGENT_ACK_WAIT_SECONDS": "2",
        "SUTAZAI_AGENT_FETCH_SECONDS": "0.5",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.sdk.agent_process",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        task_id = await coordinator.assign("test.work", {"who": "anyone"})
        await coordinator.event(task_id, "started", timeout=60)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()

    async def work(task: TaskContext) -> dict[str, Any]:
        return {"by": "successor", "who": task.payload["who"]}

    await start_agent({"test.work": work})

    final = await coordinator.final(task_id, timeout=30)
    assert json_format.MessageToDict(final.succeeded.result) == {
        "by": "successor",
        "who": "anyone",
    }
    assert len(coordinator.of(task_id, "started")) >= 1
    await wait_for(coordinator.settled, timeout=10, message="assignment acknowledged")


async def _state(coordinator: Coordinator, state: int) -> bool:
    heartbeat = await coordinator.heartbeat()
    return heartbeat is not None and heartbeat.state == state
