"""Prometheus metrics of the task service, in the service's own registry.

No label carries a caller's string (a task type, an agent id): their number stays bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class TaskMetrics:
    """Tasks created and finished, outbox publishes, reports by outcome, open watches."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.created = Counter(
            "sutazai_tasks_created",
            "Tasks created, by priority.",
            ["priority"],
            registry=registry,
        )
        self.idempotent_repeats = Counter(
            "sutazai_tasks_idempotent_repeats",
            "CreateTask calls answered with the original task of their idempotency key.",
            registry=registry,
        )
        self.queue_full = Counter(
            "sutazai_tasks_queue_full",
            "CreateTask calls refused because the queue bound was reached.",
            registry=registry,
        )
        self.published = Counter(
            "sutazai_tasks_outbox_published",
            "Outbox rows JetStream acknowledged, by kind (dispatch, report, delete_dead) and "
            "path (direct: by the call that wrote them; relay: later, by the outbox relay).",
            ["kind", "path"],
            registry=registry,
        )
        self.publish_failures = Counter(
            "sutazai_tasks_outbox_publish_failures",
            "Publishes that failed (NATS unreachable, no acknowledgement in time); the row "
            "stays in the outbox for the relay.",
            registry=registry,
        )
        self.outbox_waiting = Gauge(
            "sutazai_tasks_outbox_waiting",
            "Rows the relay found waiting in the outbox at its last pass.",
            registry=registry,
        )
        self.reports = Counter(
            "sutazai_tasks_reports",
            "Reports consumed, by event and outcome (applied, stale, wrong_agent, final, "
            "duplicate, later, ...).",
            ["event", "outcome"],
            registry=registry,
        )
        self.finished = Counter(
            "sutazai_tasks_finished",
            "Tasks that reached a final state through a report or a cancellation, by state.",
            ["state"],
            registry=registry,
        )
        self.watches = Gauge(
            "sutazai_tasks_watch_streams",
            "WatchTask and WatchTasks streams open on this instance.",
            registry=registry,
        )
