"""What the mesh's health is, from probe outcomes: no I/O here.

Overall state follows the original health monitor: CRITICAL when something the mesh cannot work
without (PostgreSQL, Redis, NATS) is unhealthy, DEGRADED when anything else is, HEALTHY when all
are healthy, UNKNOWN before the first probe round.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sutazai.services.system.domain.fanout import Broadcast, Mailbox

CRITICAL_COMPONENTS = frozenset({"postgres", "redis", "nats"})


class Kind(enum.Enum):
    """What a component is."""

    INFRASTRUCTURE = "infrastructure"
    SERVICE_INSTANCE = "service_instance"


class Health(enum.Enum):
    """Outcome of a component's latest probe."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class Overall(enum.Enum):
    """Summary of the whole mesh."""

    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """The result of probing one component once."""

    name: str
    kind: Kind
    address: str
    healthy: bool
    latency_ms: float
    finished_at: datetime
    error: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """A component's current state and since when it has been in it."""

    name: str
    kind: Kind
    health: Health
    address: str
    latency_ms: float
    last_error: str
    since: datetime
    version: str


@dataclass(frozen=True, slots=True)
class MeshStatus:
    """The mesh's state after a probe round."""

    overall: Overall
    components: tuple[ComponentStatus, ...]
    checked_at: datetime | None


def overall_of(components: Iterable[ComponentStatus]) -> Overall:
    """Summarise component states (see module docstring)."""
    states = list(components)
    if not states:
        return Overall.UNKNOWN
    unhealthy = {c.name for c in states if c.health is Health.UNHEALTHY}
    if unhealthy & CRITICAL_COMPONENTS:
        return Overall.CRITICAL
    if unhealthy:
        return Overall.DEGRADED
    return Overall.HEALTHY


class StatusBoard:
    """The latest state of every component, updated one probe round at a time.

    Watchers :meth:`subscribe` to the rounds: each gets the latest round at once, then every
    round as it is applied, conflated (a watcher that falls behind skips to the newest).
    """

    def __init__(self) -> None:
        self._components: dict[str, ComponentStatus] = {}
        self._checked_at: datetime | None = None
        self._rounds: Broadcast[MeshStatus] = Broadcast()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Mailbox[MeshStatus]]:
        """Every round from now on (the latest one first), until the block ends."""
        with self._rounds.subscribe() as rounds:
            yield rounds

    @property
    def watchers(self) -> int:
        """How many subscriptions are open."""
        return self._rounds.subscribers

    def close(self) -> None:
        """End every subscription (the instance is shutting down)."""
        self._rounds.close()

    def apply_round(self, outcomes: Iterable[ProbeOutcome], finished_at: datetime) -> MeshStatus:
        """Record a full probe round; components absent from it are dropped (e.g. gone instances).

        ``since`` moves only when a component's health changes, so it says how long the
        current state has lasted.
        """
        updated: dict[str, ComponentStatus] = {}
        for outcome in outcomes:
            health = Health.HEALTHY if outcome.healthy else Health.UNHEALTHY
            previous = self._components.get(outcome.name)
            since = (
                previous.since
                if previous is not None and previous.health is health
                else outcome.finished_at
            )
            current = ComponentStatus(
                name=outcome.name,
                kind=outcome.kind,
                health=health,
                address=outcome.address,
                latency_ms=outcome.latency_ms,
                last_error=outcome.error,
                since=since,
                version=outcome.version,
            )
            updated[outcome.name] = current
        self._components = updated
        self._checked_at = finished_at
        status = self.snapshot()
        self._rounds.publish(status)
        return status

    def snapshot(self) -> MeshStatus:
        """The state after the latest round: infrastructure first, then instances by name."""
        ordered = sorted(
            self._components.values(),
            key=lambda c: (c.kind is not Kind.INFRASTRUCTURE, c.name),
        )
        return MeshStatus(overall_of(ordered), tuple(ordered), self._checked_at)
