"""Prometheus metrics of the coordinator, in the service's own registry.

Labels are bounded: strategies, outcomes and event kinds, never a task type or an agent id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class CoordinatorMetrics:
    """Assignments, retries, dead letters, held tasks, lost agents."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.assigned = Counter(
            "sutazai_coordinator_assignments",
            "Attempts given to agents, by strategy.",
            ["strategy"],
            registry=registry,
        )
        self.finished = Counter(
            "sutazai_coordinator_attempts_finished",
            "Attempts that ended, by outcome (succeeded, failed, cancelled, lost).",
            ["outcome"],
            registry=registry,
        )
        self.requeued = Counter(
            "sutazai_coordinator_requeued",
            "Next attempts queued after a failure.",
            registry=registry,
        )
        self.dead_lettered = Counter(
            "sutazai_coordinator_dead_lettered",
            "Tasks put on the dead-letter stream after their last attempt.",
            registry=registry,
        )
        self.dropped = Counter(
            "sutazai_coordinator_dropped_messages",
            "Messages ignored, by kind (malformed, stale_report, duplicate_dispatch, cancelled).",
            ["kind"],
            registry=registry,
        )
        self.held = Gauge(
            "sutazai_coordinator_held_tasks",
            "Dispatched tasks waiting for an agent.",
            registry=registry,
        )
        self.in_flight = Gauge(
            "sutazai_coordinator_in_flight",
            "Attempts given to agents and not finished.",
            registry=registry,
        )
        self.leader = Gauge(
            "sutazai_coordinator_leader",
            "1 while this instance holds the leader lease (and assigns).",
            registry=registry,
        )
        self.queue_seconds = Histogram(
            "sutazai_coordinator_queue_seconds",
            "From a dispatch's arrival at the coordinator to its assignment.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
