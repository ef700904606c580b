"""The audit log: who did what, when, and how it ended, in PostgreSQL (schema ``audit``).

On the embedded server the supervisor owns the schema and applies its migrations
(:data:`MIGRATIONS`); every service may append rows, none may change or delete them, and only
the auth service may read them. Each new row is announced on the PostgreSQL channel
:data:`CHANNEL` (payload: its event id), so readers can wait for events instead of polling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

SCHEMA = "audit"
MIGRATIONS = "sutazai.runtime.sql.audit"
OK = "ok"
CHANNEL = "sutazai_audit"
"""``LISTEN`` channel of new events (migration ``0002``); a payload is a hint, never trusted."""
_COLUMNS = "event_id, occurred_at, actor, action, target, outcome, detail, request_id"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One recorded action."""

    action: str
    """The full RPC name, or a domain action such as ``auth.login``."""
    outcome: str
    """``ok`` or the gRPC status code name of the failure."""
    actor: str = ""
    target: str = ""
    detail: str = ""
    request_id: str = ""
    event_id: int = 0
    occurred_at: datetime | None = None


class AuditLog:
    """Appends to and pages through the audit log (whose schema the supervisor migrated)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, event: AuditEvent) -> None:
        """Append one event."""
        await self._pool.execute(
            "INSERT INTO audit.events (actor, action, target, outcome, detail, request_id) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            event.actor,
            event.action,
            event.target,
            event.outcome,
            event.detail,
            event.request_id,
        )

    async def page(
        self,
        *,
        limit: int,
        before: int | None = None,
        actor: str = "",
        action: str = "",
    ) -> list[AuditEvent]:
        """Events newest first, older than ``before`` (an event id) when given.

        Only a role granted ``SELECT`` (the auth service's) may page; others get
        ``asyncpg.InsufficientPrivilegeError``.
        """
        rows = await self._pool.fetch(
            f"""SELECT {_COLUMNS}
               FROM audit.events
               WHERE ($1::bigint IS NULL OR event_id < $1)
                 AND ($2 = '' OR actor = $2)
                 AND ($3 = '' OR action = $3)
               ORDER BY event_id DESC
               LIMIT $4""",  # noqa: S608 - a constant column list
            before,
            actor,
            action,
            limit,
        )
        return [_event(r) for r in rows]

    async def after(
        self,
        after: int,
        *,
        limit: int,
        actor: str = "",
        action: str = "",
        also: Sequence[int] = (),
    ) -> list[AuditEvent]:
        """Events with an id above ``after`` (or in ``also``), oldest first.

        ``also`` re-reads ids at or below ``after`` that a reader has not seen yet (an insert
        that committed after a later one).
        """
        rows = await self._pool.fetch(
            f"""SELECT {_COLUMNS}
               FROM audit.events
               WHERE (event_id > $1 OR event_id = ANY($2::bigint[]))
                 AND ($3 = '' OR actor = $3)
                 AND ($4 = '' OR action = $4)
               ORDER BY event_id
               LIMIT $5""",  # noqa: S608 - a constant column list
            after,
            list(also),
            actor,
            action,
            limit,
        )
        return [_event(r) for r in rows]

    async def newest_after(
        self, after: int, *, limit: int, actor: str = "", action: str = ""
    ) -> list[AuditEvent]:
        """The newest ``limit`` events with an id above ``after``, oldest first."""
        newest = await self.page(limit=limit, actor=actor, action=action)
        return [e for e in reversed(newest) if e.event_id > after]

    async def last_id(self) -> int:
        """The largest event id so far (0 for an empty log)."""
        value = await self._pool.fetchval("SELECT coalesce(max(event_id), 0) FROM audit.events")
        return int(value)


def _event(row: asyncpg.Record) -> AuditEvent:
    return AuditEvent(
        action=row["action"],
        outcome=row["outcome"],
        actor=row["actor"],
        target=row["target"],
        detail=row["detail"],
        request_id=row["request_id"],
        event_id=row["event_id"],
        occurred_at=row["occurred_at"],
    )
