"""The coordinator engine on a real NATS: the test plays the task service and the agents.

A NATS of this module's own (the task streams of ``nats/jetstream.toml``, principals
``coordinator`` and ``resources``, two external agents ``alpha`` (2 instances) and ``beta``);
the coordinator runs in this process as the ``coordinator`` principal. Dispatches are published
as the task service would (as ``admin``); each fake agent heartbeats, pulls its own work
consumer and publishes reports on its own subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2, status_pb2
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from prometheus_client import CollectorRegistry

from sutazai.agents.v1.agent_service_pb2 import (
    AGENT_STATE_OFFLINE,
    AGENT_STATE_ONLINE,
    AgentHeartbeat,
)
from sutazai.coordinator.v1 import coordinator_service_pb2 as pb
from sutazai.ops.supervisor.components.nats import nats_component
from sutazai.ops.supervisor.environment import child_environment
from sutazai.resources.v1.resource_service_pb2 import (
    AllocateReply,
    AllocateRequest,
    AllocateResponse,
    Allocation,
    ReleaseReply,
    ReleaseRequest,
)
from sutazai.runtime.deployment import AgentEntry
from sutazai.runtime.jetstream import (
    AGENTS_BUCKET,
    COORDINATOR_BUCKET,
    DEAD_STREAM,
    REPORTS_STREAM,
    TASKS_STREAM,
    WORK_STREAM,
    agent_report_subject,
    control_subject,
    message_id,
    queue_subject,
    work_consumer,
)
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.settings import CoordinatorSettings, MeshSettings
from sutazai.services.coordinator.agents import AgentDirectory
from sutazai.services.coordinator.engine import Coordinator
from sutazai.services.coordinator.metrics import CoordinatorMetrics
from sutazai.tasks.v1.dispatch_pb2 import (
    TaskAssignment,
    TaskCancelled,
    TaskCancelRequested,
    TaskControl,
    TaskDispatch,
    TaskFailed,
    TaskReport,
    TaskStarted,
    TaskSucceeded,
)
from sutazai.tasks.v1.task_service_pb2 import ResourceNeed
from tests.harness import MeshPorts, build_settings, new_state_dir, remove_state_dir, supervised
from tests.harness.waiting import wait_for
from tests.supervisor.test_nats_permissions import POLICY

pytestmark = pytest.mark.integration

SERVICES = ("coordinator", "resources")
AGENTS = (
    AgentEntry("alpha", instances=2, external=True),
    AgentEntry("beta", instances=1, external=True),
)
SETTINGS = CoordinatorSettings(
    backoff_base_seconds=0.05,
    backoff_max_seconds=0.2,
    hold_ack_wait_seconds=3.0,
    leader_lease_seconds=2.0,
)


@pytest.fixture(scope="module")
async def task_nats() -> AsyncIterator[MeshSettings]:
    state_dir = new_state_dir()
    try:
        settings = build_settings(state_dir, MeshPorts.pick(), services=SERVICES, agents=AGENTS)
        component = nats_component(
            settings, child_environment(settings), services=SERVICES, agents=AGENTS, policy=POLICY
        )
        async with supervised(settings, [component]):
            yield settings
    finally:
        remove_state_dir(state_dir)


@dataclass
class Mesh:
    """The admin connection, the running coordinator and the coordinator's reports so far."""

    admin: NatsClient
    coordinator: Coordinator
    directory: AgentDirectory
    running: asyncio.Task[None]
    connection: NatsClient
    reports: list[TaskReport] = field(default_factory=list)

    async def stop(self) -> None:
        """Stop the coordinator as its process would: lease given up, connection closed.

        The connection goes too: a pull request it still had open would otherwise take the next
        message (delivered to nobody until its ack_wait passes).
        """
        await self.coordinator.release_lease()
        self.running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.running
        await self.connection.close()

    def events(self, task_id: str, kind: str | None = None) -> list[TaskReport]:
        return [
            r
            for r in self.reports
            if r.task_id == task_id and (kind is None or r.WhichOneof("event") == kind)
        ]

    async def reported(self, task_id: str, kind: str, count: int = 1) -> list[TaskReport]:
        await wait_for(
            lambda: len(self.events(task_id, kind)) >= count,
            timeout=15,
            message=f"{count} {kind} report(s) of {task_id}",
        )
        return self.events(task_id, kind)

    async def dispatch(
        self,
        *,
        task_type: str = "text.summarize",
        priority: int = 1,
        created_at: float = 1_000.0,
        max_attempts: int = 3,
        resources: Iterable[ResourceNeed] = (),
        task_id: str | None = None,
        msg_id: str | None = None,
    ) -> str:
        task_id = task_id or str(uuid.uuid4())
        created = Timestamp()
        created.FromMilliseconds(int(created_at * 1000))
        dispatch = TaskDispatch(
            task_id=task_id,
            attempt=1,
            type=task_type,
            priority=priority,
            max_attempts=max_attempts,
            timeout_seconds=60,
            created_at=created,
            resources=list(resources),
        )
        await self.admin.jetstream().publish(
            queue_subject(priority),
            dispatch.SerializeToString(),
            headers={"Nats-Msg-Id": msg_id or message_id(task_id, 1)},
        )
        return task_id

    async def cancel(self, task_id: str) -> None:
        report = TaskReport(task_id=task_id, cancel_requested=TaskCancelRequested(reason="test"))
        await self.admin.jetstream().publish("sutazai.reports.tasks", report.SerializeToString())


