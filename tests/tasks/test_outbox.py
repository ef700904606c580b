"""The outbox and the queue bound, on a task record of the test's own.

A task ledger runs in this process on a schema of its own (owned by the task service's role,
so the mesh's task service, whose relay would publish these rows, never sees them), with its
NATS connection through a TCP proxy the test can cut: NATS "goes away" for this ledger only.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry

from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.settings import MeshSettings, NatsSettings, TaskSettings
from sutazai.services.tasks import store as store_module
from sutazai.services.tasks.domain import TaskState
from sutazai.services.tasks.errors import QueueFullError
from sutazai.services.tasks.ledger import TaskLedger
from sutazai.services.tasks.messages import DISPATCH
from sutazai.services.tasks.metrics import TaskMetrics
from sutazai.services.tasks.outbox import Outbox
from sutazai.services.tasks.store import TaskStore
from tests.harness.waiting import wait_for
from tests.tasks.helpers import new_task


class CuttableProxy:
    """A TCP proxy to ``target`` on a fixed local port that can be cut and restored."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )
        self._writers -= {writer, up_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def ledger_via(
    mesh: MeshSettings, store: TaskStore, port: int, settings: TaskSettings
) -> AsyncIterator[tuple[TaskLedger, Outbox, Client]]:
    """A ledger whose NATS connection (as the task service) goes to ``port``, relay running."""
    through = mesh.as_principal("tasks")
    through = through.model_copy(update={"nats": NatsSettings(port=port, user=through.nats.user)})
    outboxes: list[Outbox] = []

    async def reconnected() -> None:
        for outbox in outboxes:
            outbox.wake()

    nc = await connect_nats(through, name="tests-outbox", reconnected_cb=reconnected)
    metrics = TaskMetrics(CollectorRegistry())
    outbox = Outbox(store, nc, settings, metrics)
    outboxes.append(outbox)
    relay = asyncio.create_task(outbox.run())
    try:
        yield TaskLedger(store, outbox, settings, metrics), outbox, nc
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        await nc.close()


async def next_dispatch_seq(nc: Client) -> int:
    """The sequence SUTAZAI_TASKS's next message will have."""
    return (await nc.jetstream().stream_info("SUTAZAI_TASKS")).state.last_seq + 1


@pytest.fixture
async def direct_outbox(mesh_settings: MeshSettings, store: TaskStore) -> AsyncIterator[Outbox]:
    """An outbox publishing straight to the mesh's NATS; its relay runs only when woken."""
    settings = TaskSettings(relay_interval_seconds=60.0)
    async with ledger_via(mesh_settings, store, mesh_settings.nats.port, settings) as (
        _,
        outbox,
        _nc,
    ):
        yield outbox


async def dispatches_of(nc: Client, task_id: uuid.UUID, first_seq: int) -> int:
    """How many dispatches of ``task_id`` SUTAZAI_TASKS holds from ``first_seq`` on."""
    js = nc.jetstream()
    last = (await js.stream_info("SUTAZAI_TASKS")).state.last_seq
    found = 0
    for seq in range(first_seq, last + 1):
        try:
            message = await js.get_msg("SUTAZAI_TASKS", seq)
        except NotFoundError:
            continue
        if (message.headers or {}).get("Nats-Msg-Id", "").startswith(f"{task_id}."):
            found += 1
    return found


async def test_a_task_accepted_while_nats_is_away_is_dispatched_once_when_it_returns(
    mesh_settings: MeshSettings, admin_nats: Client, store: TaskStore
) -> None:
    settings = TaskSettings(publish_timeout_seconds=1.0, relay_interval_seconds=60.0)
    proxy = CuttableProxy(mesh_settings.nats.port)
    await proxy.start()
    first_seq = await next_dispatch_seq(admin_nats)
    async with ledger_via(mesh_settings, store, proxy.port, settings) as (ledger, _, nc):
        online, _ = await ledger.create(new_task())
        assert online.state is TaskState.QUEUED, "published at once while NATS is there"

        await proxy.cut()
        await wait_for(lambda: not nc.is_connected, timeout=10, message="NATS gone")
        offline, created = await ledger.create(new_task())

        assert created
        assert offline.state is TaskState.PENDING
        assert await store.outbox_size() == 1
        stored = await store.get(offline.task_id)
        assert stored is not None
        assert stored.state is TaskState.PENDING

        await proxy.start()  # NATS is back: the reconnection wakes the relay

        async def queued() -> bool:
            task = await store.get(offline.task_id)
            return task is not None and task.state is TaskState.QUEUED

        await wait_for(queued, timeout=15, message="the relay published the dispatch")
        assert await store.outbox_size() == 0
    assert await dispatches_of(admin_nats, offline.task_id, first_seq) == 1
    assert await dispatches_of(admin_nats, online.task_id, first_seq) == 1
    await proxy.cut()


async def test_a_dispatch_published_twice_is_one_message(
    admin_nats: Client, store: TaskStore, direct_outbox: Outbox
) -> None:
    first_seq = await next_dispatch_seq(admin_nats)
    # Written but not yet published (as if the call died before its publish): the relay and a
    # late direct publish both send it.
    changed, _ = await store.create(new_task(), queue_bound=100, dispatch=DISPATCH)
    item = changed.outbox[0]
    assert await direct_outbox.relay_once()
    await direct_outbox.send([item])

    task = await store.get(changed.task.task_id)
    assert task is not None
    assert task.state is TaskState.QUEUED
    assert await dispatches_of(admin_nats, changed.task.task_id, first_seq) == 1


async def test_a_call_whose_row_a_relay_holds_replies_with_the_task_the_relay_queued(
    admin_nats: Client, store: TaskStore, direct_outbox: Outbox
) -> None:
    first_seq = await next_dispatch_seq(admin_nats)
    changed, _ = await store.create(new_task(), queue_bound=100, dispatch=DISPATCH)
    async with store.pool.acquire() as relay:
        transaction = relay.transaction()
        await transaction.start()
        held = await store.outbox_batch(relay, 100)
        assert [item.seq for item in held] == [changed.outbox[0].seq]
        # The call publishes too; its mark skips the relay's row and waits for the relay.
        call = asyncio.create_task(direct_outbox.send(changed.outbox))
        await wait_for(
            lambda: store.pool.fetchval(
                """SELECT count(*) FROM pg_stat_activity
                    WHERE wait_event_type = 'Lock' AND query LIKE '%FOR KEY SHARE%'"""
            ),
            timeout=10,
            message="the call waits for the relay",
        )
        assert not call.done()
        await store.published_in(relay, held)
        await transaction.commit()

    replied = await asyncio.wait_for(call, timeout=10)
    assert replied is not None
    assert replied.state is TaskState.QUEUED, "the reply is the task as the relay queued it"
    assert await store.outbox_size() == 0
    assert await dispatches_of(admin_nats, changed.task.task_id, first_seq) == 1


async def test_the_queue_bound_refuses_without_blocking_but_repeats_still_answer(
    mesh_settings: MeshSettings, store: TaskStore
) -> None:
    settings = TaskSettings(queue_bound=3)
    async with ledger_via(mesh_settings, store, mesh_settings.nats.port, settings) as (
        ledger,
        _,
        _nc,
    ):
        first, _ = await ledger.create(new_task(key="k1"))
        for _ in range(2):
            await ledger.create(new_task())

        with pytest.raises(QueueFullError):
            await ledger.create(new_task())
        again, created = await ledger.create(new_task(key="k1"))
        assert not created
        assert again.task_id == first.task_id

        await ledger.cancel(first.task_id, owner_id=None, reason="room")
        freed, created = await ledger.create(new_task())
        assert created
        assert freed.state is TaskState.QUEUED


@pytest.mark.parametrize("margin", [None, 10])
async def test_concurrent_creates_never_exceed_the_queue_bound(
    store: TaskStore, margin: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A count in each transaction cannot see the inserts of the others. Far from the bound
    # (more than `margin` below it) creates run side by side, near it one at a time: as many
    # are stored as the bound allows, not one more. The store's pool runs 4 at once.
    if margin is not None:
        monkeypatch.setattr(store_module, "QUEUE_BOUND_MARGIN", margin)
    bound = 50

    async def create() -> bool:
        try:
            await store.create(new_task(), queue_bound=bound, dispatch=DISPATCH)
        except QueueFullError:
            return False
        return True

    outcomes = await asyncio.gather(*(create() for _ in range(80)))

    assert outcomes.count(True) == bound
    assert await store.pool.fetchval("SELECT count(*) FROM tasks") == bound


async def test_a_task_cancelled_before_its_dispatch_went_out_is_never_dispatched(
    mesh_settings: MeshSettings, admin_nats: Client, store: TaskStore
) -> None:
    settings = TaskSettings(relay_interval_seconds=60.0)
    proxy = CuttableProxy(mesh_settings.nats.port)
    await proxy.start()
    first_seq = await next_dispatch_seq(admin_nats)
    async with ledger_via(mesh_settings, store, proxy.port, settings) as (ledger, _, nc):
        await proxy.cut()
        await wait_for(lambda: not nc.is_connected, timeout=10, message="NATS gone")
        task, _ = await ledger.create(new_task())
        cancelled = await ledger.cancel(task.task_id, owner_id="owner-1", reason="no")
        assert cancelled is not None
        assert cancelled.state is TaskState.CANCELLED
        assert await store.outbox_size() == 2, "the dispatch and the cancel_requested report"

        await proxy.start()

        async def empty() -> bool:
            return await store.outbox_size() == 0

        await wait_for(empty, timeout=15, message="the relay emptied the outbox")
    assert await dispatches_of(admin_nats, task.task_id, first_seq) == 0
    await proxy.cut()


async def test_a_mark_leaves_rows_a_relay_holds_to_it_instead_of_waiting(
    store: TaskStore,
) -> None:
    # A call marks its rows (tasks locked in id order, then the rows) while a relay holds some
    # of them and waits for their tasks: the mark skips the relay's rows, so neither waits on
    # the other (before, PostgreSQL broke such circles as deadlocks, a second later).
    first, _ = await store.create(new_task(), queue_bound=100, dispatch=DISPATCH)
    second, _ = await store.create(new_task(), queue_bound=100, dispatch=DISPATCH)
    async with store.pool.acquire() as relay, relay.transaction():
        held = await store.outbox_batch(relay, 100)
        assert [item.task_id for item in held] == [first.task.task_id, second.task.task_id]

        async with asyncio.timeout(5):
            marked = await store.published_many([*first.outbox, *second.outbox])

        assert marked == {}, "every row is the relay's"
        changed = await store.published_in(relay, held)
    assert {task.state for task in changed.values()} == {TaskState.QUEUED}
    assert await store.outbox_size() == 0


async def test_a_sweep_leaves_rows_whose_calls_are_still_publishing_them(
    store: TaskStore,
) -> None:
    await store.create(new_task(), queue_bound=100, dispatch=DISPATCH)
    async with store.pool.acquire() as relay, relay.transaction():
        assert await store.outbox_batch(relay, 100, settled_seconds=60.0) == []
        assert len(await store.outbox_batch(relay, 100)) == 1
