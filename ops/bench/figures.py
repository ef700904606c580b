"""Latency summaries shared by the benchmarks."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Latency:
    """Latency of a run's calls or tasks, in milliseconds."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (not empty); ``fraction`` from 0 to 1."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def latency_summary(seconds: Sequence[float]) -> Latency:
    """p50, p90, p99, mean and max of latencies given in seconds (not empty)."""

    def ms(value: float) -> float:
        return round(value * 1e3, 2)

    return Latency(
        p50_ms=ms(statistics.median(seconds)),
        p90_ms=ms(percentile(seconds, 0.90)),
        p99_ms=ms(percentile(seconds, 0.99)),
        mean_ms=ms(statistics.fmean(seconds)),
        max_ms=ms(max(seconds)),
    )


@dataclass(frozen=True, slots=True)
class SideResult:
    """One side of one round of ``bench tasks``: throughput, latency, what was verified."""

    side: str
    tasks: int
    concurrency: int
    seconds: float
    tasks_per_second: float
    latency: Latency
    verified: int
    """Tasks found stored as succeeded, with their result, after the round."""
    cpu_ms_per_task: dict[str, float] = field(default_factory=dict)
    """CPU per task by process over the round (:mod:`.cpu`), with the ``total``."""