@dataclass
class FakeAgent:
    """An agent instance played by the test (as admin, on the agent's own subjects)."""

    mesh: Mesh
    agent_id: str
    capabilities: tuple[str, ...] = ("text.summarize",)
    max_concurrency: int = 10

    async def beat(self, *, running: int = 0, started_at: float | None = None) -> None:
        """A heartbeat; ``started_at`` is its process's start (seconds since the epoch)."""
        kv = await self.mesh.admin.jetstream().key_value(AGENTS_BUCKET)
        heartbeat = AgentHeartbeat(
            agent_id=self.agent_id,
            capabilities=self.capabilities,
            max_concurrency=self.max_concurrency,
            running=running,
            state=AGENT_STATE_ONLINE,
        )
        if started_at is not None:
            heartbeat.started_at.FromMilliseconds(int(started_at * 1000))
        await kv.put(self.agent_id, heartbeat.SerializeToString())
        await wait_for(
            lambda: self.mesh.directory.is_online(self.agent_id),
            timeout=10,
            message=f"{self.agent_id} online in the directory",
        )

    async def leave(self) -> None:
        kv = await self.mesh.admin.jetstream().key_value(AGENTS_BUCKET)
        await kv.delete(self.agent_id)

    async def take(self, count: int = 1) -> list[tuple[str, int, Msg]]:
        """The next ``count`` assignments: (task id, attempt, message)."""
        subscription = await self.mesh.admin.jetstream().pull_subscribe_bind(
            work_consumer(self.agent_id), stream=WORK_STREAM
        )
        taken: list[tuple[str, int, Msg]] = []
        async with asyncio.timeout(15):
            while len(taken) < count:
                with contextlib.suppress(TimeoutError):
                    for message in await subscription.fetch(count - len(taken), timeout=1):
                        assignment = TaskAssignment.FromString(message.data)
                        taken.append((assignment.task_id, assignment.attempt, message))
        await subscription.unsubscribe()
        return taken

    async def report(self, task_id: str, attempt: int, **event: object) -> int:
        """Publish a report on the instance's subject; its sequence in the stream."""
        report = TaskReport(task_id=task_id, attempt=attempt, agent_id=self.agent_id, **event)  # type: ignore[arg-type]
        ack = await self.mesh.admin.jetstream().publish(
            agent_report_subject(self.agent_id), report.SerializeToString()
        )
        return int(ack.seq)


async def _reset(admin: NatsClient) -> None:
    js = admin.jetstream()
    for stream in (TASKS_STREAM, WORK_STREAM, REPORTS_STREAM, DEAD_STREAM):
        await js.purge_stream(stream)
    for bucket in (AGENTS_BUCKET, COORDINATOR_BUCKET):
        await js.purge_stream(f"KV_{bucket}")


