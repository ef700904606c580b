"""An agent: task handlers, and the instance that runs them over NATS JetStream.

The instance implements the wire contract of ``nats/README.md`` ("Tasks and agents"):

- it writes an :class:`AgentHeartbeat` to the ``sutazai_agents`` bucket under
  ``<name>.<instance>`` every few seconds and whenever its load changes (ONLINE, then DRAINING
  when it stops; the key is deleted at the end);
- it pulls assignments from its own durable consumer ``agent-<name>-<instance>`` on
  ``SUTAZAI_WORK`` (filtered to ``sutazai.work.<name>.<instance>``), at most as many as it has
  free slots;
- for each it reports ``started``, runs the handler of the task's type, sends in-progress
  acknowledgements every third of ``ack_wait`` and the handler's ``progress`` reports, then
  publishes ``succeeded``, ``failed`` or ``cancelled`` and waits for JetStream's
  acknowledgement of that report before it acknowledges the assignment;
- it cancels a handler at the assignment's deadline (``failed``, DEADLINE_EXCEEDED) and on a
  ``TaskControl`` cancel from ``sutazai.control.<name>.<instance>`` (``cancelled``).

Reports carry ``Nats-Msg-Id: <task>.<attempt>.<event>`` (the final one ``.final``), so a
report published again after a lost acknowledgement, or by a restarted instance running the
same attempt again, is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import grpc
import nats.errors
import structlog
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.runtime.faults import RpcStatusError
from sutazai.runtime.messaging import end_if_cancelled
from sutazai.runtime.registry import new_instance_id
from sutazai.sdk import subjects
from sutazai.sdk.context import TaskContext
from sutazai.sdk.errors import AgentDefinitionError, TaskError
from sutazai.sdk.settings import INSTANCE_ID_PATTERN, AgentSettings
from sutazai.tasks.v1 import dispatch_pb2 as pb

log = structlog.get_logger(__name__)

Result = Mapping[str, Any] | None
"""What a handler returns: a JSON object (``None`` for an empty one)."""
Handler = Callable[[TaskContext], Coroutine[Any, Any, Result]]
"""An async function running one task type."""

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,62}\Z")
"""An agent's name is its NATS principal: lower-case, one subject token."""
CAPABILITY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
"""A capability (and task type), e.g. ``text.summarize``."""
MAX_CAPABILITIES = 64
MAX_CONCURRENCY = 1024
MAX_DELIVER = 1000
"""The contract's ``max_deliver``: attempts are counted by the coordinator, not redeliveries."""
RUNTIME = "python/sutazai-sdk 0.1"
_REMEMBERED_CANCELS = 1024
"""Cancellations remembered for assignments not pulled yet (bounded, oldest forgotten)."""
_REMEMBERED_FINALS = 1024
_REMEMBERED_FINAL_BYTES = 16 * 1024 * 1024
"""Final reports of ended runs remembered (count and bytes bounded, oldest forgotten): an
assignment delivered again after its run ended is answered with its report, not run again."""
_PULL_BACKOFF = (0.1, 2.0)

Interrupt = Literal["cancel", "deadline", "shutdown"]


@dataclass(slots=True)
class _Stats:
    succeeded: int = 0
    failed: int = 0
    total_ms: float = 0.0

    def finished(self, ok: bool, duration_ms: float) -> None:
        if ok:
            self.succeeded += 1
        else:
            self.failed += 1
        self.total_ms += duration_ms

    @property
    def mean_ms(self) -> float:
        done = self.succeeded + self.failed
        return self.total_ms / done if done else 0.0


