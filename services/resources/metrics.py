"""Prometheus metrics of the resource service, in the service's own registry.

Labels take only fixed values (resource kinds, outcomes, subjects, status code names), never a
holder or a task id, so their number stays bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ResourceMetrics:
    """Allocations by outcome, lease endings by cause, pre-emptions, capacity and use."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.allocations = Counter(
            "sutazai_resources_allocations",
            "Allocation requests judged, by resource and outcome (granted, or the denial "
            "reason: no_capacity, holder_cap_exceeded, exclusive_held, total_cap_exceeded, "
            "lease_limit_reached).",
            ["resource", "outcome"],
            registry=registry,
        )
        self.ended = Counter(
            "sutazai_resources_leases_ended",
            "Leases ended, by resource and cause (released, expired, preempted).",
            ["resource", "cause"],
            registry=registry,
        )
        self.preemptions = Counter(
            "sutazai_resources_preemptions",
            "Leases of an exclusive resource ended by a request of a higher priority.",
            ["resource"],
            registry=registry,
        )
        self.allocate_seconds = Histogram(
            "sutazai_resources_allocate_seconds",
            "One allocation's transaction, waiting for its resource's lock included.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.capacity = Gauge(
            "sutazai_resources_capacity",
            "The host's capacity, by resource, in its unit (cores, GiB, Mbps, devices).",
            ["resource"],
            registry=registry,
        )
        self.allocated = Gauge(
            "sutazai_resources_allocated",
            "What live leases hold, by resource, in its unit (as of the last sweep or read).",
            ["resource"],
            registry=registry,
        )
        self.utilization = Gauge(
            "sutazai_resources_utilization_percent",
            "Measured use of the host, by resource, 0 to 100 (as of the last sample).",
            ["resource"],
            registry=registry,
        )
        self.nats_requests = Counter(
            "sutazai_resources_nats_requests",
            "Requests answered on the NATS subjects, by subject and status code name.",
            ["subject", "code"],
            registry=registry,
        )
