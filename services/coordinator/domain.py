"""The coordinator's decisions, without I/O: which agent gets a task, in which order, when again.

* :class:`HoldingQueue`: dispatched tasks waiting for an agent, highest priority first, first
  in first out within a priority (by the task's ``created_at``, then arrival).
* :func:`eligible`: the agent instances that may take a task (online, offering its type and
  every required capability, with a free slot), and :func:`waiting_reason` when there is none;
  :func:`prefer_others` keeps a retry away from the agent it failed on, when it can.
* :class:`Chooser`: the four strategies (a true round-robin cursor, least loaded, capability
  match, the weighted score 0.4 x free capacity + 0.4 x success rate + 0.2 x speed).
* :func:`backoff_seconds`: the wait before the next attempt.
* :class:`RecentCounter`: events of the last minute (throughput, failures).
"""

from __future__ import annotations

import bisect
import collections
import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sutazai.runtime.deployment import ANY_TASK_TYPE, TaskTypes

T = TypeVar("T")

SCORE_FREE_CAPACITY = 0.4
SCORE_SUCCESS_RATE = 0.4
SCORE_SPEED = 0.2
SPEED_REFERENCE_SECONDS = 60.0
"""A mean run time up to this scores full speed; twice as long scores half."""


class Strategy(enum.Enum):
    """How an agent is picked among the eligible ones (values as in the settings)."""

    ROUND_ROBIN = "round_robin"
    LEAST_LOADED = "least_loaded"
    CAPABILITY_MATCH = "capability_match"
    WEIGHTED_SCORE = "weighted_score"


@dataclass(frozen=True, slots=True)
class AgentView:
    """What the coordinator knows of one agent instance (its latest heartbeat)."""

    agent_id: str
    capabilities: frozenset[str]
    max_concurrency: int
    running: int = 0
    """As the agent reported it."""
    online: bool = True
    """False while draining or offline: it takes no new work."""
    succeeded: int = 0
    failed: int = 0
    mean_duration_ms: float = 0.0
    task_types: TaskTypes = ANY_TASK_TYPE
    """What the deployment lets it run, whatever its capabilities claim."""

    def offers(self, task_type: str) -> bool:
        """Whether it runs ``task_type``: it says so, and the deployment lets it."""
        return task_type in self.capabilities and self.task_types.allows(task_type)


@dataclass(frozen=True, slots=True)
class Need:
    """What a task needs of an agent."""

    type: str
    required: frozenset[str] = frozenset()

    @property
    def capabilities(self) -> frozenset[str]:
        """Every capability the agent must offer: the type and the required ones."""
        return self.required | {self.type}


def busy(agent: AgentView, assigned: int) -> int:
    """Slots in use: what it reports running, or what the coordinator gave it and is unfinished.

    Assignments not yet pulled are not in the agent's own count; finished tasks whose report
    is still on its way are not in the coordinator's. The larger errs on the safe side.
    """
    return max(agent.running, assigned)


def load(agent: AgentView, assigned: int) -> float:
    """``busy / max_concurrency``, 0 to 1 (1 for an agent that runs nothing)."""
    if agent.max_concurrency <= 0:
        return 1.0
    return min(1.0, busy(agent, assigned) / agent.max_concurrency)


def eligible(agents: Iterable[AgentView], need: Need, assigned: dict[str, int]) -> list[AgentView]:
    """The online agents offering every capability of ``need`` with a free slot, by id."""
    wanted = need.capabilities
    return sorted(
        (
            a
            for a in agents
            if a.online
            and wanted <= a.capabilities
            and a.task_types.allows(need.type)
            and busy(a, assigned.get(a.agent_id, 0)) < a.max_concurrency
        ),
        key=lambda a: a.agent_id,
    )


def prefer_others(candidates: Sequence[AgentView], avoid: str) -> list[AgentView]:
    """``candidates`` without ``avoid`` (the agent a task's last attempt failed on), if any remain.

    A retry goes elsewhere when another agent can take it now; it does not wait for one.
    """
    others = [a for a in candidates if a.agent_id != avoid]
    return others if others and avoid else list(candidates)


def waiting_reason(agents: Iterable[AgentView], need: Need) -> str:
    """Why no agent can take a task now (when :func:`eligible` found none)."""
    online = [a for a in agents if a.online]
    offering_type = [a for a in online if a.offers(need.type)]
    if not offering_type:
        return f"no online agent offers {need.type}"
    if not any(need.capabilities <= a.capabilities for a in offering_type):
        missing = sorted(need.required)
        return f"no online agent offers {need.type} with {', '.join(missing)}"
    return f"every agent offering {need.type} is busy"


def success_rate(agent: AgentView) -> float:
    """Succeeded / finished; 1 before it finished anything."""
    finished = agent.succeeded + agent.failed
    return agent.succeeded / finished if finished else 1.0


def speed(agent: AgentView) -> float:
    """``1 / max(1, mean seconds / 60)``: 1 up to a minute per task, less beyond."""
    return 1.0 / max(1.0, agent.mean_duration_ms / 1000.0 / SPEED_REFERENCE_SECONDS)


def weighted_score(agent: AgentView, assigned: int) -> float:
    """0.4 x free capacity (1 - load) + 0.4 x success rate + 0.2 x speed."""
    return (
        SCORE_FREE_CAPACITY * (1.0 - load(agent, assigned))
        + SCORE_SUCCESS_RATE * success_rate(agent)
        + SCORE_SPEED * speed(agent)
    )