class Agent:
    """An agent instance: its identity, capabilities and handlers, and the loop that runs them.

    Declare handlers with :meth:`handler` (a decorator) or :meth:`register`, then either call
    :func:`sutazai.sdk.run` (connects with the process's credentials, stops on SIGTERM) or
    :meth:`start` with a connection of your own and :meth:`stop` later.

    Args:
        name: the agent's name, which is its NATS principal (``[a-z][a-z0-9_-]*``).
        settings: how the instance heart-beats, pulls, reports and drains.
        instance_id: overrides ``settings.instance_id``; neither set picks a fresh id.
        capabilities: capabilities offered beyond the task types that have handlers.
        max_concurrency: tasks run at once (1 to 1024).

    Raises:
        AgentDefinitionError: a name, id, capability or the concurrency is not acceptable.

    """

    def __init__(
        self,
        name: str,
        *,
        settings: AgentSettings,
        instance_id: str | None = None,
        capabilities: Iterable[str] = (),
        max_concurrency: int = 1,
    ) -> None:
        if not NAME_PATTERN.match(name):
            raise AgentDefinitionError(
                f"agent name {name!r} must be lower-case letters, digits, '_' and '-', "
                "starting with a letter (it is a NATS principal)"
            )
        instance = instance_id or settings.instance_id or new_instance_id()
        if not re.match(INSTANCE_ID_PATTERN, instance):
            raise AgentDefinitionError(f"instance id {instance!r} must match {INSTANCE_ID_PATTERN}")
        if not 1 <= max_concurrency <= MAX_CONCURRENCY:
            raise AgentDefinitionError(f"max_concurrency must be 1 to {MAX_CONCURRENCY}")
        self.name = name
        self.instance_id = instance
        self.max_concurrency = max_concurrency
        self.settings = settings
        self._handlers: dict[str, Handler] = {}
        self._extra: list[str] = []
        self._worker: _Worker | None = None
        for capability in capabilities:
            self._check_capability(capability)
            self._extra.append(capability)

    @property
    def agent_id(self) -> str:
        """``<name>.<instance>``."""
        return subjects.agent_id(self.name, self.instance_id)

    @property
    def capabilities(self) -> list[str]:
        """Task types with handlers, then the extra capabilities, each once."""
        return list(dict.fromkeys([*self._handlers, *self._extra]))

    def handler(self, task_type: str) -> Callable[[Handler], Handler]:
        """Decorator: the decorated coroutine function runs tasks of ``task_type``."""

        def register(function: Handler) -> Handler:
            self.register(task_type, function)
            return function

        return register

    def register(self, task_type: str, handler: Handler) -> None:
        """Run tasks of ``task_type`` with ``handler``.

        Raises:
            AgentDefinitionError: the type is malformed, already has a handler, or the agent
                is running.

        """
        self._check_capability(task_type)
        if task_type in self._handlers:
            raise AgentDefinitionError(f"{task_type!r} already has a handler")
        if self._worker is not None:
            raise AgentDefinitionError("handlers are declared before the agent starts")
        self._handlers[task_type] = handler

    def _check_capability(self, capability: str) -> None:
        if not CAPABILITY_PATTERN.match(capability):
            raise AgentDefinitionError(
                f"capability {capability!r} must be 1 to 128 letters, digits, '.', '_', ':' or '-'"
            )
        if len({*self._extra, *self._handlers, capability}) > MAX_CAPABILITIES:
            raise AgentDefinitionError(f"at most {MAX_CAPABILITIES} capabilities")

    async def start(self, nc: Client) -> None:
        """Join the mesh on ``nc``: consumer, control subscription, heartbeat, pulling.

        Raises:
            AgentDefinitionError: no handler is declared, or the agent already started.
            nats.errors.Error: NATS refused the consumer or a subscription.

        """
        if not self._handlers:
            raise AgentDefinitionError("declare at least one handler before starting")
        if self._worker is not None:
            raise AgentDefinitionError("the agent is already started")
        worker = _Worker(self, nc, dict(self._handlers))
        await worker.start()
        self._worker = worker

    async def stop(self) -> None:
        """Drain and leave; idempotent.

        DRAINING, stop pulling, let running handlers finish (``drain_seconds``), cancel the
        rest, then delete the registry key.
        """
        if self._worker is not None:
            await self._worker.stop()

    async def wait_failed(self) -> None:
        """Return (raising its error) if a loop of the running instance dies unexpectedly."""
        if self._worker is None:
            raise AgentDefinitionError("the agent is not started")
        await self._worker.wait_failed()

    @property
    def running(self) -> int:
        """Tasks running now."""
        return self._worker.running_count if self._worker else 0