@pytest.fixture
async def mesh(task_nats: MeshSettings) -> AsyncIterator[Mesh]:
    admin = await connect_nats(task_nats, name="test-admin")
    await _reset(admin)
    reports: list[TaskReport] = []

    async def collect(message: Msg) -> None:
        reports.append(TaskReport.FromString(message.data))

    subscription = await admin.jetstream().subscribe(
        "sutazai.reports.coordinator",
        cb=collect,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.NEW,
    )
    nc = await connect_nats(task_nats.as_principal("coordinator"), name="test-coordinator")
    directory = AgentDirectory()
    coordinator = Coordinator(
        nc,
        SETTINGS,
        CoordinatorMetrics(CollectorRegistry()),
        directory,
        instance_id=uuid.uuid4().hex[:12],
    )
    running = asyncio.create_task(coordinator.run())
    try:
        await wait_for(lambda: coordinator.leading, timeout=15, message="coordinator leading")
        await wait_for(lambda: directory.ready.is_set(), timeout=15, message="agents loaded")
        yield Mesh(admin, coordinator, directory, running, nc, reports)
    finally:
        await coordinator.release_lease()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await subscription.unsubscribe()
        await nc.close()
        await admin.close()


def _ids(taken: list[tuple[str, int, Msg]]) -> list[str]:
    return [task_id for task_id, _, _ in taken]


async def test_assignment_by_priority_then_first_in_first_out(mesh: Mesh) -> None:
    low = await mesh.dispatch(priority=0, created_at=1.0)
    late_high = await mesh.dispatch(priority=3, created_at=9.0)
    mid = await mesh.dispatch(priority=1, created_at=2.0)
    early_high = await mesh.dispatch(priority=3, created_at=5.0)
    # Nobody offers the type yet: each task waits, with the reason reported once.
    for task_id in (low, late_high, mid, early_high):
        (waiting,) = await mesh.reported(task_id, "waiting")
        assert waiting.waiting.reason == "no online agent offers text.summarize"

    agent = FakeAgent(mesh, "alpha.1", max_concurrency=1)
    await agent.beat()
    order = []
    for _ in range(4):
        ((task_id, attempt, message),) = await agent.take()
        order.append(task_id)
        (assigned,) = await mesh.reported(task_id, "assigned")
        assert (assigned.agent_id, assigned.attempt, attempt) == ("alpha.1", 1, 1)
        await agent.report(task_id, 1, succeeded=TaskSucceeded())
        await message.ack()
    assert order == [early_high, late_high, mid, low]
    await wait_for(lambda: mesh.coordinator.stats().in_flight == 0, timeout=10, message="done")
    stats = mesh.coordinator.stats()
    assert stats.succeeded_total == 4
    assert list(stats.queued_by_priority) == [0, 0, 0, 0]
    # Once per reason: no agent at first, then a busy one (max_concurrency 1).
    reasons = [r.waiting.reason for r in mesh.events(low, "waiting")]
    assert reasons == [
        "no online agent offers text.summarize",
        "every agent offering text.summarize is busy",
    ]


async def test_round_robin_alternates_between_two_agents(mesh: Mesh) -> None:
    first, second = FakeAgent(mesh, "alpha.1"), FakeAgent(mesh, "alpha.2")
    await first.beat()
    await second.beat()
    tasks = [await mesh.dispatch(created_at=float(n)) for n in range(4)]
    for task_id in tasks:
        await mesh.reported(task_id, "assigned")
    agents = [mesh.events(t, "assigned")[0].agent_id for t in tasks]
    assert agents == ["alpha.1", "alpha.2", "alpha.1", "alpha.2"]
    assert sorted(_ids(await first.take(2))) == sorted([tasks[0], tasks[2]])
    assert sorted(_ids(await second.take(2))) == sorted([tasks[1], tasks[3]])


async def test_least_loaded_picks_the_idle_agent(mesh: Mesh) -> None:
    await mesh.coordinator.set_strategy(pb.STRATEGY_LEAST_LOADED, "tester")
    busy, idle = FakeAgent(mesh, "alpha.1", max_concurrency=4), FakeAgent(mesh, "alpha.2")
    await busy.beat(running=3)
    await idle.beat(running=0)
    task_id = await mesh.dispatch()
    (assigned,) = await mesh.reported(task_id, "assigned")
    assert assigned.agent_id == "alpha.2"
    assert mesh.coordinator.strategy.changed_by == "tester"