@dataclass(slots=True)
class Chooser:
    """Picks one of the eligible agents by the strategy in force.

    The round-robin cursor is the id of the agent picked last: the next pick is the first
    eligible agent after it in id order, wrapping around, so agents take turns even as the set
    of eligible agents changes between picks.
    """

    strategy: Strategy = Strategy.ROUND_ROBIN
    cursor: str = ""

    def choose(
        self, candidates: Sequence[AgentView], need: Need, assigned: dict[str, int]
    ) -> AgentView | None:
        """The agent to give the task to (``candidates`` from :func:`eligible`), or ``None``."""
        if not candidates:
            return None
        ordered = sorted(candidates, key=lambda a: a.agent_id)
        if self.strategy is Strategy.ROUND_ROBIN:
            chosen = next((a for a in ordered if a.agent_id > self.cursor), ordered[0])
        elif self.strategy is Strategy.LEAST_LOADED:
            chosen = min(ordered, key=lambda a: (load(a, assigned.get(a.agent_id, 0)), a.agent_id))
        elif self.strategy is Strategy.CAPABILITY_MATCH:
            wanted = need.capabilities
            chosen = min(
                ordered,
                key=lambda a: (
                    len(a.capabilities - wanted),
                    load(a, assigned.get(a.agent_id, 0)),
                    a.agent_id,
                ),
            )
        else:
            # Highest score; the first by id among equals (min of the negated score).
            chosen = min(
                ordered,
                key=lambda a: (-weighted_score(a, assigned.get(a.agent_id, 0)), a.agent_id),
            )
        self.cursor = chosen.agent_id
        return chosen


def backoff_seconds(failed_attempt: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """The wait after attempt ``failed_attempt`` (from 1) failed: ``base x 2^(n-1)``, capped."""
    exponent = max(0, failed_attempt - 1)
    # 2**exponent grows without bound; past the cap it no longer matters.
    return cap if exponent >= 32 else min(cap, base * 2.0**exponent)


def next_step(attempt: int, max_attempts: int) -> tuple[bool, int]:
    """After attempt ``attempt`` ended without a result: (retry?, the next attempt's number)."""
    return attempt < max_attempts, attempt + 1


@dataclass(slots=True)
class Held(Generic[T]):
    """One dispatched task waiting in the holding queue."""

    task_id: str
    attempt: int
    priority: int
    created_at: float
    """Seconds since the epoch: the order within a priority."""
    need: Need
    not_before: float = 0.0
    """Not to be assigned before this time (seconds since the epoch)."""
    item: T | None = None
    """What the caller keeps with it (the dispatch and its message)."""
    reason: str = ""
    """The last waiting reason reported, so each is reported once."""
    avoid: str = ""
    """The agent the task's last attempt failed on: another one is preferred."""
    seq: int = 0

    @property
    def order(self) -> tuple[int, float, int]:
        """Sort key: highest priority first, then oldest, then first to arrive."""
        return (-self.priority, self.created_at, self.seq)


@dataclass(slots=True)
class HoldingQueue(Generic[T]):
    """Dispatched tasks waiting for an agent, in assignment order; one entry per task."""

    _entries: list[Held[T]] = field(default_factory=list)
    _keys: list[tuple[int, float, int]] = field(default_factory=list)
    _by_task: dict[str, Held[T]] = field(default_factory=dict)
    _seq: int = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._by_task

    def get(self, task_id: str) -> Held[T] | None:
        """The entry of ``task_id``, if held."""
        return self._by_task.get(task_id)

    def add(self, held: Held[T]) -> None:
        """Hold a task (replacing an entry of the same task)."""
        self.remove(held.task_id)
        self._seq += 1
        held.seq = self._seq
        key = held.order
        index = bisect.bisect(self._keys, key)
        self._keys.insert(index, key)
        self._entries.insert(index, held)
        self._by_task[held.task_id] = held

    def remove(self, task_id: str) -> Held[T] | None:
        """Stop holding ``task_id``; its entry, if it was held."""
        held = self._by_task.pop(task_id, None)
        if held is not None:
            index = bisect.bisect_left(self._keys, held.order)
            del self._keys[index]
            del self._entries[index]
        return held

    def ready(self, now: float) -> Iterator[Held[T]]:
        """Entries that may be assigned at ``now``, in order (a snapshot: safe to remove)."""
        return iter([h for h in self._entries if h.not_before <= now])

    def __iter__(self) -> Iterator[Held[T]]:
        return iter(list(self._entries))

    def next_wakeup(self, now: float) -> float | None:
        """The earliest ``not_before`` still in the future, if any."""
        future = [h.not_before for h in self._entries if h.not_before > now]
        return min(future) if future else None

    def depth_by_priority(self) -> list[int]:
        """Held tasks per priority, index 0 to 3."""
        counts = [0, 0, 0, 0]
        for held in self._entries:
            counts[min(max(held.priority, 0), 3)] += 1
        return counts

    def depth_by_type(self) -> dict[str, int]:
        """Held tasks per task type."""
        return dict(collections.Counter(h.need.type for h in self._entries))


@dataclass(slots=True)
class RecentCounter:
    """How many events happened in the last ``window`` seconds (and since the start)."""

    window: float = 60.0
    total: int = 0
    _times: collections.deque[float] = field(default_factory=collections.deque)

    def add(self, now: float) -> None:
        """Count one event at ``now``."""
        self.total += 1
        self._times.append(now)
        self._trim(now)

    def recent(self, now: float) -> int:
        """Events within the window before ``now``."""
        self._trim(now)
        return len(self._times)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