class _Worker:
    """The running instance behind an :class:`Agent`."""

    def __init__(self, agent: Agent, nc: Client, handlers: dict[str, Handler]) -> None:
        self.agent = agent
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=agent.settings.publish_timeout_seconds)
        self.settings = agent.settings
        self.handlers = handlers
        self.runs: dict[tuple[str, int], _Run] = {}
        self.stats = _Stats()
        self.started_at = datetime.now(UTC)
        self.draining = False
        self.stopped = False
        self.ack_wait = agent.settings.ack_wait_seconds
        self._slot_free = asyncio.Event()
        self._changed = asyncio.Event()
        self._cancels: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._finals: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._finals_bytes = 0
        self._loops: list[asyncio.Task[None]] = []
        self._orphans: set[asyncio.Task[Any]] = set()
        self._pull: JetStreamContext.PullSubscription | None = None
        self._control: Any = None
        name, instance = agent.name, agent.instance_id
        self.report_subject = subjects.report_subject(name, instance)
        self.heartbeat_subject = subjects.heartbeat_subject(name, instance)

    def is_draining(self) -> bool:
        """Whether the instance stopped taking work (read anew: a stop may come any time)."""
        return self.draining

    @property
    def running_count(self) -> int:
        return sum(1 for run in self.runs.values() if not run.abandoned)

    async def start(self) -> None:
        name, instance = self.agent.name, self.agent.instance_id
        durable = subjects.consumer_name(name, instance)
        # nats-py 2.16 creates it with $JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>: the
        # filter in the subject is what lets permissions confine an agent to its own work.
        info = await self.js.add_consumer(
            subjects.WORK_STREAM,
            ConsumerConfig(
                name=durable,
                durable_name=durable,
                filter_subject=subjects.work_subject(name, instance),
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.settings.ack_wait_seconds,
                max_deliver=MAX_DELIVER,
            ),
        )
        if info.config.ack_wait:
            self.ack_wait = info.config.ack_wait
        self._pull = await self.js.pull_subscribe_bind(durable, stream=subjects.WORK_STREAM)
        self._control = await self.nc.subscribe(
            subjects.control_subject(name, instance), cb=self._on_control
        )
        await self._write_heartbeat()
        self._loops = [
            asyncio.create_task(self._heartbeat_loop(), name=f"{self.agent.agent_id} heartbeat"),
            asyncio.create_task(self._pull_loop(), name=f"{self.agent.agent_id} pull"),
        ]
        log.info(
            "agent.started",
            agent_id=self.agent.agent_id,
            capabilities=self.agent.capabilities,
            max_concurrency=self.agent.max_concurrency,
        )

    async def wait_failed(self) -> None:
        done, _ = await asyncio.wait(self._loops, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled():
                task.result()

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.draining = True
        log.info("agent.draining", agent_id=self.agent.agent_id, running=self.running_count)
        self._slot_free.set()
        with contextlib.suppress(Exception):
            await self._write_heartbeat()
        pull = self._loops[1] if len(self._loops) > 1 else None
        if pull is not None:
            # The pull request in flight ends within fetch_seconds; what it brings is given back.
            done, _ = await asyncio.wait({pull}, timeout=self.settings.fetch_seconds + 1.0)
            if not done:
                pull.cancel()
        tasks = {run.task for run in self.runs.values() if run.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.drain_seconds)
        left = [run for run in self.runs.values() if run.task is not None and not run.task.done()]
        for run in left:
            run.interrupt("shutdown")
        if left:
            bound = self.settings.cancel_grace_seconds + self.settings.publish_timeout_seconds * 2
            pending = {run.task for run in left if run.task is not None}
            _, still = await asyncio.wait(pending, timeout=bound)
            for task in still:
                task.cancel()
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loop
        for subscription in (self._control, self._pull):
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
        try:
            await self.js.publish(self.heartbeat_subject, b"", headers={"KV-Operation": "DEL"})
        except Exception as exc:  # the key ages out with the bucket's TTL anyway
            log.warning("agent.deregister_failed", agent_id=self.agent.agent_id, error=str(exc))
        log.info("agent.stopped", agent_id=self.agent.agent_id)

    # Heartbeats -------------------------------------------------------------------------------

    def changed(self) -> None:
        """The load changed: write a heartbeat soon."""
        self._changed.set()

    def heartbeat(self) -> agents_pb.AgentHeartbeat:
        beat = agents_pb.AgentHeartbeat(
            agent_id=self.agent.agent_id,
            capabilities=self.agent.capabilities,
            max_concurrency=self.agent.max_concurrency,
            running=self.running_count,
            state=agents_pb.AGENT_STATE_DRAINING if self.draining else agents_pb.AGENT_STATE_ONLINE,
            succeeded=self.stats.succeeded,
            failed=self.stats.failed,
            mean_duration_ms=self.stats.mean_ms,
            version=self.settings.version,
            runtime=RUNTIME,
        )
        beat.started_at.FromDatetime(self.started_at)
        beat.heartbeat_at.GetCurrentTime()
        return beat

    async def _write_heartbeat(self) -> None:
        await self.js.publish(self.heartbeat_subject, self.heartbeat().SerializeToString())

    async def _heartbeat_loop(self) -> None:
        failing = False
        while True:
            self._changed.clear()
            try:
                await self._write_heartbeat()
                if failing:
                    log.info("agent.heartbeat_restored", agent_id=self.agent.agent_id)
                failing = False
            except (nats.errors.Error, OSError) as exc:
                if not failing:  # once per outage, not every few seconds
                    log.warning(
                        "agent.heartbeat_failed", agent_id=self.agent.agent_id, error=str(exc)
                    )
                failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.settings.heartbeat_seconds)
            # Pace bursts of changes (many short tasks) into one write.
            await asyncio.sleep(self.settings.heartbeat_min_seconds)

    # Pulling ----------------------------------------------------------------------------------

    async def _pull_loop(self) -> None:
        if self._pull is None:
            raise RuntimeError("the pull subscription is not bound")
        backoff = _PULL_BACKOFF[0]
        while not self.draining:
            free = self.agent.max_concurrency - self.running_count
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                messages = await self._pull.fetch(batch=free, timeout=self.settings.fetch_seconds)
            except TimeoutError:
                end_if_cancelled()  # a cancellation fetch may have turned into this
                continue
            except nats.errors.ConnectionClosedError:
                return
            except (nats.errors.Error, OSError) as exc:
                # Reconnecting, or the stream is briefly away: try again, a little later.
                log.warning("agent.pull_failed", agent_id=self.agent.agent_id, error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _PULL_BACKOFF[1])
                continue
            backoff = _PULL_BACKOFF[0]
            for message in messages:
                if self.is_draining():
                    # Not started: back to the stream at once, for this instance's successor.
                    with contextlib.suppress(Exception):
                        await message.nak()
                    continue
                self._accept(message)

    def _accept(self, message: Msg) -> None:
        try:
            assignment = pb.TaskAssignment.FromString(message.data)
        except DecodeError:
            assignment = None
        if assignment is None or not assignment.task_id or assignment.attempt == 0:
            # Nothing to report about (no task id): drop it so it is not delivered again.
            log.error("agent.malformed_assignment", agent_id=self.agent.agent_id)
            self._spawn(message.term())
            return
        key = (assignment.task_id, assignment.attempt)
        existing = self.runs.get(key)
        if existing is not None:
            # Delivered again while it runs (e.g. acknowledgements lost in a reconnect): keep
            # one run, acknowledging the newest delivery.
            existing.message = message
            return
        final = self._finals.get(key)
        if final is not None:
            # Delivered again after its run ended (the acknowledgement, or the report, was lost
            # when NATS went away): the same report again (stored once, by its message id),
            # never a second run of the handler.
            self._spawn(self._answer_again(assignment, final, message))
            return
        run = _Run(self, assignment, message)
        self.runs[key] = run
        if key in self._cancels:
            del self._cancels[key]
            run.interrupt("cancel")
        run.task = asyncio.create_task(run.execute(), name=f"task {assignment.task_id}")
        run.task.add_done_callback(lambda _: self._finished(key, run))
        self.changed()

    def remember_final(self, key: tuple[str, int], report: pb.TaskReport) -> None:
        """Keep the final report of an ended run, for a delivery of its assignment again."""
        data = report.SerializeToString()
        previous = self._finals.pop(key, None)
        self._finals_bytes += len(data) - len(previous or b"")
        self._finals[key] = data
        while self._finals and (
            len(self._finals) > _REMEMBERED_FINALS or self._finals_bytes > _REMEMBERED_FINAL_BYTES
        ):
            _, dropped = self._finals.popitem(last=False)
            self._finals_bytes -= len(dropped)

    async def _answer_again(
        self, assignment: pb.TaskAssignment, final: bytes, message: Msg
    ) -> None:
        prefix = f"{assignment.task_id}.{assignment.attempt}"
        log.info("agent.delivered_again", task_id=assignment.task_id, attempt=assignment.attempt)
        stored = await self.publish_report(
            pb.TaskReport.FromString(final),
            f"{prefix}.final",
            budget=self.settings.report_retry_seconds,
        )
        if stored:
            await message.ack_sync(timeout=self.settings.publish_timeout_seconds)

    def _finished(self, key: tuple[str, int], run: _Run) -> None:
        if self.runs.get(key) is run:
            del self.runs[key]
        self._slot_free.set()
        self.changed()

    def _spawn(self, work: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                log.warning("agent.background_failed", error=str(exc))

        task = asyncio.create_task(guarded())
        self._orphans.add(task)
        task.add_done_callback(self._orphans.discard)

    # Control ----------------------------------------------------------------------------------

    async def _on_control(self, message: Msg) -> None:
        try:
            control = pb.TaskControl.FromString(message.data)
        except DecodeError:
            log.warning("agent.malformed_control", agent_id=self.agent.agent_id)
            return
        if not control.HasField("cancel"):
            return
        matches = [
            run
            for (task_id, attempt), run in self.runs.items()
            if task_id == control.task_id and control.attempt in (0, attempt)
        ]
        for run in matches:
            run.interrupt("cancel")
        if not matches and control.attempt:
            # Not pulled yet: cancel it on arrival instead of running it.
            self._cancels[(control.task_id, control.attempt)] = None
            while len(self._cancels) > _REMEMBERED_CANCELS:
                self._cancels.popitem(last=False)
        log.info(
            "agent.cancel_requested",
            agent_id=self.agent.agent_id,
            task_id=control.task_id[:64],
            running=bool(matches),
        )

    # Reports ----------------------------------------------------------------------------------

    async def publish_report(
        self, report: pb.TaskReport, msg_id: str, *, budget: float | None = None
    ) -> bool:
        """Publish a report and wait for JetStream's acknowledgement, retrying within budget."""
        report.agent_id = self.agent.agent_id
        report.sent_at.GetCurrentTime()
        data = report.SerializeToString()
        deadline = time.monotonic() + (budget or self.settings.publish_timeout_seconds)
        delay = 0.1
        while True:
            try:
                await self.js.publish(
                    self.report_subject,
                    data,
                    timeout=self.settings.publish_timeout_seconds,
                    headers={"Nats-Msg-Id": msg_id},
                )
                return True
            except (nats.errors.Error, OSError) as exc:
                if time.monotonic() + delay >= deadline:
                    log.warning(
                        "agent.report_failed",
                        agent_id=self.agent.agent_id,
                        task_id=report.task_id,
                        event=report.WhichOneof("event"),
                        error=str(exc),
                    )
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


class _Run:
    """One attempt running on this instance."""

    def __init__(self, worker: _Worker, assignment: pb.TaskAssignment, message: Msg) -> None:
        self.worker = worker
        self.assignment = assignment
        self.message = message
        self.task: asyncio.Task[None] | None = None
        self.abandoned = False
        """The handler ignored its cancellation past the grace period; no longer counted."""
        self._interrupt: Interrupt | None = None
        self._interrupted = asyncio.Event()
        self._progress_count = 0
        self.context: TaskContext | None = None

    @property
    def prefix(self) -> str:
        return f"{self.assignment.task_id}.{self.assignment.attempt}"

    def reason(self) -> Interrupt | None:
        """Why the run was interrupted, if it was (read anew: it changes while awaiting)."""
        return self._interrupt

    def interrupt(self, reason: Interrupt) -> None:
        if self._interrupt is None:
            self._interrupt = reason
            if self.context is not None:
                self.context._mark_cancelled()
            self._interrupted.set()

    def _report(self, **event: Any) -> pb.TaskReport:
        return pb.TaskReport(
            task_id=self.assignment.task_id, attempt=self.assignment.attempt, **event
        )

    async def execute(self) -> None:
        worker, settings = self.worker, self.worker.settings
        began = time.monotonic()
        keepalive = asyncio.create_task(self._keep_alive())
        try:
            if self._interrupt is None:
                await worker.publish_report(
                    self._report(started=pb.TaskStarted()), f"{self.prefix}.started"
                )
            report, ok = await self._outcome()
            duration_ms = (time.monotonic() - began) * 1000
            worker.remember_final((self.assignment.task_id, self.assignment.attempt), report)
            stored = await worker.publish_report(
                report, f"{self.prefix}.final", budget=settings.report_retry_seconds
            )
            if report.WhichOneof("event") != "cancelled":
                worker.stats.finished(ok, duration_ms)
            if not stored:
                return  # unacknowledged: JetStream delivers it again after ack_wait
            await self._acknowledge()
            log.info(
                "agent.task_done",
                agent_id=worker.agent.agent_id,
                task_id=self.assignment.task_id,
                attempt=self.assignment.attempt,
                outcome=report.WhichOneof("event"),
                duration_ms=round(duration_ms, 1),
            )
        finally:
            keepalive.cancel()

    async def _acknowledge(self) -> None:
        """Acknowledge the assignment, again while NATS does not confirm, within ``ack_wait``.

        An acknowledgement lost when NATS restarts makes JetStream deliver the assignment again
        after ``ack_wait``, maybe to this instance's successor, which would run it a second
        time; the restarted server takes the acknowledgement of a delivery it restored.
        """
        worker = self.worker
        deadline = time.monotonic() + worker.ack_wait
        delay = 0.2
        while True:
            try:
                await self.message.ack_sync(timeout=worker.settings.publish_timeout_seconds)
                return
            except (nats.errors.Error, OSError) as exc:
                if time.monotonic() + delay >= deadline:
                    # The report is stored; a redelivery only repeats it (stored once by its
                    # id), and the coordinator stops a run of an attempt that already ended.
                    log.warning("agent.ack_failed", task_id=self.assignment.task_id, error=str(exc))
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _keep_alive(self) -> None:
        """In-progress acknowledgements: JetStream keeps the assignment while the handler runs."""
        interval = max(self.worker.ack_wait / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(nats.errors.Error, OSError):
                await self.message.in_progress()

    def _deadline(self) -> datetime:
        if self.assignment.HasField("deadline"):
            return self.assignment.deadline.ToDatetime(tzinfo=UTC)
        return datetime.now(UTC) + timedelta(seconds=self.worker.settings.default_deadline_seconds)

    async def _outcome(self) -> tuple[pb.TaskReport, bool]:
        """Run the handler under its deadline and cancellation; the final report and success."""
        worker, assignment = self.worker, self.assignment
        if self._interrupt == "cancel":
            return self._report(cancelled=pb.TaskCancelled()), False
        handler = worker.handlers.get(assignment.type)
        if handler is None:
            return self._failed(
                grpc.StatusCode.UNIMPLEMENTED,
                f"agent {worker.agent.name!r} has no handler for {assignment.type[:128]!r}",
                retryable=True,
            ), False
        deadline = self._deadline()
        context = TaskContext(
            task_id=assignment.task_id,
            attempt=assignment.attempt,
            task_type=assignment.type,
            payload=json_format.MessageToDict(assignment.payload),
            deadline=deadline,
            agent_id=worker.agent.agent_id,
            nats=worker.nc,
            progress=self._progress,
            progress_interval=worker.settings.progress_interval_seconds,
        )
        self.context = context
        if self._interrupt is not None:
            context._mark_cancelled()
        running = asyncio.create_task(handler(context))
        interrupted = asyncio.create_task(self._interrupted.wait())
        remaining = (deadline - datetime.now(UTC)).total_seconds()
        try:
            done, _ = await asyncio.wait(
                {running, interrupted},
                timeout=max(remaining, 0.0),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            interrupted.cancel()
        if running in done:
            # Finished: its outcome stands, even if a cancellation arrived at the same moment.
            return self._result_of(running)
        self.interrupt("deadline")  # no-op when a cancellation or the drain came first
        running.cancel()
        finished, _ = await asyncio.wait({running}, timeout=worker.settings.cancel_grace_seconds)
        if not finished:
            # The handler swallows its cancellation: report anyway and stop counting it.
            self.abandoned = True
            worker.changed()
            log.error("agent.handler_ignored_cancel", task_id=assignment.task_id)
            running.add_done_callback(lambda t: t.cancelled() or t.exception())
        reason = self.reason()
        if reason == "cancel":
            return self._report(cancelled=pb.TaskCancelled()), False
        if reason == "shutdown":
            return self._failed(
                grpc.StatusCode.UNAVAILABLE,
                "the agent stopped before the task finished",
                retryable=True,
            ), False
        return self._failed(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"the attempt ran past its deadline ({deadline.isoformat()})",
            retryable=True,
        ), False

    def _result_of(self, running: asyncio.Task[Result]) -> tuple[pb.TaskReport, bool]:
        task_id = self.assignment.task_id
        if running.cancelled():
            return self._failed(
                grpc.StatusCode.UNKNOWN, "the handler was cancelled", retryable=True
            ), False
        error = running.exception()
        if isinstance(error, TaskError):
            failed = pb.TaskFailed(error=error.status(), retryable=error.retryable)
            return self._report(failed=failed), False
        if error is not None:
            log.error(
                "agent.handler_failed",
                task_id=task_id,
                error=f"{type(error).__name__}: {error}",
                exc_info=error,
            )
            return self._failed(
                grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {error}", retryable=True
            ), False
        value: object = running.result()
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            return self._failed(
                grpc.StatusCode.INTERNAL,
                f"the handler returned {type(value).__name__}, not a JSON object",
                retryable=False,
            ), False
        result = struct_pb2.Struct()
        try:
            result.update(value)
        except (TypeError, ValueError) as exc:
            return self._failed(
                grpc.StatusCode.INTERNAL,
                f"the handler's result is not JSON: {exc}",
                retryable=False,
            ), False
        size = result.ByteSize()
        if size > subjects.MAX_RESULT_BYTES:
            return self._failed(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the result is {size} bytes; at most {subjects.MAX_RESULT_BYTES} are allowed",
                retryable=False,
            ), False
        return self._report(succeeded=pb.TaskSucceeded(result=result)), True

    def _failed(self, code: grpc.StatusCode, message: str, *, retryable: bool) -> pb.TaskReport:
        status: status_pb2.Status = RpcStatusError(code, message).to_proto()
        return self._report(failed=pb.TaskFailed(error=status, retryable=retryable))

    async def _progress(self, fraction: float, message: str) -> None:
        self._progress_count += 1
        await self.worker.publish_report(
            self._report(progress=pb.TaskProgress(fraction=fraction, message=message)),
            f"{self.prefix}.progress.{self._progress_count}",
        )