async def test_a_lost_agents_attempt_is_redelivered_as_attempt_two(mesh: Mesh) -> None:
    lost, other = FakeAgent(mesh, "alpha.1"), FakeAgent(mesh, "beta.1")
    await lost.beat()
    task_id = await mesh.dispatch()
    (assigned,) = await mesh.reported(task_id, "assigned")
    assert assigned.agent_id == "alpha.1"
    ((_, attempt, _),) = await lost.take()
    assert attempt == 1
    await lost.report(task_id, 1, started=TaskStarted())
    # Its heartbeat key goes (deleted here; an expiry is the same delete marker to a watch).
    await other.beat()
    await lost.leave()
    (requeued,) = await mesh.reported(task_id, "requeued")
    assert requeued.requeued.next_attempt == 2
    assert requeued.requeued.error.code == code_pb2.UNAVAILABLE
    (again,) = [r for r in await mesh.reported(task_id, "assigned", 2) if r.attempt == 2]
    assert again.agent_id == "beta.1"
    ((redelivered, attempt, message),) = await other.take()
    assert (redelivered, attempt) == (task_id, 2)
    await message.ack()
    # Nothing stale waits for the lost instance: its work subject was purged.
    info = await mesh.admin.jetstream().consumer_info(WORK_STREAM, work_consumer("alpha.1"))
    assert info.num_pending == 0
    assert mesh.directory.get("alpha.1") is not None
    assert mesh.directory.get("alpha.1").state == AGENT_STATE_OFFLINE  # type: ignore[union-attr]


