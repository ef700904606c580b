"""Prometheus metrics of the hardware service, in the service's own registry.

Labels take only fixed values (operation names, outcomes, change actions), never a path, a
user or a pid, so their number stays bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class HardwareMetrics:
    """Operations by outcome and duration, changes and bytes freed, files walked, streams."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.operations = Counter(
            "sutazai_hardware_operations",
            "Operations run, by operation (the RPC's name) and outcome (ok, or the status "
            "code name).",
            ["operation", "outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "sutazai_hardware_operation_seconds",
            "Wall time of one operation (walks, hashing and changes included).",
            ["operation"],
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )
        self.files_scanned = Counter(
            "sutazai_hardware_files_scanned",
            "Regular files looked at by walks, by operation.",
            ["operation"],
            registry=registry,
        )
        self.changes = Counter(
            "sutazai_hardware_changes",
            "Changes made (not planned: dry runs are not counted), by action (quarantine, "
            "compress, rotate, renice, reclaim) and outcome (made, failed).",
            ["action", "outcome"],
            registry=registry,
        )
        self.bytes_freed = Counter(
            "sutazai_hardware_bytes_freed",
            "Bytes freed by changes made, by action.",
            ["action"],
            registry=registry,
        )
        self.watch_streams = Gauge(
            "sutazai_hardware_watch_streams",
            "WatchMetrics streams open now.",
            registry=registry,
        )
