"""Restart delays for crashed children: exponential, capped, forgiven after a stable run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How long to wait before restarting a child that exited on its own."""

    initial_seconds: float = 0.5
    factor: float = 2.0
    max_seconds: float = 30.0
    stable_after_seconds: float = 30.0
    """A child that ran at least this long before crashing counts as a first failure again."""

    def delay(self, consecutive_failures: int) -> float:
        """The delay before the restart following the ``consecutive_failures``-th crash (>= 1)."""
        exponent = max(consecutive_failures - 1, 0)
        # Cap the exponent too, so a long crash loop never overflows the float.
        return min(self.max_seconds, self.initial_seconds * self.factor ** min(exponent, 64))

    def failures_after(self, previous_failures: int, uptime_seconds: float) -> int:
        """The consecutive-failure count after a crash that ended a run of ``uptime_seconds``."""
        if uptime_seconds >= self.stable_after_seconds:
            return 1
        return previous_failures + 1
