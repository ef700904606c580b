"""Policies and leases in PostgreSQL: every SQL statement of the service.

The tables live in the service's schema (``resources``; a test may use another), which the
pool's ``search_path`` names, so the statements are unqualified.

Correct under concurrent requests from any number of instances, without a lock in any process:
an allocation is one transaction that first locks its resource's policy row
(``SELECT ... FOR UPDATE``), which serializes the allocations of that resource everywhere; then,
under that lock, it deletes the resource's expired leases, reads the live ones, lets
:func:`~sutazai.services.resources.domain.decide` judge, deletes whatever it pre-empts and
inserts the new lease. A transaction locks at most one policy row, always before any lease row,
and the only other lease-row writers (a release, the sweeper) lock one lease row, or take the
policy row first too: there is no lock cycle, hence no deadlock. Time is the database's clock,
the one every instance shares.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from sutazai.runtime import postgres
from sutazai.runtime.migrations import Connection, migrate
from sutazai.services.resources.domain import (
    Denial,
    Grant,
    Lease,
    LeaseRequest,
    Policy,
    ResourceKind,
    decide,
)
from sutazai.services.resources.errors import ResourcesError

SCHEMA = "resources"
MIGRATIONS = "sutazai.services.resources.migrations"
_LEASE = "id, holder, resource_type, amount, priority, task_id, created_at, expires_at"
_POLICY = (
    "resource_type, max_total_percent, max_per_holder_percent, oversubscription_ratio, exclusive"
)


async def open_pool(dsn: str, schema: str = SCHEMA, *, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections resolve unqualified names in ``schema`` (then ``audit``, ...)."""
    return await postgres.open_pool(
        dsn, min_size=1, max_size=max_size, server_settings={"search_path": schema}
    )


async def open_store(pool: asyncpg.Pool, schema: str = SCHEMA) -> LeaseStore:
    """Apply the schema's migrations (idempotent) and return the store.

    Raises:
        ResourcesError: the pool's connections do not resolve names in ``schema`` (see
            :func:`open_pool`).

    """
    await migrate(pool, schema, MIGRATIONS)
    current = await pool.fetchval("SELECT current_schema()")
    if current != schema:
        raise ResourcesError(
            f"the pool's search_path resolves to {current!r}, not the schema {schema!r}"
        )
    return LeaseStore(pool)


@dataclass(frozen=True, slots=True)
class Allocated:
    """A granted lease, the leases it pre-empted, and how many expired ones it swept."""

    lease: Lease
    preempted: tuple[Lease, ...]
    expired: int


@dataclass(frozen=True, slots=True)
class Refused:
    """A denied request, and how many expired leases the attempt swept."""

    denial: Denial
    expired: int


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """A policy before and after a change."""

    before: Policy
    after: Policy


