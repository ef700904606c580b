"""Publishing what the outbox holds: at once by the call that wrote it, later by the relay.

A change and the message announcing it are written in one transaction (:mod:`.store`); the
message is published after the commit, with its ``Nats-Msg-Id``, and its row deleted once
JetStream acknowledged it (a first dispatch then makes its task QUEUED). When NATS is away, or
does not acknowledge in time, the row stays; the relay (one background loop per instance) then
publishes it: it is woken by the failed publish and by every reconnection to NATS, retries with
back-off, and looks every ``relay_interval_seconds`` for rows another instance left behind. Rows
are taken with ``FOR UPDATE SKIP LOCKED``, so two relays never publish the same row at the same
time; should the call and a relay both publish one, JetStream's dedupe window keeps one message.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import asyncpg
import structlog
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from sutazai.runtime.settings import TaskSettings
from sutazai.services.tasks.batch import Batcher
from sutazai.services.tasks.domain import backoff
from sutazai.services.tasks.metrics import TaskMetrics
from sutazai.services.tasks.records import OutboxItem, StoredTask
from sutazai.services.tasks.store import TaskStore

log = structlog.get_logger(__name__)

DEAD_STREAM: Final = "SUTAZAI_DEAD"
BATCH: Final = 100
MARK_BATCH: Final = 200
"""Published rows marked in one transaction at most."""


class Outbox:
    """Publishes outbox rows to JetStream; :meth:`run` is the relay."""

    def __init__(
        self,
        store: TaskStore,
        nc: Client,
        settings: TaskSettings,
        metrics: TaskMetrics,
    ) -> None:
        self._store = store
        self._nc = nc
        self._js = nc.jetstream()
        self._settings = settings
        self._metrics = metrics
        self._wake = asyncio.Event()
        # Rows published by concurrent calls are marked in one transaction (group commit).
        self._marks: Batcher[OutboxItem, StoredTask | None] = Batcher(
            self._mark_many, limit=MARK_BATCH
        )

    def wake(self) -> None:
        """Make the relay look at the outbox now."""
        self._wake.set()

    async def reconnected(self) -> None:
        """NATS is back (a ``reconnected_cb``): publish what waited."""
        self.wake()

    async def send(self, items: list[OutboxItem]) -> StoredTask | None:
        """Publish rows just written, in order; the task as the last dispatch left it, if any.

        Stops at the first failure and leaves it (and the rest) to the relay.
        """
        changed = None
        for item in items:
            if not self._nc.is_connected or not await self._publish(item):
                self.wake()
                return changed
            self._metrics.published.labels(item.kind, "direct").inc()
            try:
                task = await self._marks.submit(item)
                if task is None and item.kind == "dispatch":
                    # A relay held the row (it published it too and marks it): the reply
                    # shows the task as the relay leaves it, not as PENDING.
                    task = await self._store.after_relay(item)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # Published but still in the outbox: the relay publishes it again (a duplicate
                # JetStream drops) and deletes it.
                log.warning("outbox.mark_failed", error=str(exc))
                self.wake()
                return changed
            if task is not None:
                changed = task
        return changed

    async def _mark_many(self, items: list[OutboxItem]) -> list[StoredTask | None]:
        if len(items) == 1:  # one statement, no transaction to lock rows in order
            return [await self._store.published(items[0])]
        changed = await self._store.published_many(items)
        return [changed.get(item.seq) for item in items]

    async def _publish(self, item: OutboxItem) -> bool:
        """Publish one row and wait for JetStream's acknowledgement; whether it was."""
        timeout = self._settings.publish_timeout_seconds
        try:
            if item.kind == "delete_dead":
                if item.dead_letter_sequence is None:
                    return True
                with contextlib.suppress(NotFoundError):  # already gone (or no such stream)
                    await self._js.delete_msg(DEAD_STREAM, item.dead_letter_sequence)
            else:
                await self._js.publish(
                    item.subject, item.body, timeout=timeout, headers={"Nats-Msg-Id": item.msg_id}
                )
        except (NatsError, OSError, TimeoutError) as exc:
            self._metrics.publish_failures.inc()
            log.info(
                "outbox.publish_failed", kind=item.kind, task_id=str(item.task_id), error=repr(exc)
            )
            return False
        return True

    async def run(self) -> None:
        """The relay: publish what the outbox holds, whenever woken, until cancelled.

        Woken (a failed publish, a reconnection), it takes every row; its periodic sweep only
        rows older than twice ``publish_timeout_seconds``, whose calls have given up on them:
        the rows of calls still publishing are theirs.
        """
        failures = 0
        while True:
            wait = self._settings.relay_interval_seconds
            if failures:
                wait = min(wait, backoff(failures))
            woken = True
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                woken = failures > 0
            self._wake.clear()
            if not self._nc.is_connected:
                # Woken again by the reconnection; the back-off keeps an eye meanwhile.
                failures += 1
                continue
            # A row is as old as its transaction; its call publishes after the commit and
            # waits up to publish_timeout_seconds: twice that is past any call still at it.
            settled = 0.0 if woken else 2 * self._settings.publish_timeout_seconds
            try:
                done = await self.relay_once(settled_seconds=settled)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("outbox.relay_failed", error=str(exc))
                done = False
            failures = 0 if done else failures + 1

    async def relay_once(self, *, settled_seconds: float = 0.0) -> bool:
        """Publish every row at least ``settled_seconds`` old nobody else is publishing.

        Returns whether all of them went out.

        The rows published are marked together, after the batch's publishes: the marks lock
        their tasks in id order, as every other writer of tasks does.
        """
        while True:
            async with self._store.pool.acquire() as conn, conn.transaction():
                items = await self._store.outbox_batch(conn, BATCH, settled_seconds=settled_seconds)
                self._metrics.outbox_waiting.set(len(items))
                sent: list[OutboxItem] = []
                for item in items:
                    if not self._nc.is_connected or not await self._publish(item):
                        break
                    self._metrics.published.labels(item.kind, "relay").inc()
                    sent.append(item)
                if sent:
                    await self._store.published_in(conn, sent)
                if len(sent) < len(items):
                    return False
            if len(items) < BATCH:
                return True
