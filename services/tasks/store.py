"""Tasks, attempts and the outbox in PostgreSQL: every SQL statement of the service.

The pool's connections run with ``search_path`` set to the service's schema (``tasks``; a test
may use another), so the statements name tables without it. Every change of a task happens in
one transaction with the outbox rows that announce it (a dispatch, a report, a dead letter to
delete): a task is never stored without the message that queues it, and the message is
published only after the change committed. Changes that depend on a task's state lock its row
first (``SELECT ... FOR UPDATE``), so reports, cancellations and re-queues of one task apply one
after the other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from sutazai.runtime.migrations import Connection, migrate
from sutazai.services.tasks.domain import Cursor, ResourceNeed, TaskState, Verdict
from sutazai.services.tasks.errors import (
    NotDeadLetteredError,
    QueueFullError,
    TaskFinishedError,
    TasksError,
)
from sutazai.services.tasks.records import (
    Changed,
    Message,
    NewTask,
    OutboxItem,
    Report,
    StoredAttempt,
    StoredTask,
)
from sutazai.services.tasks.transitions import Batch, settle

SCHEMA = "tasks"
MIGRATIONS = "sutazai.services.tasks.migrations"
_TASK_COLUMNS = (
    "id, owner_id, type, payload, priority, required_capabilities, resource_types, "
    "resource_amounts, timeout_seconds, idempotency_key, state, waiting_reason, attempt, "
    "max_attempts, attempt_allowance, agent_id, progress, progress_message, result, error, "
    "dead_lettered, dead_letter_sequence, created_at, queued_at, started_at, finished_at, "
    "updated_at, version"
)
_TASK = f"SELECT {_TASK_COLUMNS} FROM tasks"  # noqa: S608 - constant column list
_ATTEMPT_COLUMNS = "number, agent_id, state, started_at, finished_at, error"
_OUTBOX_COLUMNS = "seq, task_id, kind, attempt, subject, msg_id, body, dead_letter_sequence"
_DELETE_PUBLISHED = """DELETE FROM outbox WHERE seq IN (
        SELECT seq FROM outbox WHERE {} FOR UPDATE SKIP LOCKED)
    RETURNING seq, task_id, kind, attempt"""
"""Published rows gone (those the condition names), except those a relay holds (it deletes them
itself)."""
_CUSTOM_PLANS = "SET LOCAL plan_cache_mode = auto"
"""A listing's plan depends on its values (the index for a rare state or type): see
:func:`session_settings`."""
_FIRST_DISPATCH = """tasks.id = gone.task_id AND gone.kind = 'dispatch'
    AND tasks.state = 'pending' AND tasks.attempt = gone.attempt"""
_GONE_TASK = ", ".join(f"tasks.{c}" for c in _TASK_COLUMNS.split(", "))
_UNFINISHED = "SELECT count(*) FROM tasks WHERE state IN ('pending', 'queued', 'running')"
"""Literal states: the partial index ``tasks_unfinished`` answers the count."""
_QUEUE_LOCK = "hashtext('sutazai.tasks.queue_bound.' || current_schema())"
"""The advisory lock key of the queue bound (one per schema)."""
QUEUE_BOUND_MARGIN = 1000
"""Below ``queue_bound - QUEUE_BOUND_MARGIN`` unfinished tasks, creates run side by side; above,
one at a time. Exact as long as fewer creates than this are in flight at once (each instance
of the service runs at most its pool's size)."""


def session_settings(schema: str = SCHEMA) -> dict[str, str]:
    """The settings of every connection the store runs on (the pool's ``server_settings``).

    Statements name their tables without the schema: the path supplies it. Prepared statements
    run their generic plan: PostgreSQL otherwise plans a statement on a key array afresh for
    every execution whenever a plan for the array at hand looks cheaper than the generic one (a
    single id against its guess of ten), and that planning cost more CPU than the statements
    ran (PostgreSQL's CPU per no-op task at C=1: 12.5 ms with custom plans, 9 ms without;
    docs/benchmarks.md). Listings, whose best plan depends on the values, plan afresh
    (:meth:`TaskStore.page`).
    """
    return {"search_path": schema, "plan_cache_mode": "force_generic_plan"}


async def open_store(pool: asyncpg.Pool, schema: str = SCHEMA) -> TaskStore:
    """Apply the schema's migrations (idempotent) and return the store.

    ``pool``'s connections must run with :func:`session_settings`.
    """
    await migrate(pool, schema, MIGRATIONS)
    return TaskStore(pool)


class TaskStore:
    """Reads and writes tasks. Build it with :func:`open_store`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._one_at_a_time = asyncio.Lock()
        """Creates near the queue bound wait here, not on a pooled connection (where they would
        wait for the advisory lock while every other call waits for a connection)."""

    # Creating ---------------------------------------------------------------------------------

    async def create(
        self, new: NewTask, *, queue_bound: int, dispatch: Message
    ) -> tuple[Changed, bool]:
        """Store a task (PENDING, attempt 1) with its dispatch; ``(changed, created)``.

        A repeated idempotency key of the same owner returns the original task, unchanged
        (``created`` false, no outbox row), even when the queue is full.

        Raises:
            QueueFullError: ``queue_bound`` tasks are unfinished.

        """
        created = await self._create(new, queue_bound=queue_bound, dispatch=dispatch, alone=False)
        if created is None:
            # Near the bound: again, one at a time (which decides).
            async with self._one_at_a_time:
                created = await self._create(
                    new, queue_bound=queue_bound, dispatch=dispatch, alone=True
                )
        if created is None:
            raise QueueFullError(queue_bound)
        return created

    async def _create(
        self, new: NewTask, *, queue_bound: int, dispatch: Message, alone: bool
    ) -> tuple[Changed, bool] | None:
        """:meth:`create` in one transaction; ``None`` if it must be tried ``alone``.

        Counting unfinished tasks does not see the inserts of transactions still in flight, so
        concurrent creates near the bound would each see room for one more. Each create holds
        the queue's advisory lock: shared far from the bound (creates run side by side, and
        fewer than ``QUEUE_BOUND_MARGIN`` of them cannot overshoot it), exclusive near it (one
        at a time, after those in flight committed): the bound is never exceeded. Near the
        bound, the first try takes no lock (it would wait on a pooled connection): it refuses a
        full queue at once (a count can only miss tasks, never add some) or gives way.
        """
        key = new.idempotency_key or None
        near = queue_bound - QUEUE_BOUND_MARGIN
        async with self._pool.acquire() as conn, conn.transaction():
            if key is not None:
                existing = await _by_key(conn, new.owner_id, key)
                if existing is not None:
                    return Changed(existing, []), False
            if alone:
                await conn.execute(f"SELECT pg_advisory_xact_lock({_QUEUE_LOCK})")
                unfinished = await conn.fetchval(_UNFINISHED)  # sees every earlier create
            else:
                # One statement: the count, and the shared lock only when far from the bound.
                # Its snapshot predates any wait for the lock; the few creates that can commit
                # meanwhile (one at a time) cannot carry a count that far to the bound.
                unfinished = await conn.fetchval(
                    f"""SELECT n, CASE WHEN n < $1
                                THEN pg_advisory_xact_lock_shared({_QUEUE_LOCK})::text END
                        FROM ({_UNFINISHED}) AS unfinished(n)""",  # noqa: S608 - constants
                    near,
                )
            if unfinished >= queue_bound:
                raise QueueFullError(queue_bound)
            if not alone and unfinished >= near:
                return None  # no lock taken: again, alone
            row = await conn.fetchrow(
                f"""INSERT INTO tasks (id, owner_id, type, payload, priority,
                        required_capabilities, resource_types, resource_amounts, timeout_seconds,
                        idempotency_key, state, attempt, max_attempts, attempt_allowance)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', 1, $11, $11)
                    ON CONFLICT (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL
                    DO NOTHING
                    RETURNING {_TASK_COLUMNS}""",  # noqa: S608 - constant column list
                new.task_id,
                new.owner_id,
                new.type,
                new.payload,
                new.priority,
                list(new.required_capabilities),
                [r.resource_type for r in new.resources],
                [r.amount for r in new.resources],
                new.timeout_seconds,
                key,
                new.max_attempts,
            )
            if row is None:  # a concurrent create with the same key won
                existing = await _by_key(conn, new.owner_id, key or "")
                if existing is not None:
                    return Changed(existing, []), False
            task = _task(_present(row))
            await conn.execute(
                "INSERT INTO attempts (task_id, number, state) VALUES ($1, 1, 'queued')",
                task.task_id,
            )
            item = await _enqueue(conn, task, dispatch)
            return Changed(task, [item]), True

    async def create_many(
        self, news: Sequence[NewTask], *, queue_bound: int, dispatch: Message
    ) -> list[Changed | QueueFullError]:
        """Store tasks without an idempotency key, each with its dispatch, in one transaction.

        What :meth:`create` does for one, for a batch (:mod:`.batch`): the queue bound admits
        the first that fit, in order; each of the rest gets a :class:`QueueFullError`.
        Statements run once per batch (rows pipelined), so the batch costs a handful of round
        trips and one commit, not one set per task.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            unfinished = await conn.fetchval(
                "SELECT count(*) FROM tasks WHERE state IN ('pending', 'queued', 'running')"
            )
            admitted = list(news[: max(0, queue_bound - unfinished)])
            results: list[Changed | QueueFullError] = []
            if admitted:
                rows = await conn.fetchmany(
                    f"""INSERT INTO tasks (id, owner_id, type, payload, priority,
                            required_capabilities, resource_types, resource_amounts,
                            timeout_seconds, state, attempt, max_attempts, attempt_allowance)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 1, $10, $10)
                        RETURNING {_TASK_COLUMNS}""",  # noqa: S608 - constant column list
                    [
                        (
                            new.task_id,
                            new.owner_id,
                            new.type,
                            new.payload,
                            new.priority,
                            list(new.required_capabilities),
                            [r.resource_type for r in new.resources],
                            [r.amount for r in new.resources],
                            new.timeout_seconds,
                            new.max_attempts,
                        )
                        for new in admitted
                    ],
                )
                tasks = [_task(row) for row in rows]
                await conn.executemany(
                    "INSERT INTO attempts (task_id, number, state) VALUES ($1, 1, 'queued')",
                    [(task.task_id,) for task in tasks],
                )
                items = await _enqueue_many(conn, tasks, dispatch)
                results.extend(Changed(t, [i]) for t, i in zip(tasks, items, strict=True))
            results.extend(QueueFullError(queue_bound) for _ in news[len(admitted) :])
            return results

    # Reading ----------------------------------------------------------------------------------

    async def get(self, task_id: uuid.UUID) -> StoredTask | None:
        """The task with this id, or ``None``."""
        row = await self._pool.fetchrow(f"{_TASK} WHERE id = $1", task_id)
        return None if row is None else _task(row)

    async def many(self, task_ids: Sequence[uuid.UUID]) -> list[StoredTask]:
        """The tasks of these ids that exist (any order)."""
        rows = await self._pool.fetch(f"{_TASK} WHERE id = ANY($1::uuid[])", list(task_ids))
        return [_task(r) for r in rows]

    async def many_matching(
        self,
        task_ids: Sequence[uuid.UUID],
        *,
        owner_id: str | None,
        states: Sequence[TaskState],
        task_type: str,
        also: Sequence[uuid.UUID] = (),
    ) -> list[StoredTask]:
        """The tasks of these ids that match a watch's filter, plus those of ``also`` (any state).

        ``owner_id`` ``None`` means everyone's; empty ``states`` or ``task_type`` match all.
        Filtering here spares a watcher the rows it would drop (most changes of most tasks).
        """
        rows = await self._pool.fetch(
            f"""{_TASK} WHERE id = ANY($1::uuid[]) AND ($2::text IS NULL OR owner_id = $2)
                AND ((cardinality($3::text[]) = 0 OR state = ANY($3::text[]))
                     AND ($4 = '' OR type = $4)
                     OR id = ANY($5::uuid[]))""",
            list(task_ids),
            owner_id,
            [state.value for state in states],
            task_type,
            list(also),
        )
        return [_task(r) for r in rows]

    async def attempts(self, task_id: uuid.UUID) -> list[StoredAttempt]:
        """Every attempt of a task, oldest first."""
        rows = await self._pool.fetch(
            f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE task_id = $1 ORDER BY number",  # noqa: S608
            task_id,
        )
        return [_attempt(row) for row in rows]

    async def page(
        self,
        *,
        owner_id: str | None,
        states: Sequence[TaskState],
        task_type: str,
        agent_id: str,
        after: Cursor | None,
        limit: int,
    ) -> list[StoredTask]:
        """Up to ``limit`` tasks matching the filters, newest first, after ``after``."""
        conditions: list[str] = []
        arguments: list[object] = []

        def where(condition: str, value: object) -> None:
            arguments.append(value)
            conditions.append(condition.format(f"${len(arguments)}"))

        if owner_id is not None:
            where("owner_id = {}", owner_id)
        if states:
            where("state = ANY({}::text[])", [s.value for s in states])
        if task_type:
            where("type = {}", task_type)
        if agent_id:
            where("agent_id = {}", agent_id)
        if after is not None:
            arguments.extend([after.at, after.task_id])
            n = len(arguments)
            conditions.append(f"(created_at, id) < (${n - 1}, ${n})")
        arguments.append(limit)
        clause = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_CUSTOM_PLANS)
            rows = await conn.fetch(
                f"{_TASK} {clause} ORDER BY created_at DESC, id DESC LIMIT ${len(arguments)}",
                *arguments,
            )
        return [_task(r) for r in rows]

    async def changed_since(
        self, since: datetime, *, owner_id: str | None, limit: int
    ) -> list[StoredTask]:
        """Tasks (of ``owner_id``, or anyone's) changed at or after ``since``, oldest first."""
        if owner_id is None:
            rows = await self._pool.fetch(
                f"{_TASK} WHERE updated_at >= $1 ORDER BY updated_at LIMIT $2", since, limit
            )
        else:
            rows = await self._pool.fetch(
                f"{_TASK} WHERE updated_at >= $1 AND owner_id = $2 ORDER BY updated_at LIMIT $3",
                since,
                owner_id,
                limit,
            )
        return [_task(r) for r in rows]

    async def dead_letters(self, *, after: Cursor | None, limit: int) -> list[StoredTask]:
        """Up to ``limit`` dead-lettered tasks, newest first (by when they were dead-lettered)."""
        if after is None:
            rows = await self._pool.fetch(
                f"{_TASK} WHERE dead_lettered ORDER BY finished_at DESC, id DESC LIMIT $1", limit
            )
        else:
            rows = await self._pool.fetch(
                f"{_TASK} WHERE dead_lettered AND (finished_at, id) < ($1, $2) "
                "ORDER BY finished_at DESC, id DESC LIMIT $3",
                after.at,
                after.task_id,
                limit,
            )
        return [_task(r) for r in rows]

    # Changing ---------------------------------------------------------------------------------

    async def cancel(
        self, task_id: uuid.UUID, *, owner_id: str | None, error: bytes, report: Message
    ) -> Changed | None:
        """Record CANCELLED and the ``cancel_requested`` report; ``None`` if no such task.

        ``owner_id`` set: only that owner's task (another's is ``None``, like a missing one).

        Raises:
            TaskFinishedError: the task already finished.

        """
        async with self._pool.acquire() as conn, conn.transaction():
            task = await _locked(conn, task_id)
            if task is None or (owner_id is not None and task.owner_id != owner_id):
                return None
            if task.state.final:
                raise TaskFinishedError(task_id, task.state)
            # An attempt no agent took yet ends here; a running one ends when its agent
            # reports that it stopped.
            await conn.execute(
                "UPDATE attempts SET state = 'cancelled', finished_at = now() "
                "WHERE task_id = $1 AND number = $2 AND state = 'queued'",
                task_id,
                task.attempt,
            )
            row = await conn.fetchrow(
                f"""UPDATE tasks SET state = 'cancelled', error = $2, finished_at = now(),
                        waiting_reason = ''
                    WHERE id = $1 RETURNING {_TASK_COLUMNS}""",  # noqa: S608
                task_id,
                error,
            )
            changed = _task(_present(row))
            return Changed(changed, [await _enqueue(conn, changed, report)])

    async def requeue(self, task_id: uuid.UUID, *, dispatch: Message) -> Changed | None:
        """Queue a dead letter again with a fresh allowance of attempts; ``None`` if missing.

        The next attempt is dispatched through the outbox, and the dead-letter stream's message
        deleted through it too.

        Raises:
            NotDeadLetteredError: the task is not in the dead-letter list.

        """
        async with self._pool.acquire() as conn, conn.transaction():
            task = await _locked(conn, task_id)
            if task is None:
                return None
            if not (task.dead_lettered and task.state is TaskState.FAILED):
                raise NotDeadLetteredError(task_id)
            row = await conn.fetchrow(
                f"""UPDATE tasks SET state = 'pending', attempt = attempt + 1,
                        max_attempts = attempt + attempt_allowance, dead_lettered = false,
                        dead_letter_sequence = NULL, error = NULL, result = NULL,
                        finished_at = NULL, started_at = NULL, queued_at = NULL,
                        waiting_reason = '', agent_id = '', progress = 0, progress_message = ''
                    WHERE id = $1 RETURNING {_TASK_COLUMNS}""",  # noqa: S608
                task_id,
            )
            changed = _task(_present(row))
            await conn.execute(
                "INSERT INTO attempts (task_id, number, state) VALUES ($1, $2, 'queued')",
                task_id,
                changed.attempt,
            )
            items = [await _enqueue(conn, changed, dispatch)]
            if task.dead_letter_sequence is not None:
                items.append(
                    await _outbox_row(
                        conn, changed, "delete_dead", "", "", b"", task.dead_letter_sequence
                    )
                )
            return Changed(changed, items)

    async def apply(self, report: Report) -> tuple[Verdict, TaskState | None]:
        """Apply one report (:meth:`apply_many`): its verdict, the task's state if changed."""
        return (await self.apply_many([[report]]))[0][0]

    async def apply_many(
        self, groups: Sequence[Sequence[Report]]
    ) -> list[list[tuple[Verdict, TaskState | None]]]:
        """Apply batches of reports, each group one task's in stream order, in one transaction.

        Every task of the batch is locked first (in id order, so two batches never wait on each
        other in a circle) and read with its attempts; each report is then judged against what
        the reports before it left (:mod:`.transitions`). An agent's report that overtook its
        attempt's ``assigned`` within the group is judged once more after the rest of the
        group. What the batch changed is written at the end, a statement per table for the
        whole batch. One commit: nothing is applied unless everything is.

        Returns each report's verdict and, if it changed the task or its attempt, the task's
        state after it, in the order given.

        Raises:
            asyncpg.PostgresError, asyncpg.InterfaceError, OSError: the batch was rolled back.

        """
        ids = sorted({report.task_id for group in groups for report in group})
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT {_TASK_COLUMNS}, now() AS now FROM tasks "  # noqa: S608
                "WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
                ids,
            )
            batch = Batch(
                now=rows[0]["now"] if rows else datetime.now(UTC),
                tasks={row["id"]: _task(row) for row in rows},
            )
            if rows:
                for row in await conn.fetch(
                    f"SELECT task_id, {_ATTEMPT_COLUMNS} FROM attempts "  # noqa: S608
                    "WHERE task_id = ANY($1::uuid[])",
                    list(batch.tasks),
                ):
                    batch.attempts.setdefault(row["task_id"], {})[row["number"]] = _attempt(row)
            results: list[list[tuple[Verdict, TaskState | None]]] = []
            for group in groups:
                outcomes = [settle(batch, report) for report in group]
                for index, (verdict, _) in enumerate(outcomes):
                    if verdict is Verdict.LATER:
                        outcomes[index] = settle(batch, group[index])
                results.append(outcomes)
            await _write_attempts(conn, batch)
            await _write_tasks(conn, batch)
            return results

    # The outbox -------------------------------------------------------------------------------

    async def published(self, item: OutboxItem) -> StoredTask | None:
        """JetStream acknowledged ``item``: delete it; a first dispatch makes its task QUEUED.

        Returns the task if it changed. A row a relay holds at the moment is left to it (it
        published the row too and deletes it): a mark never waits for a relay, so the two never
        wait on each other in a circle.
        """
        row = await self._pool.fetchrow(
            f"""WITH gone AS ({_DELETE_PUBLISHED.format("seq = $1")})
                UPDATE tasks SET state = 'queued', queued_at = now()
                FROM gone
                WHERE {_FIRST_DISPATCH}
                RETURNING {_GONE_TASK}""",  # noqa: S608
            item.seq,
        )
        return None if row is None else _task(row)

    async def after_relay(self, item: OutboxItem) -> StoredTask | None:
        """``item``'s task once a relay holding ``item`` (its mark skipped it) has let it go.

        The wait holds no lock of its own while it waits, so it joins no circle.
        """
        await self._pool.execute("SELECT 1 FROM outbox WHERE seq = $1 FOR KEY SHARE", item.seq)
        return await self.get(item.task_id)

    async def published_many(self, items: Sequence[OutboxItem]) -> dict[int, StoredTask]:
        """:meth:`published` for a batch, in one transaction: the tasks that changed, by row."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await self.published_in(conn, items)

    async def published_in(
        self, conn: Connection, items: Sequence[OutboxItem]
    ) -> dict[int, StoredTask]:
        """:meth:`published_many` in ``conn``'s transaction (a relay's, holding the rows).

        The tasks are locked in id order first, as a batch of reports locks them
        (:meth:`apply_many`), so the two never wait on each other in a circle.
        """
        ids = sorted({item.task_id for item in items})
        await conn.execute(
            "SELECT 1 FROM tasks WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE", ids
        )
        rows = await conn.fetch(
            f"""WITH gone AS ({_DELETE_PUBLISHED.format("seq = ANY($1::bigint[])")})
                UPDATE tasks SET state = 'queued', queued_at = now()
                FROM gone
                WHERE {_FIRST_DISPATCH}
                RETURNING gone.seq AS outbox_seq, {_GONE_TASK}""",  # noqa: S608
            [item.seq for item in items],
        )
        return {row["outbox_seq"]: _task(row) for row in rows}

    async def outbox_batch(
        self, conn: Connection, limit: int, *, settled_seconds: float = 0.0
    ) -> list[OutboxItem]:
        """The oldest rows nobody else is publishing, locked for ``conn``'s transaction.

        ``settled_seconds``: only rows at least that old (a sweep leaves the rows whose calls
        are still publishing them alone). Dispatches of tasks that no longer wait for them
        (cancelled while PENDING, say) are deleted instead of returned.
        """
        rows = await conn.fetch(
            f"""SELECT {", ".join(f"o.{c}" for c in _OUTBOX_COLUMNS.split(", "))},
                       t.state AS task_state, t.attempt AS task_attempt
                FROM outbox o JOIN tasks t ON t.id = o.task_id
                WHERE o.created_at <= now() - make_interval(secs => $2)
                ORDER BY o.seq LIMIT $1 FOR UPDATE OF o SKIP LOCKED""",  # noqa: S608
            limit,
            settled_seconds,
        )
        items, stale = [], []
        for row in rows:
            if row["kind"] == "dispatch" and (
                row["task_state"] != TaskState.PENDING or row["task_attempt"] != row["attempt"]
            ):
                stale.append(row["seq"])
            else:
                items.append(_outbox(row))
        if stale:
            await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", stale)
        return items

    async def outbox_size(self) -> int:
        """Rows waiting in the outbox."""
        return int(await self._pool.fetchval("SELECT count(*) FROM outbox"))

    @property
    def pool(self) -> asyncpg.Pool:
        """The pool (the relay takes a connection of its own for its transaction)."""
        return self._pool


_REPORTED_COLUMNS = (
    ("state", "text"),
    ("waiting_reason", "text"),
    ("attempt", "integer"),
    ("max_attempts", "integer"),
    ("agent_id", "text"),
    ("progress", "double precision"),
    ("progress_message", "text"),
    ("result", "bytea"),
    ("error", "bytea"),
    ("dead_lettered", "boolean"),
    ("dead_letter_sequence", "bigint"),
    ("queued_at", "timestamptz"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
)
"""The columns of ``tasks`` a report may change, with their types."""
_REPORTED_ARRAYS = ", ".join(f"${i}::{t}[]" for i, (_, t) in enumerate(_REPORTED_COLUMNS, 2))
_WRITE_TASKS = f"""UPDATE tasks SET {", ".join(f"{c} = u.{c}" for c, _ in _REPORTED_COLUMNS)}
    FROM unnest($1::uuid[], {_REPORTED_ARRAYS})
        AS u(id, {", ".join(c for c, _ in _REPORTED_COLUMNS)})
    WHERE tasks.id = u.id"""  # noqa: S608 - constant column list
_WRITE_ATTEMPTS = f"""INSERT INTO attempts (task_id, {_ATTEMPT_COLUMNS})
    SELECT * FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::text[], $5::timestamptz[],
                         $6::timestamptz[], $7::bytea[])
    ON CONFLICT (task_id, number) DO UPDATE SET agent_id = excluded.agent_id,
        state = excluded.state, started_at = excluded.started_at,
        finished_at = excluded.finished_at, error = excluded.error"""  # noqa: S608


async def _write_tasks(conn: Connection, batch: Batch) -> None:
    """Write the tasks ``batch`` changed, in one statement (each row's version grows once)."""
    if not batch.changed_tasks:
        return
    tasks = [batch.tasks[task_id] for task_id in sorted(batch.changed_tasks)]
    await conn.execute(
        _WRITE_TASKS,
        [t.task_id for t in tasks],
        [t.state.value for t in tasks],
        [t.waiting_reason for t in tasks],
        [t.attempt for t in tasks],
        [t.max_attempts for t in tasks],
        [t.agent_id for t in tasks],
        [t.progress for t in tasks],
        [t.progress_message for t in tasks],
        [t.result for t in tasks],
        [t.error for t in tasks],
        [t.dead_lettered for t in tasks],
        [t.dead_letter_sequence for t in tasks],
        [t.queued_at for t in tasks],
        [t.started_at for t in tasks],
        [t.finished_at for t in tasks],
    )


async def _write_attempts(conn: Connection, batch: Batch) -> None:
    """Write (insert or update) the attempts ``batch`` changed, in one statement."""
    if not batch.changed_attempts:
        return
    keys = sorted(batch.changed_attempts)
    attempts = [batch.attempts[task_id][number] for task_id, number in keys]
    await conn.execute(
        _WRITE_ATTEMPTS,
        [task_id for task_id, _ in keys],
        [a.number for a in attempts],
        [a.agent_id for a in attempts],
        [a.state.value for a in attempts],
        [a.started_at for a in attempts],
        [a.finished_at for a in attempts],
        [a.error for a in attempts],
    )


# Helpers ----------------------------------------------------------------------------------------


async def _by_key(conn: Connection, owner_id: str, key: str) -> StoredTask | None:
    row = await conn.fetchrow(
        f"{_TASK} WHERE owner_id = $1 AND idempotency_key = $2", owner_id, key
    )
    return None if row is None else _task(row)


async def _locked(conn: Connection, task_id: uuid.UUID) -> StoredTask | None:
    row = await conn.fetchrow(f"{_TASK} WHERE id = $1 FOR UPDATE", task_id)
    return None if row is None else _task(row)


async def _enqueue(conn: Connection, task: StoredTask, message: Message) -> OutboxItem:
    return await _outbox_row(
        conn,
        task,
        message.kind,
        message.subject(task),
        message.msg_id(task),
        message.body(task),
        None,
    )


async def _enqueue_many(
    conn: Connection, tasks: Sequence[StoredTask], message: Message
) -> list[OutboxItem]:
    rows = await conn.fetchmany(
        f"""INSERT INTO outbox (task_id, kind, attempt, subject, msg_id, body)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_OUTBOX_COLUMNS}""",  # noqa: S608
        [
            (
                task.task_id,
                message.kind,
                task.attempt,
                message.subject(task),
                message.msg_id(task),
                message.body(task),
            )
            for task in tasks
        ],
    )
    return [_outbox(row) for row in rows]


async def _outbox_row(
    conn: Connection,
    task: StoredTask,
    kind: str,
    subject: str,
    msg_id: str,
    body: bytes,
    dead_letter_sequence: int | None,
) -> OutboxItem:
    row = await conn.fetchrow(
        f"""INSERT INTO outbox (task_id, kind, attempt, subject, msg_id, body,
                dead_letter_sequence)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_OUTBOX_COLUMNS}""",  # noqa: S608
        task.task_id,
        kind,
        task.attempt,
        subject,
        msg_id,
        body,
        dead_letter_sequence,
    )
    return _outbox(_present(row))


def _present(row: asyncpg.Record | None) -> asyncpg.Record:
    """The row a statement on a locked (or just inserted) row returned."""
    if row is None:
        raise TasksError("a statement on a locked task returned no row")
    return row


def _outbox(row: asyncpg.Record) -> OutboxItem:
    return OutboxItem(
        seq=row["seq"],
        task_id=row["task_id"],
        kind=row["kind"],
        attempt=row["attempt"],
        subject=row["subject"],
        msg_id=row["msg_id"],
        body=bytes(row["body"]),
        dead_letter_sequence=row["dead_letter_sequence"],
    )


def _task(row: asyncpg.Record) -> StoredTask:
    return StoredTask(
        task_id=row["id"],
        owner_id=row["owner_id"],
        type=row["type"],
        payload=bytes(row["payload"]),
        priority=row["priority"],
        required_capabilities=tuple(row["required_capabilities"]),
        resources=tuple(
            ResourceNeed(t, a)
            for t, a in zip(row["resource_types"], row["resource_amounts"], strict=True)
        ),
        timeout_seconds=row["timeout_seconds"],
        idempotency_key=row["idempotency_key"] or "",
        state=TaskState(row["state"]),
        waiting_reason=row["waiting_reason"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        attempt_allowance=row["attempt_allowance"],
        agent_id=row["agent_id"],
        progress=row["progress"],
        progress_message=row["progress_message"],
        result=None if row["result"] is None else bytes(row["result"]),
        error=None if row["error"] is None else bytes(row["error"]),
        dead_lettered=row["dead_lettered"],
        dead_letter_sequence=row["dead_letter_sequence"],
        created_at=row["created_at"],
        queued_at=row["queued_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


def _attempt(row: asyncpg.Record) -> StoredAttempt:
    return StoredAttempt(
        number=row["number"],
        agent_id=row["agent_id"],
        state=TaskState(row["state"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=None if row["error"] is None else bytes(row["error"]),
    )