class LeaseStore:
    """Reads and writes policies and leases. Build it with :func:`open_store`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def policies(self) -> list[Policy]:
        """Every resource's policy, in the order of :class:`ResourceKind`."""
        rows = await self._pool.fetch(f"SELECT {_POLICY} FROM policies")  # noqa: S608
        found = {row["resource_type"]: _policy(row) for row in rows}
        return [found[kind.value] for kind in ResourceKind if kind.value in found]

    async def set_policy(self, policy: Policy, actor: str) -> PolicyChange:
        """Replace a resource's policy (under its row lock: between two allocations)."""
        async with self._pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(
                f"SELECT {_POLICY} FROM policies WHERE resource_type = $1 FOR UPDATE",  # noqa: S608
                policy.kind.value,
            )
            if before is None:
                raise ResourcesError(f"no policy row for {policy.kind.value}: migrations missing")
            after = await conn.fetchrow(
                f"""UPDATE policies SET max_total_percent = $2, max_per_holder_percent = $3,
                       oversubscription_ratio = $4, exclusive = $5,
                       updated_at = clock_timestamp(), updated_by = $6
                   WHERE resource_type = $1
                   RETURNING {_POLICY}""",  # noqa: S608 - a constant column list
                policy.kind.value,
                policy.max_total_percent,
                policy.max_per_holder_percent,
                policy.oversubscription_ratio,
                policy.exclusive,
                actor,
            )
        if after is None:
            raise ResourcesError(f"the policy row of {policy.kind.value} vanished")
        return PolicyChange(_policy(before), _policy(after))

    async def allocate(
        self, request: LeaseRequest, capacity: float, *, max_leases: int
    ) -> Allocated | Refused:
        """Grant ``request`` or refuse it, in one transaction under the resource's policy lock."""
        kind = request.kind.value
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_POLICY} FROM policies WHERE resource_type = $1 FOR UPDATE",  # noqa: S608
                kind,
            )
            if row is None:
                raise ResourcesError(f"no policy row for {kind}: migrations missing")
            policy = _policy(row)
            # Read after the lock is ours: the previous holder's lease is committed and visible.
            now: datetime = await conn.fetchval("SELECT clock_timestamp()")
            expired = await _delete_expired(conn, kind, now)
            rows = await conn.fetch(
                f"SELECT {_LEASE} FROM leases WHERE resource_type = $1 "  # noqa: S608
                "ORDER BY created_at, id",
                kind,
            )
            decision = decide(
                policy,
                capacity,
                [_lease(r) for r in rows],
                request,
                now=now,
                max_leases=max_leases,
            )
            if isinstance(decision, Denial):
                return Refused(decision, expired)
            preempted = await _preempt(conn, decision)
            lease_row = await conn.fetchrow(
                f"""INSERT INTO leases (id, holder, resource_type, amount, priority, task_id,
                                       created_at, expires_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                   RETURNING {_LEASE}""",  # noqa: S608 - a constant column list
                uuid.uuid4(),
                request.holder,
                kind,
                request.amount,
                request.priority,
                request.task_id,
                now,
                now + timedelta(seconds=request.duration_seconds),
            )
        if lease_row is None:  # INSERT ... RETURNING always returns the row
            raise ResourcesError("the new lease was not returned")
        return Allocated(_lease(lease_row), preempted, expired)

    async def release(self, allocation_id: uuid.UUID) -> Lease | None:
        """End a live lease; ``None`` if there is none with this id (or it has expired)."""
        row = await self._pool.fetchrow(
            f"DELETE FROM leases WHERE id = $1 AND expires_at > clock_timestamp() "  # noqa: S608
            f"RETURNING {_LEASE}",
            allocation_id,
        )
        return None if row is None else _lease(row)

    async def leases(self, kind: ResourceKind | None = None, holder: str = "") -> list[Lease]:
        """Live leases, oldest first, of one resource and/or one holder if given."""
        rows = await self._pool.fetch(
            f"""SELECT {_LEASE} FROM leases
               WHERE expires_at > clock_timestamp()
                 AND ($1::text IS NULL OR resource_type = $1)
                 AND ($2 = '' OR holder = $2)
               ORDER BY created_at, id""",  # noqa: S608 - a constant column list
            kind.value if kind else None,
            holder,
        )
        return [_lease(r) for r in rows]

    async def allocated(self) -> dict[ResourceKind, float]:
        """What live leases hold, per resource (absent: nothing)."""
        rows = await self._pool.fetch(
            "SELECT resource_type, sum(amount) AS held FROM leases "
            "WHERE expires_at > clock_timestamp() GROUP BY resource_type"
        )
        return {ResourceKind(r["resource_type"]): float(r["held"]) for r in rows}

    async def sweep(self) -> dict[ResourceKind, int]:
        """Delete expired leases, one resource at a time under its policy lock; counts per kind.

        A resource with nothing expired is not locked at all.
        """
        swept: dict[ResourceKind, int] = {}
        for kind in ResourceKind:
            stale = await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM leases "
                "WHERE resource_type = $1 AND expires_at <= clock_timestamp())",
                kind.value,
            )
            if not stale:
                continue
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "SELECT 1 FROM policies WHERE resource_type = $1 FOR UPDATE", kind.value
                )
                now = await conn.fetchval("SELECT clock_timestamp()")
                count = await _delete_expired(conn, kind.value, now)
            if count:
                swept[kind] = count
        return swept


async def _delete_expired(conn: Connection, kind: str, now: datetime) -> int:
    count = await conn.fetchval(
        "WITH gone AS (DELETE FROM leases WHERE resource_type = $1 AND expires_at <= $2 "
        "RETURNING 1) SELECT count(*) FROM gone",
        kind,
        now,
    )
    return int(count)


async def _preempt(conn: Connection, grant: Grant) -> tuple[Lease, ...]:
    """Delete the leases ``grant`` pre-empts; those a release ended meanwhile are left out."""
    if not grant.preempt:
        return ()
    rows = await conn.fetch(
        f"DELETE FROM leases WHERE id = ANY($1::uuid[]) RETURNING {_LEASE}",  # noqa: S608
        [lease.allocation_id for lease in grant.preempt],
    )
    gone = {row["id"] for row in rows}
    return tuple(lease for lease in grant.preempt if lease.allocation_id in gone)


def _policy(row: asyncpg.Record) -> Policy:
    return Policy(
        kind=ResourceKind(row["resource_type"]),
        max_total_percent=row["max_total_percent"],
        max_per_holder_percent=row["max_per_holder_percent"],
        oversubscription_ratio=row["oversubscription_ratio"],
        exclusive=row["exclusive"],
    )


def _lease(row: asyncpg.Record) -> Lease:
    return Lease(
        allocation_id=row["id"],
        holder=row["holder"],
        kind=ResourceKind(row["resource_type"]),
        amount=row["amount"],
        priority=row["priority"],
        task_id=row["task_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )
