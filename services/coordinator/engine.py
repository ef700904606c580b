"""The coordinator's work over NATS JetStream (nats/README.md, "The life of a task").

* **Intake**: the durable pull consumer ``coordinator`` of ``SUTAZAI_TASKS``. Each dispatch is
  held (in-progress acknowledgements keep it from being redelivered) until it is assigned, then
  acknowledged; a crash of the coordinator leaves it unacknowledged, so JetStream redelivers it.
* **Scheduler**: highest priority first, FIFO within a priority (:mod:`.domain`); an eligible
  agent by the strategy in force; its resources from the resource service (NATS request);
  ``assignment.<task_id>`` written to the ``sutazai_coordinator`` bucket; ``assigned``
  reported (before the work, so that no report of the agent precedes it in the stream); the
  TaskAssignment published to the instance's work subject (message id
  ``<task_id>.<attempt>``); only then the dispatch acknowledged. Once the assignment is
  published it stands; an ``assigned`` report NATS refused is published again on the next
  round. A task that cannot
  be placed gets a ``waiting`` report, once per reason.
* **Finished attempts**: an attempt that ended leaves its record in the bucket, reduced to the
  task id, attempt and agent, for ``FINISHED_TTL_SECONDS`` (a per-message TTL; the write rolls
  up the key's history). A dispatch of that attempt that JetStream delivers again (its
  acknowledgement lost when NATS restarted) is dropped instead of being run a second time,
  also by a coordinator started since.
* **Reports**: the durable consumer ``coordinator`` of ``SUTAZAI_REPORTS`` (agents' reports and
  the task service's cancellations). A final report frees the slot and the resources; a
  retryable failure queues the next attempt after a back-off, or, after ``max_attempts``, puts
  the last dispatch on ``SUTAZAI_DEAD``; a cancellation drops a held task or sends
  ``TaskControl{cancel}`` to the instance running it.
* **Agents**: a watch of ``sutazai_agents`` (:class:`.agents.AgentDirectory`). An instance whose
  key is deleted or expires loses its unfinished attempts: its work subject is purged (a stale
  assignment is never run later) and each attempt ends like a failure (next attempt, or dead
  letter). An instance whose heartbeat shows a new process (a later ``started_at``: the
  supervisor restarted a killed agent under the same instance id, before its key expired)
  loses the attempts its predecessor had started: each is cancelled on the instance (the
  successor would otherwise run it again once JetStream redelivers it) and ends the same way.
  The next attempt of a task goes to another agent than the one its last attempt failed on,
  whenever another eligible one is free.
* **Leader lease**: of several instances, only the one holding the ``leader`` key of the
  bucket (created with a TTL, renewed every third of it) consumes and assigns; the others
  serve reads (AgentService, strategy, streams) and take over when the lease lapses.

Restarting rebuilds the state: assignments from ``assignment.*``, agents from their bucket,
held tasks from JetStream's redelivery.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats.errors
import structlog
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2, status_pb2
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from sutazai.agents.v1.agent_service_pb2 import AgentHeartbeat
from sutazai.coordinator.v1 import coordinator_service_pb2 as pb
from sutazai.resources.v1.resource_service_pb2 import (
    AllocateReply,
    AllocateRequest,
    ReleaseRequest,
)
from sutazai.runtime.jetstream import (
    AGENT_REPORTS,
    AGENTS_BUCKET,
    COORDINATOR_BUCKET,
    COORDINATOR_REPORTS,
    DEAD_STREAM,
    DEAD_SUBJECT,
    MSG_ID,
    REPORTS_STREAM,
    RESOURCES_ALLOCATE,
    RESOURCES_RELEASE,
    TASKS_REPORTS,
    TASKS_STREAM,
    WORK_STREAM,
    control_subject,
    message_id,
    queue_subject,
    split_agent_id,
    work_subject,
)
from sutazai.runtime.kv_watch import DELETE_OPERATIONS, watch_entries
from sutazai.runtime.messaging import end_if_cancelled
from sutazai.runtime.settings import CoordinatorSettings
from sutazai.services.coordinator.agents import AgentDirectory
from sutazai.services.coordinator.domain import (
    Chooser,
    Held,
    HoldingQueue,
    Need,
    RecentCounter,
    Strategy,
    backoff_seconds,
    eligible,
    next_step,
    prefer_others,
    waiting_reason,
)
from sutazai.services.coordinator.errors import LeaseLostError
from sutazai.services.coordinator.metrics import CoordinatorMetrics
from sutazai.tasks.v1.dispatch_pb2 import (
    TaskAssigned,
    TaskAssignment,
    TaskCancelRequested,
    TaskControl,
    TaskDeadLettered,
    TaskDispatch,
    TaskReport,
    TaskRequeued,
    TaskWaiting,
)

log = structlog.get_logger(__name__)

CONSUMER = "coordinator"
"""The coordinator's durable consumer on SUTAZAI_TASKS and on SUTAZAI_REPORTS."""
STRATEGY_KEY = "strategy"
LEADER_KEY = "leader"
ROLLUP = "Nats-Rollup"
ROLLUP_SUBJECT = "sub"
"""A message with this header replaces every earlier one of its subject (its key's history)."""
ASSIGNMENT_PREFIX = "assignment."
FETCH_BATCH = 256
ASSIGN_BATCH = 128
"""Tasks handed over concurrently by one scheduling pass (the rest wait for the next)."""
FETCH_WAIT_SECONDS = 1.0
MAX_REMEMBERED_CANCELS = 10_000
"""Cancelled task ids remembered (a dispatch of one arriving later is dropped)."""
MAX_REMEMBERED_RETRIES = 10_000
"""Re-queued task ids whose failed agent is remembered (their next attempt goes elsewhere)."""
MAX_REMEMBERED_FINISHED = 100_000
"""Finished attempts remembered in memory (the bucket keeps them for FINISHED_TTL_SECONDS)."""
FINISHED_TTL_SECONDS = 600.0
"""How long an ended attempt's record stays in the bucket: far longer than a dispatch's
``ack_wait`` and the task streams' 2-minute dedupe window."""
MAX_BACKLOG = 10_000
"""Reports kept for publishing again while NATS refuses them (the oldest are given up)."""
PUBLISH_RETRY_SECONDS = 10.0
"""How long an assignment is published again (same message id) while NATS does not confirm."""
REPORT_ACK_WAIT_SECONDS = 30.0
LEASE_GRACE_SECONDS = 1.0
RESOURCE_LEASE_GRACE_SECONDS = 60
"""A task's resource lease outlives its timeout by this much (then it expires by itself)."""
MAX_LEASE_SECONDS = 86_400

STRATEGIES = {
    Strategy.ROUND_ROBIN: pb.STRATEGY_ROUND_ROBIN,
    Strategy.LEAST_LOADED: pb.STRATEGY_LEAST_LOADED,
    Strategy.CAPABILITY_MATCH: pb.STRATEGY_CAPABILITY_MATCH,
    Strategy.WEIGHTED_SCORE: pb.STRATEGY_WEIGHTED_SCORE,
}
FROM_PROTO = {value: key for key, value in STRATEGIES.items()}


@dataclass(slots=True)
class Pending:
    """A held dispatch and the message to acknowledge once it is assigned."""

    dispatch: TaskDispatch
    message: Msg | None
    arrived: float


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def _seconds(stamp: Timestamp) -> float:
    return stamp.ToNanoseconds() / 1e9


def _status(code: int, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=code, message=message)


def _valid_task_id(task_id: str) -> bool:
    try:
        return str(uuid.UUID(task_id)) == task_id
    except ValueError:
        return False


class Coordinator:
    """One coordinator instance: the agent directory always, the assignment work as leader."""

    def __init__(
        self,
        nc: NatsClient,
        settings: CoordinatorSettings,
        metrics: CoordinatorMetrics,
        directory: AgentDirectory,
        *,
        instance_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=5.0)
        self._settings = settings
        self._metrics = metrics
        self._directory = directory
        self._instance_id = instance_id
        self._clock = clock
        self._state: KeyValue | None = None
        self._held: HoldingQueue[Pending] = HoldingQueue()
        self._assignments: dict[str, pb.AssignmentRecord] = {}
        self._assigned: collections.Counter[str] = collections.Counter()
        self._cancelled: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._chooser = Chooser(Strategy(settings.strategy))
        self._strategy = pb.GetStrategyResponse(strategy=STRATEGIES[self._chooser.strategy])
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._succeeded = RecentCounter()
        self._failed = RecentCounter()
        self._leading = False
        self._lost_pending: set[str] = set()
        self._restarted: dict[str, float] = {}
        """Agent instances seen in a new process: the process's start (seconds since epoch)."""
        self._read_up_to: dict[str, int] = {}
        """Agent id → the report stream's sequence to have read before its attempts are lost."""
        self._process_started: dict[str, float] = {}
        """Each agent instance's current process: when it started, by its heartbeat."""
        self._failed_on: collections.OrderedDict[str, str] = collections.OrderedDict()
        """Task id → the agent its last attempt ended on without a result."""
        self._finished: collections.OrderedDict[str, int] = collections.OrderedDict()
        """Task id → its latest attempt that ended (a dispatch of it again is dropped)."""
        self._backlog: collections.deque[tuple[bytes, dict[str, str] | None]] = collections.deque()
        self._stopped: collections.OrderedDict[tuple[str, str, int], None] = (
            collections.OrderedDict()
        )
        """(agent, task, attempt) told to stop a run it does not hold: told once."""
        """Coordinator reports NATS refused, to publish again (each has its message id)."""
        directory.listen(self._agent_changed)

    # --- queries (any instance) -------------------------------------------------------------

    @property
    def strategy(self) -> pb.GetStrategyResponse:
        """The strategy in force and who set it."""
        return self._strategy

    @property
    def leading(self) -> bool:
        """Whether this instance holds the leader lease (and assigns)."""
        return self._leading

    async def set_strategy(
        self, strategy: pb.Strategy.ValueType, changed_by: str
    ) -> pb.GetStrategyResponse:
        """Store a new strategy for every instance (the leader follows the bucket)."""
        record = pb.GetStrategyResponse(
            strategy=strategy, changed_at=_timestamp(self._clock()), changed_by=changed_by
        )
        await self._bucket().put(STRATEGY_KEY, record.SerializeToString())
        self._apply_strategy(record)
        return record

    def stats(self) -> pb.GetStatsResponse:
        """What is held, in flight, done and failed (dead letters filled in by the caller)."""
        now = self._clock()
        return pb.GetStatsResponse(
            queued_by_priority=self._held.depth_by_priority(),
            queued_by_type=self._held.depth_by_type(),
            in_flight=len(self._assignments),
            succeeded_last_minute=self._succeeded.recent(now),
            failed_last_minute=self._failed.recent(now),
            succeeded_total=self._succeeded.total,
            failed_total=self._failed.total,
            strategy=self._strategy.strategy,
            waiting_for_resources=sum(
                1 for h in self._held if h.reason.startswith("waiting for resources")
            ),
        )

    async def dead_letters(self) -> int:
        """Messages on the dead-letter stream."""
        info = await self._js.stream_info(DEAD_STREAM)
        return info.state.messages

    async def streams(self) -> pb.ListStreamsResponse:
        """The task streams with their consumers' pending, unacknowledged, redelivered counts."""
        reply = pb.ListStreamsResponse()
        for name in (TASKS_STREAM, WORK_STREAM, REPORTS_STREAM, DEAD_STREAM):
            info = await self._js.stream_info(name)
            stream = reply.streams.add(
                name=name, messages=info.state.messages, bytes=info.state.bytes
            )
            consumers = await self._js.consumers_info(name)
            for consumer in sorted(consumers, key=lambda c: c.name):
                stream.consumers.add(
                    name=consumer.name,
                    pending=consumer.num_pending or 0,
                    ack_pending=consumer.num_ack_pending or 0,
                    redelivered=consumer.num_redelivered or 0,
                )
        return reply

    # --- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch agents and the strategy; assign while holding the leader lease. Runs forever."""
        self._state = await self._js.key_value(COORDINATOR_BUCKET)
        await self._load_strategy()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_agents())
            group.create_task(self._watch_strategy())
            group.create_task(self._lead_forever())

    async def release_lease(self) -> None:
        """Give the lease up at shutdown, so a standby takes over at once."""
        if self._leading and self._state is not None:
            with contextlib.suppress(nats.errors.Error, KeyNotFoundError):
                await self._state.delete(LEADER_KEY)

    def _bucket(self) -> KeyValue:
        if self._state is None:
            raise RuntimeError("the coordinator is not running")
        return self._state

    async def _lead_forever(self) -> None:
        lease = self._settings.leader_lease_seconds
        while True:
            revision = await self._acquire()
            if revision is None:
                await asyncio.sleep(lease / 3)
                continue
            log.info("coordinator.leading", instance=self._instance_id)
            self._leading = True
            self._metrics.leader.set(1)
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._keep_lease(revision))
                    group.create_task(self._lead())
            except* LeaseLostError as lost:
                log.warning("coordinator.lease_lost", reason=str(lost.exceptions[0]))
            except* (nats.errors.Error, OSError) as failed:
                # NATS went away under the leader (a restart): start over from what NATS holds.
                log.warning("coordinator.leading_failed", error=str(failed.exceptions[0]))
                await asyncio.sleep(1.0)
            finally:
                self._leading = False
                self._metrics.leader.set(0)
                self._forget()

    async def _acquire(self) -> int | None:
        try:
            return await self._bucket().create(
                LEADER_KEY,
                self._instance_id.encode(),
                msg_ttl=self._settings.leader_lease_seconds,
            )
        except KeyWrongLastSequenceError:
            return await self._own_lease()
        except nats.errors.Error as exc:
            log.warning("coordinator.lease_unreachable", error=str(exc))
            return None

    async def _own_lease(self) -> int | None:
        """The lease's revision if this instance still holds it (it restarted leading)."""
        try:
            entry = await self._bucket().get(LEADER_KEY)
        except (KeyNotFoundError, nats.errors.Error):
            return None
        if entry.value == self._instance_id.encode() and entry.revision is not None:
            return entry.revision
        return None

    async def _keep_lease(self, revision: int) -> None:
        lease = self._settings.leader_lease_seconds
        subject = f"$KV.{COORDINATOR_BUCKET}.{LEADER_KEY}"
        while True:
            await asyncio.sleep(lease / 3)
            try:
                ack = await self._js.publish(
                    subject,
                    self._instance_id.encode(),
                    headers={"Nats-Expected-Last-Subject-Sequence": str(revision)},
                    msg_ttl=lease,
                )
            except nats.errors.Error as exc:
                raise LeaseLostError(str(exc)) from exc
            revision = ack.seq

    def _forget(self) -> None:
        """Drop the leader's state (a new leader rebuilds it from NATS)."""
        self._held = HoldingQueue()
        self._assignments.clear()
        self._assigned.clear()
        self._restarted.clear()
        self._read_up_to.clear()
        self._metrics.held.set(0)
        self._metrics.in_flight.set(0)

    async def _lead(self) -> None:
        await self._ensure_consumers()
        await self._load_assignments()
        await self._directory.ready.wait()
        async with self._lock:
            # Attempts of instances that went away while no coordinator was watching (decided
            # by the scheduler, once the reports they may have sent before are read).
            for agent_id in {r.agent_id for r in self._assignments.values()}:
                if not self._directory.is_online(agent_id):
                    self._lost_pending.add(agent_id)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._intake())
            group.create_task(self._hold_alive())
            group.create_task(self._schedule_forever())
            group.create_task(self._follow_reports())

    async def _ensure_consumers(self) -> None:
        settings = self._settings
        await self._js.add_consumer(
            TASKS_STREAM,
            ConsumerConfig(
                name=CONSUMER,
                durable_name=CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=settings.hold_ack_wait_seconds,
                max_ack_pending=settings.max_held,
                max_deliver=-1,
            ),
        )
        await self._js.add_consumer(
            REPORTS_STREAM,
            ConsumerConfig(
                name=CONSUMER,
                durable_name=CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=REPORT_ACK_WAIT_SECONDS,
                # The first start reads from now: past reports belong to finished work.
                deliver_policy=DeliverPolicy.NEW,
                filter_subjects=[AGENT_REPORTS, TASKS_REPORTS],
                max_ack_pending=FETCH_BATCH * 4,
            ),
        )

    async def _load_assignments(self) -> None:
        # A watch, not kv.keys(filters=...): nats-py 2.16 answers NoKeysError to a filtered
        # listing of a bucket that has matching keys.
        entries = await _snapshot(self._bucket(), ASSIGNMENT_PREFIX + ">")
        async with self._lock:
            for value in entries.values():
                try:
                    record = pb.AssignmentRecord.FromString(value)
                except DecodeError:
                    continue
                if record.HasField("finished_at"):
                    self._remember_finished(record.dispatch.task_id, record.dispatch.attempt)
                    continue
                self._assignments[record.dispatch.task_id] = record
                self._assigned[record.agent_id] += 1
            self._metrics.in_flight.set(len(self._assignments))
        log.info("coordinator.restored", assignments=len(self._assignments))

    # --- intake -----------------------------------------------------------------------------

    async def _intake(self) -> None:
        subscription = await self._js.pull_subscribe_bind(CONSUMER, stream=TASKS_STREAM)
        while True:
            room = self._settings.max_held - len(self._held)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                messages = await subscription.fetch(
                    min(room, FETCH_BATCH), timeout=FETCH_WAIT_SECONDS
                )
            except TimeoutError:  # nats-py raises both its own and asyncio's
                end_if_cancelled()  # a cancellation fetch may have turned into this
                continue
            async with self._lock:
                for message in messages:
                    await self._accept(message)
                self._metrics.held.set(len(self._held))
            self._wake.set()

    async def _accept(self, message: Msg) -> None:
        try:
            dispatch = TaskDispatch.FromString(message.data)
        except DecodeError:
            dispatch = TaskDispatch()
        if not _valid_task_id(dispatch.task_id) or dispatch.attempt < 1:
            self._metrics.dropped.labels("malformed").inc()
            log.warning("coordinator.malformed_dispatch", subject=message.subject)
            await message.term()
            return
        task_id = dispatch.task_id
        if task_id in self._cancelled:
            self._metrics.dropped.labels("cancelled").inc()
            await message.ack()
            return
        if dispatch.attempt <= self._finished.get(task_id, 0):
            # Delivered again after it ran (its acknowledgement was lost): never twice.
            self._metrics.dropped.labels("finished_dispatch").inc()
            await message.ack()
            return
        running = self._assignments.get(task_id)
        if running is not None and running.dispatch.attempt >= dispatch.attempt:
            if running.dispatch.attempt == dispatch.attempt and not running.HasField("started_at"):
                # A coordinator stopped between writing the record and publishing the work
                # leaves a record of an assignment nobody received: report and publish it
                # (again; their message ids make a repeat harmless).
                try:
                    await self._report(
                        task_id,
                        dispatch.attempt,
                        running.agent_id,
                        backlog=True,
                        assigned=TaskAssigned(),
                    )
                    await self._publish_assignment(running)
                except nats.errors.Error:
                    return  # not acknowledged: delivered again, tried again
            self._metrics.dropped.labels("duplicate_dispatch").inc()
            await message.ack()
            return
        held = self._held.get(task_id)
        if held is not None and held.item is not None:
            previous = held.item.message
            if previous is not None and _same_message(previous, message):
                held.item.message = message  # a redelivery of what is held: keep its place
                return
            if held.attempt >= dispatch.attempt:
                self._metrics.dropped.labels("duplicate_dispatch").inc()
                await message.ack()
                return
            if previous is not None:
                await previous.ack()
        self._hold(dispatch, message)

    def _hold(self, dispatch: TaskDispatch, message: Msg | None) -> None:
        self._held.add(
            Held(
                task_id=dispatch.task_id,
                attempt=dispatch.attempt,
                priority=min(dispatch.priority, 3),
                created_at=_seconds(dispatch.created_at),
                need=Need(dispatch.type, frozenset(dispatch.required_capabilities)),
                not_before=_seconds(dispatch.not_before) if dispatch.HasField("not_before") else 0,
                item=Pending(dispatch, message, self._clock()),
                avoid=self._failed_on.get(dispatch.task_id, ""),
            )
        )

    async def _hold_alive(self) -> None:
        """In-progress acknowledgements of every held dispatch, every third of ack_wait."""
        while True:
            await asyncio.sleep(self._settings.hold_ack_wait_seconds / 3)
            for held in self._held:
                message = held.item.message if held.item else None
                if message is not None:
                    with contextlib.suppress(nats.errors.Error):
                        await message.in_progress()

    # --- scheduling -------------------------------------------------------------------------

    async def _schedule_forever(self) -> None:
        while True:
            now = self._clock()
            wakeup = self._held.next_wakeup(now)
            timeout = max(0.0, wakeup - now) if wakeup is not None else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            async with self._lock:
                await self._schedule()

    def _agent_changed(self, agent_id: str, online: bool) -> None:
        if online:
            self._wake.set()
        elif agent_id in self._assigned and self._leading:
            self._lost_pending.add(agent_id)
            self._wake.set()

    async def _reports_read(self, agent_ids: set[str]) -> set[str]:
        """Those of ``agent_ids`` whose reports sent before they went away are all applied.

        An agent that stops publishes its last reports, then deletes its key (or its successor
        heartbeats): until those reports are applied its attempts are not lost, they may have
        ended. Each agent waits for the stream's last sequence when its loss was first looked
        at; applying reports wakes the scheduler again.
        """
        try:
            if any(a not in self._read_up_to for a in agent_ids):
                last = (await self._js.stream_info(REPORTS_STREAM)).state.last_seq
                for agent_id in agent_ids:
                    self._read_up_to.setdefault(agent_id, last)
            info = await self._js.consumer_info(REPORTS_STREAM, CONSUMER)
        except nats.errors.Error:
            return set()
        if not info.num_pending and not info.num_ack_pending:
            return set(agent_ids)  # caught up (the last reports may be of other subjects)
        applied = info.ack_floor.stream_seq if info.ack_floor else 0
        return {a for a in agent_ids if self._read_up_to[a] <= (applied or 0)}

    def _agent_restarted(self, agent_id: str, started_at: float) -> None:
        """``agent_id`` heartbeats from a process started at ``started_at``, not the last one."""
        if agent_id in self._assigned and self._leading:
            self._restarted[agent_id] = max(started_at, self._restarted.get(agent_id, 0.0))
            self._wake.set()

    async def _schedule(self) -> None:
        await self._flush_backlog()
        if self._lost_pending or self._restarted:
            read = await self._reports_read({*self._lost_pending, *self._restarted})
            for agent_id in sorted(self._lost_pending & read):
                self._lost_pending.discard(agent_id)
                self._read_up_to.pop(agent_id, None)
                if not self._directory.is_online(agent_id):
                    await self._lost(agent_id)
            for agent_id in sorted(read & set(self._restarted)):
                started_at = self._restarted.pop(agent_id)
                self._read_up_to.pop(agent_id, None)
                await self._lost_in_restart(agent_id, started_at)
        now = self._clock()
        agents = list(self._directory.views())
        # Decide in order (priority, then FIFO), counting each choice at once, then hand the
        # chosen tasks over concurrently: each hand-over is three JetStream writes awaited one
        # after the other, and a pass that awaited every task's in turn made the coordinator's
        # round trips, not its agents, the limit of throughput.
        chosen_ones: list[tuple[Held[Pending], Pending, str, list[str]]] = []
        for held in self._held.ready(now):
            if len(chosen_ones) >= ASSIGN_BATCH:
                self._wake.set()  # the rest in the next pass
                break
            pending = held.item
            if pending is None:
                continue
            candidates = eligible(agents, held.need, dict(self._assigned))
            if not candidates:
                await self._waiting(held, waiting_reason(agents, held.need))
                continue
            chosen = self._chooser.choose(
                prefer_others(candidates, held.avoid), held.need, dict(self._assigned)
            )
            if chosen is None:
                continue
            allocations = await self._allocate(pending.dispatch, chosen.agent_id)
            if isinstance(allocations, str):
                await self._waiting(held, f"waiting for resources: {allocations}")
                continue
            self._assigned[chosen.agent_id] += 1
            chosen_ones.append((held, pending, chosen.agent_id, allocations))
        outcomes = await asyncio.gather(
            *(self._assign(*choice) for choice in chosen_ones), return_exceptions=True
        )
        for (held, _, agent_id, allocations), outcome in zip(chosen_ones, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if held.task_id not in self._assignments:
                    self._unassign(agent_id)  # not handed over: its slot is free again
                if not isinstance(outcome, nats.errors.Error):
                    raise outcome
                log.warning("coordinator.assign_failed", task_id=held.task_id, error=str(outcome))
                await self._release(allocations)
        self._metrics.held.set(len(self._held))
        self._room.set()

    def _unassign(self, agent_id: str) -> None:
        self._assigned[agent_id] -= 1
        if self._assigned[agent_id] <= 0:
            del self._assigned[agent_id]

    async def _waiting(self, held: Held[Pending], reason: str) -> None:
        if held.reason == reason:
            return
        held.reason = reason
        with contextlib.suppress(nats.errors.Error):
            await self._report(held.task_id, held.attempt, "", waiting=TaskWaiting(reason=reason))

    async def _assign(
        self, held: Held[Pending], pending: Pending, agent_id: str, allocations: list[str]
    ) -> None:
        dispatch = pending.dispatch
        now = self._clock()
        record = pb.AssignmentRecord(
            dispatch=dispatch,
            agent_id=agent_id,
            allocation_ids=allocations,
            assigned_at=_timestamp(now),
        )
        await self._bucket().put(ASSIGNMENT_PREFIX + dispatch.task_id, record.SerializeToString())
        # Reported before the work goes out: no report of the agent can precede it in the
        # stream (the task service makes such a report wait for it).
        await self._report(
            dispatch.task_id, dispatch.attempt, agent_id, backlog=True, assigned=TaskAssigned()
        )
        # Published again while unconfirmed: the message id makes a repeat harmless, and a
        # publish that did arrive must not be followed by an assignment elsewhere.
        await self._publish_assignment(record, retry=True)
        # From here on the assignment stands, whatever NATS does next.
        self._assignments[dispatch.task_id] = record  # counted in _assigned by the caller
        self._held.remove(held.task_id)
        self._failed_on.pop(dispatch.task_id, None)
        self._metrics.assigned.labels(self._chooser.strategy.value).inc()
        self._metrics.queue_seconds.observe(max(0.0, now - pending.arrived))
        self._metrics.in_flight.set(len(self._assignments))
        if pending.message is not None:
            # Lost, it is delivered again and dropped: the attempt is assigned (or finished).
            with contextlib.suppress(nats.errors.Error):
                await pending.message.ack()

    async def _publish_assignment(
        self, record: pb.AssignmentRecord, *, retry: bool = False
    ) -> None:
        """Publish the TaskAssignment of ``record`` to its agent instance's work subject."""
        dispatch = record.dispatch
        timeout = dispatch.timeout_seconds or 300
        assignment = TaskAssignment(
            task_id=dispatch.task_id,
            attempt=dispatch.attempt,
            type=dispatch.type,
            payload=dispatch.payload,
            deadline=_timestamp(_seconds(record.assigned_at) + timeout),
        )
        subject = work_subject(record.agent_id)
        headers = {MSG_ID: message_id(dispatch.task_id, dispatch.attempt)}
        if retry:
            await self._publish_retrying(subject, assignment.SerializeToString(), headers)
        else:
            await self._js.publish(subject, assignment.SerializeToString(), headers=headers)

    async def _publish_retrying(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """Publish until JetStream confirms, for at most ``PUBLISH_RETRY_SECONDS``.

        Raises:
            nats.errors.Error: still unconfirmed at the end.

        """
        deadline = time.monotonic() + PUBLISH_RETRY_SECONDS
        delay = 0.1
        while True:
            try:
                await self._js.publish(subject, data, headers=headers)
                return
            except nats.errors.Error:
                if time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _flush_backlog(self) -> None:
        """Publish again the reports NATS refused, oldest first; stop at the first refusal."""
        while self._backlog:
            data, headers = self._backlog[0]
            try:
                await self._js.publish(COORDINATOR_REPORTS, data, headers=headers)
            except nats.errors.Error:
                return
            self._backlog.popleft()

    async def _allocate(self, dispatch: TaskDispatch, agent_id: str) -> list[str] | str:
        """Leases for every resource the task needs, or why not (none kept on a refusal)."""
        granted: list[str] = []
        duration = min(
            MAX_LEASE_SECONDS, (dispatch.timeout_seconds or 300) + RESOURCE_LEASE_GRACE_SECONDS
        )
        for need in dispatch.resources:
            request = AllocateRequest(
                holder=agent_id,
                resource_type=need.resource_type,
                amount=need.amount,
                priority=dispatch.priority,
                duration_seconds=duration,
                task_id=dispatch.task_id,
            )
            try:
                message = await self._nc.request(
                    RESOURCES_ALLOCATE,
                    request.SerializeToString(),
                    timeout=self._settings.resources_timeout_seconds,
                )
                reply = AllocateReply.FromString(message.data)
            except (nats.errors.Error, DecodeError):
                await self._release(granted)
                return "the resource service does not answer"
            if reply.status.code != code_pb2.OK:
                await self._release(granted)
                return reply.status.message or "refused"
            granted.append(reply.response.allocation.allocation_id)
        return granted

    async def _release(self, allocation_ids: list[str]) -> None:
        for allocation_id in allocation_ids:
            with contextlib.suppress(nats.errors.Error):
                # The lease expires by itself should this be lost.
                await self._nc.request(
                    RESOURCES_RELEASE,
                    ReleaseRequest(allocation_id=allocation_id).SerializeToString(),
                    timeout=self._settings.resources_timeout_seconds,
                )

    # --- reports ----------------------------------------------------------------------------

    async def _follow_reports(self) -> None:
        subscription = await self._js.pull_subscribe_bind(CONSUMER, stream=REPORTS_STREAM)
        while True:
            try:
                messages = await subscription.fetch(FETCH_BATCH, timeout=FETCH_WAIT_SECONDS)
            except TimeoutError:  # nats-py raises both its own and asyncio's
                end_if_cancelled()  # a cancellation fetch may have turned into this
                continue
            # Each task's reports in order, different tasks concurrently: finishing one is a
            # JetStream write awaited (its assignment key deleted), and a batch of them awaited
            # one by one held every other report (and the scheduler, behind the lock) up.
            by_task: dict[str, list[tuple[Msg, TaskReport | None]]] = collections.defaultdict(list)
            for message in messages:
                try:
                    report: TaskReport | None = TaskReport.FromString(message.data)
                except DecodeError:
                    report = None
                by_task[report.task_id if report is not None else ""].append((message, report))
            async with self._lock, asyncio.TaskGroup() as group:
                for reports in by_task.values():
                    group.create_task(self._apply_in_order(reports))
            self._wake.set()

    async def _apply_in_order(self, group: list[tuple[Msg, TaskReport | None]]) -> None:
        for message, report in group:
            await self._apply(message, report)

    async def _apply(self, message: Msg, report: TaskReport | None) -> None:
        if report is None:
            self._metrics.dropped.labels("malformed").inc()
            await message.ack()
            return
        event = report.WhichOneof("event")
        if message.subject == TASKS_REPORTS:
            if event == "cancel_requested":
                await self._cancel(report.task_id, report.cancel_requested)
            await message.ack()
            return
        # The subject names the sender: NATS lets an agent publish only under its own name.
        sender = message.subject.removeprefix("sutazai.reports.agent.")
        record = self._assignments.get(report.task_id)
        if record is None or record.agent_id != sender or record.dispatch.attempt != report.attempt:
            self._metrics.dropped.labels("stale_report").inc()
            key = (sender, report.task_id, report.attempt)
            if (
                event in ("started", "progress")
                and split_agent_id(sender) is not None
                and _valid_task_id(report.task_id)
                and key not in self._stopped
            ):
                self._stopped[key] = None
                while len(self._stopped) > MAX_REMEMBERED_CANCELS:
                    self._stopped.popitem(last=False)
                # Running an attempt that is not (or no longer) its own: one delivered again
                # after it ended (its acknowledgement lost when NATS restarted), or superseded.
                # Stopped now, it does not complete a second time.
                control = TaskControl(
                    task_id=report.task_id,
                    attempt=report.attempt,
                    cancel=TaskCancelRequested(reason="the attempt is not this agent's to run"),
                )
                with contextlib.suppress(nats.errors.Error):
                    await self._nc.publish(control_subject(sender), control.SerializeToString())
            await message.ack()
            return
        try:
            if event == "started":
                record.started_at.CopyFrom(report.sent_at)
                process = self._process_started.get(sender, 0.0)
                if _seconds(report.sent_at) < process:
                    # Started by a process that is gone, whose restart was already seen.
                    self._agent_restarted(sender, process)
            elif event == "succeeded":
                self._succeeded.add(self._clock())
                self._metrics.finished.labels("succeeded").inc()
                await self._finish(record)
            elif event == "failed":
                self._failed.add(self._clock())
                self._metrics.finished.labels("failed").inc()
                if report.failed.retryable and report.task_id not in self._cancelled:
                    await self._next_attempt(record, report.failed.error)
                await self._finish(record)
            elif event == "cancelled":
                self._metrics.finished.labels("cancelled").inc()
                await self._finish(record)
        except nats.errors.Error as exc:
            log.warning("coordinator.report_failed", task_id=report.task_id, error=str(exc))
            await message.nak(delay=1.0)
            return
        await message.ack()

    async def _finish(self, record: pb.AssignmentRecord) -> None:
        task_id = record.dispatch.task_id
        await self._release(list(record.allocation_ids))
        # The record, reduced to what identifies the attempt, replaces every earlier revision
        # of the key (roll-up) and expires by itself.
        ended = pb.AssignmentRecord(
            dispatch=TaskDispatch(task_id=task_id, attempt=record.dispatch.attempt),
            agent_id=record.agent_id,
            finished_at=_timestamp(self._clock()),
        )
        await self._js.publish(
            f"$KV.{COORDINATOR_BUCKET}.{ASSIGNMENT_PREFIX}{task_id}",
            ended.SerializeToString(),
            headers={ROLLUP: ROLLUP_SUBJECT},
            msg_ttl=FINISHED_TTL_SECONDS,
        )
        self._remember_finished(task_id, record.dispatch.attempt)
        if self._assignments.pop(task_id, None) is not None:
            self._unassign(record.agent_id)
        self._metrics.in_flight.set(len(self._assignments))

    def _remember_finished(self, task_id: str, attempt: int) -> None:
        self._finished[task_id] = max(attempt, self._finished.get(task_id, 0))
        self._finished.move_to_end(task_id)
        while len(self._finished) > MAX_REMEMBERED_FINISHED:
            self._finished.popitem(last=False)

    async def _next_attempt(self, record: pb.AssignmentRecord, error: status_pb2.Status) -> None:
        """Queue the next attempt after its back-off, or dead-letter the task."""
        dispatch = record.dispatch
        settings = self._settings
        max_attempts = dispatch.max_attempts or settings.default_max_attempts
        retry, attempt = next_step(dispatch.attempt, max_attempts)
        if retry:
            self._failed_on[dispatch.task_id] = record.agent_id
            self._failed_on.move_to_end(dispatch.task_id)
            while len(self._failed_on) > MAX_REMEMBERED_RETRIES:
                self._failed_on.popitem(last=False)
            wait = backoff_seconds(
                dispatch.attempt,
                base=settings.backoff_base_seconds,
                cap=settings.backoff_max_seconds,
            )
            following = TaskDispatch()
            following.CopyFrom(dispatch)
            following.attempt = attempt
            following.not_before.CopyFrom(_timestamp(self._clock() + wait))
            await self._js.publish(
                queue_subject(min(dispatch.priority, 3)),
                following.SerializeToString(),
                headers={MSG_ID: message_id(dispatch.task_id, attempt)},
            )
            self._metrics.requeued.inc()
            await self._report(
                dispatch.task_id,
                dispatch.attempt,
                record.agent_id,
                requeued=TaskRequeued(
                    error=error, next_attempt=attempt, not_before=following.not_before
                ),
            )
            return
        ack = await self._js.publish(
            DEAD_SUBJECT,
            dispatch.SerializeToString(),
            headers={MSG_ID: message_id(dispatch.task_id, dispatch.attempt)},
        )
        self._metrics.dead_lettered.inc()
        await self._report(
            dispatch.task_id,
            dispatch.attempt,
            record.agent_id,
            dead_lettered=TaskDeadLettered(error=error, stream_sequence=ack.seq),
        )

    async def _cancel(self, task_id: str, request: TaskCancelRequested) -> None:
        self._cancelled[task_id] = None
        while len(self._cancelled) > MAX_REMEMBERED_CANCELS:
            self._cancelled.popitem(last=False)
        held = self._held.remove(task_id)
        if held is not None:
            if held.item is not None and held.item.message is not None:
                await held.item.message.ack()
            self._metrics.held.set(len(self._held))
            return
        record = self._assignments.get(task_id)
        if record is not None:
            control = TaskControl(task_id=task_id, attempt=record.dispatch.attempt, cancel=request)
            await self._nc.publish(control_subject(record.agent_id), control.SerializeToString())

    async def _lost(self, agent_id: str) -> None:
        """``agent_id`` went away with unfinished attempts: purge its queue, go on without it."""
        records = [r for r in self._assignments.values() if r.agent_id == agent_id]
        if not records:
            return
        log.warning("coordinator.agent_lost", agent_id=agent_id, attempts=len(records))
        if split_agent_id(agent_id) is not None:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._js.purge_stream(WORK_STREAM, subject=work_subject(agent_id))
        for record in records:
            self._failed.add(self._clock())
            self._metrics.finished.labels("lost").inc()
            if record.dispatch.task_id not in self._cancelled:
                error = _status(code_pb2.UNAVAILABLE, f"agent {agent_id} went offline")
                await self._next_attempt(record, error)
            await self._finish(record)

    async def _lost_in_restart(self, agent_id: str, started_at: float) -> None:
        """``agent_id`` runs in a new process: the attempts its predecessor started are lost.

        Only attempts reported ``started`` before the new process began are the predecessor's
        (both times come from the agent's clock); anything else is still in the instance's
        work queue, and the new process runs it. A lost attempt may still be delivered to the
        new process once JetStream's ``ack_wait`` passes, so it is cancelled there first: the
        SDK remembers a cancellation of an attempt it has not pulled yet.
        """
        records = [
            r
            for r in self._assignments.values()
            if r.agent_id == agent_id
            and r.HasField("started_at")
            and _seconds(r.started_at) < started_at
        ]
        if not records:
            return
        log.warning("coordinator.agent_restarted", agent_id=agent_id, attempts=len(records))
        for record in records:
            dispatch = record.dispatch
            control = TaskControl(
                task_id=dispatch.task_id,
                attempt=dispatch.attempt,
                cancel=TaskCancelRequested(reason=f"agent {agent_id} restarted"),
            )
            await self._nc.publish(control_subject(agent_id), control.SerializeToString())
            self._failed.add(self._clock())
            self._metrics.finished.labels("lost").inc()
            if dispatch.task_id not in self._cancelled:
                error = _status(
                    code_pb2.UNAVAILABLE,
                    f"agent {agent_id} restarted while it ran attempt {dispatch.attempt}",
                )
                await self._next_attempt(record, error)
            await self._finish(record)

    async def _report(
        self, task_id: str, attempt: int, agent_id: str, *, backlog: bool = False, **event: object
    ) -> None:
        """Publish a coordinator report; with ``backlog``, one NATS refuses is kept for later.

        Raises:
            nats.errors.Error: NATS refused it (only without ``backlog``).

        """
        report = TaskReport(task_id=task_id, attempt=attempt, agent_id=agent_id, **event)  # type: ignore[arg-type]
        report.sent_at.CopyFrom(_timestamp(self._clock()))
        kind = report.WhichOneof("event")
        headers = None
        if kind != "waiting":
            headers = {MSG_ID: f"{message_id(task_id, attempt)}.{kind}"}
        data = report.SerializeToString()
        try:
            # Deferred reports go first: a task's reports are applied in stream order.
            await self._flush_backlog()
            if self._backlog:
                raise nats.errors.Error("earlier reports are still refused")
            await self._js.publish(COORDINATOR_REPORTS, data, headers=headers)
        except nats.errors.Error:
            if not backlog:
                raise
            log.warning("coordinator.report_deferred", task_id=task_id, report=kind)
            self._backlog.append((data, headers))
            while len(self._backlog) > MAX_BACKLOG:
                self._backlog.popleft()

    # --- watches (every instance) -----------------------------------------------------------

    async def _watch_agents(self) -> None:
        kv = await self._js.key_value(AGENTS_BUCKET)
        await _follow(kv, ">", self._agent_entry, on_loaded=self._directory.ready.set)

    async def _agent_entry(self, key: str, value: bytes | None) -> None:
        if split_agent_id(key) is None:
            return
        if value is None:
            self._directory.gone(key)
            return
        try:
            heartbeat = AgentHeartbeat.FromString(value)
        except DecodeError:
            self._metrics.dropped.labels("malformed").inc()
            return
        self._directory.put(key, heartbeat)
        if heartbeat.HasField("started_at"):
            started_at = _seconds(heartbeat.started_at)
            previous = self._process_started.get(key)
            self._process_started[key] = max(started_at, previous or 0.0)
            if previous is not None and started_at > previous:
                self._agent_restarted(key, started_at)

    async def _load_strategy(self) -> None:
        try:
            entry = await self._bucket().get(STRATEGY_KEY)
        except KeyNotFoundError:
            return
        if entry.value:
            self._apply_strategy(pb.GetStrategyResponse.FromString(entry.value))

    async def _watch_strategy(self) -> None:
        async def changed(_key: str, value: bytes | None) -> None:
            if value:
                with contextlib.suppress(DecodeError):
                    self._apply_strategy(pb.GetStrategyResponse.FromString(value))

        await _follow(self._bucket(), STRATEGY_KEY, changed)

    def _apply_strategy(self, record: pb.GetStrategyResponse) -> None:
        strategy = FROM_PROTO.get(record.strategy)
        if strategy is None:
            return
        self._strategy = record
        self._chooser.strategy = strategy


async def _snapshot(kv: KeyValue, keys: str) -> dict[str, bytes]:
    """The current (not deleted) entries of ``keys``."""
    entries: dict[str, bytes] = {}
    watch = watch_entries(kv, keys)
    async with contextlib.aclosing(watch):
        async for entry in watch:
            if entry is None:
                break
            if entry.operation in DELETE_OPERATIONS or not entry.value:
                entries.pop(entry.key, None)
            else:
                entries[entry.key] = entry.value
    return entries


def _same_message(a: Msg, b: Msg) -> bool:
    try:
        return a.metadata.sequence.stream == b.metadata.sequence.stream
    except (nats.errors.Error, AttributeError, ValueError):
        return False


async def _follow(
    kv: KeyValue,
    keys: str,
    handle: Callable[[str, bytes | None], Awaitable[None]],
    *,
    on_loaded: Callable[[], None] | None = None,
) -> None:
    """Call ``handle`` for each entry of ``keys`` (``None``: deleted or expired), forever.

    A watch that ends (NATS restarted) is started again, from the current entries.
    """
    while True:
        try:
            watch = watch_entries(kv, keys)
            async with contextlib.aclosing(watch):
                async for entry in watch:
                    if entry is None:
                        if on_loaded is not None:
                            on_loaded()
                        continue
                    deleted = entry.operation in DELETE_OPERATIONS or not entry.value
                    await handle(entry.key, None if deleted else entry.value)
        except nats.errors.Error as exc:
            log.warning("coordinator.watch_restarting", keys=keys, error=str(exc))
        await asyncio.sleep(1.0)