def _at(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(int(seconds * 1000))
    return stamp


@pytest.mark.parametrize("restart_seen_first", [False, True])
async def test_an_instance_restarted_under_its_id_loses_what_its_predecessor_started(
    mesh: Mesh, restart_seen_first: bool
) -> None:
    # The supervisor restarts a killed agent under the same instance id within a second or two:
    # its key never expires, only its heartbeat's started_at tells the new process apart.
    restarted, other = FakeAgent(mesh, "alpha.1"), FakeAgent(mesh, "alpha.2")
    await restarted.beat(started_at=100.0)
    await other.beat(started_at=100.0)
    controls: asyncio.Queue[TaskControl] = asyncio.Queue()

    async def received(message: Msg) -> None:
        await controls.put(TaskControl.FromString(message.data))

    subscription = await mesh.admin.subscribe(control_subject("alpha.1"), cb=received)
    started, elsewhere, not_started = [await mesh.dispatch(created_at=float(n)) for n in range(3)]
    for task_id, agent_id in (
        (started, "alpha.1"),
        (elsewhere, "alpha.2"),
        (not_started, "alpha.1"),
    ):
        (assigned,) = await mesh.reported(task_id, "assigned")
        assert assigned.agent_id == agent_id  # round-robin
    ((taken, _, _),) = await restarted.take()
    assert taken == started
    if restart_seen_first:
        await restarted.beat(started_at=200.0)
        await restarted.report(started, 1, started=TaskStarted(), sent_at=_at(150.0))
    else:
        seq = await restarted.report(started, 1, started=TaskStarted(), sent_at=_at(150.0))

        async def applied() -> bool:
            info = await mesh.admin.jetstream().consumer_info(REPORTS_STREAM, "coordinator")
            return info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= seq

        await wait_for(applied, timeout=10, message="the start applied")
        await restarted.beat(started_at=200.0)

    (requeued,) = await mesh.reported(started, "requeued")
    assert requeued.requeued.next_attempt == 2
    assert requeued.requeued.error.code == code_pb2.UNAVAILABLE
    assert requeued.requeued.error.message == "agent alpha.1 restarted while it ran attempt 1"
    async with asyncio.timeout(10):
        control = await controls.get()
    await subscription.unsubscribe()
    # The successor would get attempt 1 again from JetStream: it is told to drop it.
    assert (control.task_id, control.attempt, control.WhichOneof("command")) == (
        started,
        1,
        "cancel",
    )
    # The next attempt goes to the other instance (round-robin's turn was alpha.1's).
    (again,) = [r for r in await mesh.reported(started, "assigned", 2) if r.attempt == 2]
    assert again.agent_id == "alpha.2"
    # What the predecessor had not started is still the successor's to run.
    assert mesh.events(not_started, "requeued") == []
    ((taken, attempt, _),) = await restarted.take()
    assert (taken, attempt) == (not_started, 1)
    assert mesh.events(elsewhere, "requeued") == []


async def test_a_dispatch_delivered_again_after_its_attempt_ended_is_dropped(
    mesh: Mesh, task_nats: MeshSettings
) -> None:
    agent = FakeAgent(mesh, "alpha.1")
    await agent.beat()
    task_id = await mesh.dispatch()
    ((_, _, message),) = await agent.take()
    await agent.report(task_id, 1, succeeded=TaskSucceeded())
    await message.ack()
    await wait_for(lambda: mesh.coordinator.stats().in_flight == 0, timeout=10, message="done")

    # JetStream delivers the dispatch again (its acknowledgement was lost when NATS restarted;
    # another message id here, past the stream's dedupe). A task dispatched after it is
    # assigned once the coordinator has read it.
    await mesh.dispatch(task_id=task_id, msg_id=f"{task_id}.again")
    after = await mesh.dispatch()
    await mesh.reported(after, "assigned")
    assert len(mesh.events(task_id, "assigned")) == 1

    # A coordinator started since knows the attempt ended, from its bucket.
    await mesh.stop()
    nc = await connect_nats(task_nats.as_principal("coordinator"), name="test-successor")
    successor = Coordinator(
        nc, SETTINGS, CoordinatorMetrics(CollectorRegistry()), AgentDirectory(), instance_id="n"
    )
    running = asyncio.create_task(successor.run())
    try:
        await wait_for(lambda: successor.leading, timeout=15, message="the successor leads")
        await mesh.dispatch(task_id=task_id, msg_id=f"{task_id}.again.2")
        later = await mesh.dispatch()
        await mesh.reported(later, "assigned")
        assert len(mesh.events(task_id, "assigned")) == 1
        assert successor.stats().in_flight == 2  # `after` and `later`, not the ended task
    finally:
        await successor.release_lease()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await nc.close()


async def test_an_assignment_recorded_but_never_published_goes_out_with_its_dispatch(
    mesh: Mesh, task_nats: MeshSettings
) -> None:
    # A coordinator stopped right after writing `assignment.<task>` and before publishing the
    # work: its successor restores the record; the dispatch, never acknowledged, comes again.
    agent = FakeAgent(mesh, "alpha.1")
    await agent.beat()
    await mesh.stop()
    task_id = str(uuid.uuid4())
    dispatch = TaskDispatch(task_id=task_id, attempt=1, type="text.summarize", priority=1)
    record = pb.AssignmentRecord(dispatch=dispatch, agent_id="alpha.1", assigned_at=_at(1e9))
    bucket = await mesh.admin.jetstream().key_value(COORDINATOR_BUCKET)
    await bucket.put(f"assignment.{task_id}", record.SerializeToString())
    await mesh.dispatch(task_id=task_id)

    nc = await connect_nats(task_nats.as_principal("coordinator"), name="test-successor")
    successor = Coordinator(
        nc, SETTINGS, CoordinatorMetrics(CollectorRegistry()), AgentDirectory(), instance_id="n"
    )
    running = asyncio.create_task(successor.run())
    try:
        ((taken, attempt, message),) = await agent.take()
        assert (taken, attempt) == (task_id, 1)
        await message.ack()
        assert successor.stats().in_flight == 1
        # Nothing else: the same dispatch again is deduplicated with the first publish.
        await mesh.dispatch(task_id=task_id, msg_id=f"{task_id}.again")
        later = await mesh.dispatch()
        await mesh.reported(later, "assigned")
        info = await mesh.admin.jetstream().consumer_info(WORK_STREAM, work_consumer("alpha.1"))
        assert info.num_pending == 1  # `later` only
    finally:
        await successor.release_lease()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await nc.close()


async def test_an_agent_starting_an_attempt_that_ended_is_told_to_stop(mesh: Mesh) -> None:
    agent = FakeAgent(mesh, "alpha.2")
    await agent.beat()
    controls: asyncio.Queue[TaskControl] = asyncio.Queue()

    async def received(message: Msg) -> None:
        await controls.put(TaskControl.FromString(message.data))

    subscription = await mesh.admin.subscribe(control_subject("alpha.2"), cb=received)
    task_id = await mesh.dispatch()
    ((_, _, message),) = await agent.take()
    await agent.report(task_id, 1, started=TaskStarted())
    await agent.report(task_id, 1, succeeded=TaskSucceeded())
    await message.ack()
    await wait_for(lambda: mesh.coordinator.stats().in_flight == 0, timeout=10, message="done")
    assert controls.empty()

    # JetStream delivers the assignment again (its acknowledgement lost when NATS restarted)
    # and the instance starts it: it is told to stop.
    await agent.report(task_id, 1, started=TaskStarted())
    async with asyncio.timeout(10):
        control = await controls.get()
    await subscription.unsubscribe()
    assert (control.task_id, control.attempt, control.WhichOneof("command")) == (
        task_id,
        1,
        "cancel",
    )


async def test_failures_are_retried_then_dead_lettered(mesh: Mesh) -> None:
    agent = FakeAgent(mesh, "alpha.1")
    await agent.beat()
    task_id = await mesh.dispatch(max_attempts=2)
    error = status_pb2.Status(code=code_pb2.INTERNAL, message="boom")
    for attempt in (1, 2):
        ((taken, number, message),) = await agent.take()
        assert (taken, number) == (task_id, attempt)
        await agent.report(task_id, attempt, failed=TaskFailed(error=error, retryable=True))
        await message.ack()
    (requeued,) = await mesh.reported(task_id, "requeued")
    assert requeued.attempt == 1
    assert requeued.requeued.next_attempt == 2
    (dead,) = await mesh.reported(task_id, "dead_lettered")
    assert dead.attempt == 2
    assert dead.dead_lettered.error.message == "boom"
    stored = await mesh.admin.jetstream().get_msg(DEAD_STREAM, dead.dead_lettered.stream_sequence)
    dispatch = TaskDispatch.FromString(stored.data)
    assert (dispatch.task_id, dispatch.attempt) == (task_id, 2)
    assert mesh.coordinator.stats().failed_total == 2
    assert await mesh.coordinator.dead_letters() == 1


async def test_a_failure_that_cannot_be_retried_ends_the_task(mesh: Mesh) -> None:
    agent = FakeAgent(mesh, "alpha.1")
    await agent.beat()
    task_id = await mesh.dispatch()
    ((_, _, message),) = await agent.take()
    await agent.report(task_id, 1, failed=TaskFailed(retryable=False))
    await message.ack()
    await wait_for(lambda: mesh.coordinator.stats().in_flight == 0, timeout=10, message="freed")
    assert mesh.events(task_id, "requeued") == mesh.events(task_id, "dead_lettered") == []


async def test_cancelling_a_held_task_drops_it(mesh: Mesh) -> None:
    task_id = await mesh.dispatch(task_type="image.render")
    await mesh.reported(task_id, "waiting")
    await mesh.cancel(task_id)
    await wait_for(lambda: len(mesh.coordinator.stats().queued_by_type) == 0, timeout=10)
    renderer = FakeAgent(mesh, "alpha.1", capabilities=("image.render",))
    await renderer.beat()
    info = await mesh.admin.jetstream().stream_info(TASKS_STREAM)
    assert info.state.messages == 0
    assert mesh.events(task_id, "assigned") == []


async def test_cancelling_a_running_task_sends_the_agent_a_control(mesh: Mesh) -> None:
    agent = FakeAgent(mesh, "alpha.2")
    await agent.beat()
    controls: asyncio.Queue[TaskControl] = asyncio.Queue()

    async def received(message: Msg) -> None:
        await controls.put(TaskControl.FromString(message.data))

    subscription = await mesh.admin.subscribe(control_subject("alpha.2"), cb=received)
    task_id = await mesh.dispatch()
    ((_, _, message),) = await agent.take()
    await mesh.cancel(task_id)
    async with asyncio.timeout(10):
        control = await controls.get()
    assert (control.task_id, control.attempt, control.WhichOneof("command")) == (
        task_id,
        1,
        "cancel",
    )
    await subscription.unsubscribe()
    await agent.report(task_id, 1, cancelled=TaskCancelled())
    await message.ack()
    await wait_for(lambda: mesh.coordinator.stats().in_flight == 0, timeout=10, message="freed")


async def test_a_task_with_resources_is_assigned_once_they_are_granted(
    mesh: Mesh, task_nats: MeshSettings
) -> None:
    granted = asyncio.Event()
    released: list[str] = []
    allocation_id = str(uuid.uuid4())
    responder = await connect_nats(task_nats.as_principal("resources"), name="test-resources")

    async def allocate(message: Msg) -> None:
        request = AllocateRequest.FromString(message.data)
        if not granted.is_set():
            reply = AllocateReply(
                status=status_pb2.Status(
                    code=code_pb2.RESOURCE_EXHAUSTED, message="gpu: 1 held by another task"
                )
            )
        else:
            lease = Allocation(
                allocation_id=allocation_id,
                holder=request.holder,
                task_id=request.task_id,
                amount=request.amount,
            )
            reply = AllocateReply(response=AllocateResponse(allocation=lease))
        await message.respond(reply.SerializeToString())

    async def release(message: Msg) -> None:
        released.append(ReleaseRequest.FromString(message.data).allocation_id)
        await message.respond(ReleaseReply().SerializeToString())

    await responder.subscribe("sutazai.resources.allocate", "resources", cb=allocate)
    await responder.subscribe("sutazai.resources.release", "resources", cb=release)
    await responder.flush()
    try:
        agent = FakeAgent(mesh, "alpha.1")
        await agent.beat()
        task_id = await mesh.dispatch(resources=[ResourceNeed(resource_type=5, amount=1)])
        (waiting,) = await mesh.reported(task_id, "waiting")
        assert waiting.waiting.reason == "waiting for resources: gpu: 1 held by another task"
        granted.set()
        await agent.beat(running=0)  # any change wakes the scheduler
        (assigned,) = await mesh.reported(task_id, "assigned")
        assert assigned.agent_id == "alpha.1"
        ((_, _, message),) = await agent.take()
        await agent.report(task_id, 1, succeeded=TaskSucceeded())
        await message.ack()
        await wait_for(lambda: released == [allocation_id], timeout=10, message="released")
    finally:
        await responder.close()


async def test_a_restarted_coordinator_resumes_from_its_bucket(
    mesh: Mesh, task_nats: MeshSettings
) -> None:
    agent = FakeAgent(mesh, "alpha.1")
    await agent.beat()
    task_id = await mesh.dispatch()
    await mesh.reported(task_id, "assigned")
    ((_, _, message),) = await agent.take()
    # A second coordinator waits as a standby, then takes over when the first one stops.
    nc = await connect_nats(task_nats.as_principal("coordinator"), name="test-standby")
    standby_directory = AgentDirectory()
    standby = Coordinator(
        nc, SETTINGS, CoordinatorMetrics(CollectorRegistry()), standby_directory, instance_id="s"
    )
    running = asyncio.create_task(standby.run())
    try:
        await wait_for(lambda: standby_directory.ready.is_set(), timeout=15, message="standby up")
        assert not standby.leading
        await mesh.stop()
        await wait_for(lambda: standby.leading, timeout=15, message="the standby leads")
        await wait_for(lambda: standby.stats().in_flight == 1, timeout=15, message="restored")
        await agent.report(task_id, 1, succeeded=TaskSucceeded())
        await message.ack()
        await wait_for(lambda: standby.stats().in_flight == 0, timeout=15, message="finished")
        assert standby.stats().succeeded_total == 1
    finally:
        await standby.release_lease()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await nc.close()
