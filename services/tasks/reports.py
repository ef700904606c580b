"""The report consumer: every ``TaskReport`` on ``SUTAZAI_REPORTS``, applied to PostgreSQL.

One durable pull consumer, ``tasks``, shared by every instance of the service (JetStream hands
each report to one of them). A report is applied to the attempt it names (see
:func:`~sutazai.services.tasks.domain.judge`) and acknowledged only after its transaction
committed, so a crash in between redelivers it, and applying it again changes nothing. Reports
of one task in a fetched batch are applied in stream order, in one transaction with the other
tasks of its lane (:data:`LANES` per batch, concurrently), whose changes are written a
statement per table (``TaskStore.apply_many``): a batch costs a few commits and a few round
trips, not some per report. Within a lane, an agent's report that overtook its attempt's
``assigned`` is applied once that ``assigned`` is. The next batch is fetched while one is
applied.

An agent's report that arrives before the coordinator's ``assigned`` for its attempt is not
dropped but redelivered a little later, a bounded number of times. The coordinator reports
``assigned`` before it hands the work over, so this happens only when that report was delayed
(NATS refused it for a while, a coordinator stopped in between). A redelivery waiting for its
time still counts against the consumer's ``MAX_ACK_PENDING``, so the reports of one agent (all
its instances) that may wait at once are bounded too (``LATER_PER_AGENT``; more are dropped): a
compromised agent publishing reports about attempts nobody holds yet cannot stall every other
report.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from typing import Final

import asyncpg
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError

from sutazai.runtime.messaging import end_if_cancelled
from sutazai.runtime.settings import TaskSettings
from sutazai.services.tasks.domain import TaskState, Verdict, backoff
from sutazai.services.tasks.messages import decode_report
from sutazai.services.tasks.metrics import TaskMetrics
from sutazai.services.tasks.records import Report
from sutazai.services.tasks.store import TaskStore

log = structlog.get_logger(__name__)

STREAM: Final = "SUTAZAI_REPORTS"
DURABLE: Final = "tasks"
ACK_WAIT_SECONDS: Final = 30.0
MAX_ACK_PENDING: Final = 1000
FETCH_SECONDS: Final = 5.0
LATER_DELIVERIES: Final = 50
"""How often an agent's report waits for its attempt's ``assigned`` before it is dropped."""
LANES: Final = 4
"""Transactions one fetched batch of reports is applied in, concurrently (by task)."""
POISON_DELIVERIES: Final = 5
LATER_PER_AGENT: Final = MAX_ACK_PENDING // 10
"""Reports of one agent name waiting for their attempt's ``assigned`` at once, per instance of
this service. A well-behaved agent has a few at most, for milliseconds."""
WAITING_FORGOTTEN_SECONDS: Final = 300.0
"""A waiting report not seen again for this long is forgotten (another instance of the service
took its redelivery, say): far longer than its LATER_DELIVERIES redeliveries take."""
"""Deliveries of a report whose application keeps failing unexpectedly before it is dropped."""


def consumer_config() -> ConsumerConfig:
    """The durable consumer ``tasks`` of ``SUTAZAI_REPORTS`` (nats/README.md)."""
    return ConsumerConfig(
        name=DURABLE,
        durable_name=DURABLE,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ACK_WAIT_SECONDS,
        max_ack_pending=MAX_ACK_PENDING,
    )


class ReportConsumer:
    """Fetches reports and applies them; :meth:`run` until cancelled."""

    def __init__(
        self, store: TaskStore, nc: Client, settings: TaskSettings, metrics: TaskMetrics
    ) -> None:
        self._store = store
        self._js = nc.jetstream()
        self._settings = settings
        self._metrics = metrics
        self.consuming = asyncio.Event()
        """Set while the consumer is bound (tests wait for it)."""
        self._waiting: defaultdict[str, dict[int, float]] = defaultdict(dict)
        """Agent name → stream sequence → when each of its waiting (``LATER``) reports came."""
        self._full: set[str] = set()
        """Agent names whose share of waiting reports is full (logged once, not per report)."""

    async def run(self) -> None:
        """Bind the consumer (creating it if missing) and consume; rebind after failures."""
        failures = 0
        while True:
            subscription = None
            try:
                subscription = await self._bind()
                self.consuming.set()
                failures = 0
                await self._consume(subscription)
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                failures += 1
                delay = backoff(failures, first=0.5, most=5.0)
                log.warning("reports.consumer_failed", error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
            finally:
                self.consuming.clear()
                if subscription is not None:
                    with contextlib.suppress(nats.errors.Error):
                        await subscription.unsubscribe()

    async def _bind(self) -> JetStreamContext.PullSubscription:
        try:
            await self._js.add_consumer(STREAM, consumer_config())
        except BadRequestError as exc:
            # Created by someone else with other settings (the supervisor, say): use it.
            log.info("reports.consumer_exists", error=str(exc))
        return await self._js.pull_subscribe_bind(DURABLE, stream=STREAM)

    async def _consume(self, subscription: JetStreamContext.PullSubscription) -> None:
        # The next batch is fetched while one is applied: the fetch's round trip, and the
        # reports that come meanwhile, do not wait for the batch's commit.
        fetching = asyncio.ensure_future(self._fetch(subscription))
        try:
            while True:
                messages = await fetching
                end_if_cancelled()  # a cancellation the fetch may have turned into a timeout
                fetching = asyncio.ensure_future(self._fetch(subscription))
                if messages:
                    await self.handle(messages)
        finally:
            fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError, nats.errors.Error, OSError):
                # Fetched but not applied: redelivered now, not after ACK_WAIT_SECONDS.
                for message in await fetching:
                    await message.nak()

    async def _fetch(self, subscription: JetStreamContext.PullSubscription) -> list[Msg]:
        """The next batch; empty when none came within ``FETCH_SECONDS``."""
        try:
            return await subscription.fetch(self._settings.report_batch, timeout=FETCH_SECONDS)
        except TimeoutError:  # nothing came (nats-py raises asyncio's as well as its own)
            return []

    async def handle(self, messages: list[Msg]) -> None:
        """Apply a batch, each task's reports in stream order, in a few transactions.

        Should a lane's transaction fail, each of its reports is applied again on its own (each
        task's in order, different tasks concurrently), so one report that cannot be applied
        holds up no other.
        """
        by_task: dict[uuid.UUID, list[tuple[Report, Msg]]] = defaultdict(list)
        for message in messages:
            report = decode_report(message.subject, message.data)
            if report is None:
                self._metrics.reports.labels("unknown", Verdict.MALFORMED.value).inc()
                with contextlib.suppress(nats.errors.Error):
                    await message.term()
                continue
            by_task[report.task_id].append((report, message))
        # Tasks are spread over a few lanes, one transaction each, applied concurrently: a
        # lane's statements run one after the other on its connection, and one lane for the
        # whole batch made the batch's round trips add up. A task's reports stay in one lane.
        lanes: list[list[list[tuple[Report, Msg]]]] = [[] for _ in range(LANES)]
        for task_id, group in by_task.items():
            lanes[task_id.int % LANES].append(group)
        await asyncio.gather(*(self._apply_lane(lane) for lane in lanes if lane))

    async def _apply_lane(self, groups: list[list[tuple[Report, Msg]]]) -> None:
        try:
            outcomes = await self._store.apply_many([[r for r, _ in group] for group in groups])
        except Exception as exc:  # whatever it was, each report again on its own
            log.warning("reports.batch_failed", error=repr(exc), tasks=len(groups))
            await asyncio.gather(*(self._apply_in_order(group) for group in groups))
            return
        for group, results in zip(groups, outcomes, strict=True):
            for (report, message), (verdict, state) in zip(group, results, strict=True):
                await self._settle(report, message, verdict, state)

    def _may_wait(self, report: Report, message: Msg) -> bool:
        """Whether this report may wait for its ``assigned`` (its agent's share is not full)."""
        waiting = self._waiting[report.agent.partition(".")[0]]
        sequence = message.metadata.sequence.stream
        now = time.monotonic()
        if sequence not in waiting and len(waiting) >= LATER_PER_AGENT:
            for stale in [
                s for s, since in waiting.items() if now - since > WAITING_FORGOTTEN_SECONDS
            ]:
                del waiting[stale]
            if len(waiting) >= LATER_PER_AGENT:
                name = report.agent.partition(".")[0]
                if name not in self._full:
                    self._full.add(name)
                    log.warning("reports.waiting_share_full", agent=name, waiting=len(waiting))
                return False
        waiting[sequence] = now
        return True

    def _done_waiting(self, report: Report, message: Msg) -> None:
        name = report.agent.partition(".")[0]
        waiting = self._waiting.get(name)
        if waiting is not None:
            waiting.pop(message.metadata.sequence.stream, None)
            if not waiting:
                del self._waiting[name]
                self._full.discard(name)

    async def _apply_in_order(self, reports: list[tuple[Report, Msg]]) -> None:
        for index, (report, message) in enumerate(reports):
            event = report.event.value if report.event is not None else "unknown"
            try:
                verdict, state = await self._store.apply(report)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("reports.apply_failed", error=str(exc), task_id=str(report.task_id))
                # Keep the order: this report and the task's later ones come again.
                for _, later in reports[index:]:
                    with contextlib.suppress(nats.errors.Error):
                        await later.nak(delay=1.0)
                return
            except Exception:  # a report this code cannot apply must not stop every other one
                log.exception("reports.apply_crashed", task_id=str(report.task_id), report=event)
                self._metrics.reports.labels(event, "crashed").inc()
                with contextlib.suppress(nats.errors.Error):
                    if (message.metadata.num_delivered or 1) >= POISON_DELIVERIES:
                        await message.term()
                    else:
                        await message.nak(delay=5.0)
                continue
            await self._settle(report, message, verdict, state)

    async def _settle(
        self, report: Report, message: Msg, verdict: Verdict, state: TaskState | None
    ) -> None:
        """Count a report's verdict and acknowledge it (or ask for it again, if too early)."""
        event = report.event.value if report.event is not None else "unknown"
        if verdict is Verdict.LATER:
            delivered = message.metadata.num_delivered or 1
            if delivered < LATER_DELIVERIES and self._may_wait(report, message):
                self._metrics.reports.labels(event, verdict.value).inc()
                with contextlib.suppress(nats.errors.Error):
                    await message.nak(delay=min(2.0, 0.1 * delivered))
                return
            if delivered < LATER_DELIVERIES:
                verdict = Verdict.OVERFLOW  # its agent has too many waiting already
            else:
                verdict = Verdict.WRONG_AGENT  # never assigned: not the attempt's agent
                log.warning(
                    "reports.never_assigned", task_id=str(report.task_id), agent=report.agent
                )
        self._done_waiting(report, message)
        self._metrics.reports.labels(event, verdict.value).inc()
        if verdict in (Verdict.WRONG_AGENT, Verdict.FOREIGN):
            log.warning(
                "reports.dropped",
                verdict=verdict.value,
                report=event,
                task_id=str(report.task_id),
                agent=report.agent,
            )
        if verdict is Verdict.APPLY and state is not None and state.final:
            self._metrics.finished.labels(state.value).inc()
        with contextlib.suppress(nats.errors.Error):
            await message.ack()
