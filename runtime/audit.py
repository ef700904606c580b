"""The audit log: who did what, when, and how it ended, in PostgreSQL (schema ``audit``).

On the embedded server the supervisor owns the schema and applies its migrations
(:data:`MIGRATIONS`); every service may append rows, none may change or delete them, and only
the auth service may read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

SCHEMA = "audit"
MIGRATIONS = "sutazai.runtime.sql.audit"
OK = "ok"


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
            """SELECT event_id, occurred_at, actor, action, target, outcome, detail, request_id
               FROM audit.events
               WHERE ($1::bigint IS NULL OR event_id < $1)
                 AND ($2 = '' OR actor = $2)
                 AND ($3 = '' OR action = $3)
               ORDER BY event_id DESC
               LIMIT $4""",
            before,
            actor,
            action,
            limit,
        )
        return [
            AuditEvent(
                action=r["action"],
                outcome=r["outcome"],
                actor=r["actor"],
                target=r["target"],
                detail=r["detail"],
                request_id=r["request_id"],
                event_id=r["event_id"],
                occurred_at=r["occurred_at"],
            )
            for r in rows
        ]
