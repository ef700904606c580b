"""A backend's circuit breaker: closed, open, half-open with exactly one trial call.

Like the original's richer breaker (ORIGINAL_SYSTEM §2.2 b), and unlike its hot paths, every
call to a backend goes through it. ``failure_threshold`` failures in a row open it; while open,
calls fail at once (the caller gets UNAVAILABLE with a retry hint) until ``cooldown_seconds``
have passed; then one call goes through as a trial while the others keep failing fast, and its
outcome closes the breaker or opens it for another cool-down. A call that ends for the caller's
reasons (a bad option, a cancelled stream) is neither a success nor a failure: it just gives
its permit back, so a cancelled trial lets the next call try.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sutazai.services.inference.errors import BreakerOpenError

MAX_ERROR_CHARS = 300


class BreakerState(enum.Enum):
    """Where a breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A breaker's state and counters at one moment."""

    state: BreakerState
    consecutive_failures: int
    failure_threshold: int
    opened_at: datetime | None
    cooldown_seconds: float
    last_error: str
    successes_total: int
    failures_total: int
    rejected_total: int


class Permit:
    """The right to make one call; settle it exactly once (later settlements are ignored)."""

    __slots__ = ("_breaker", "_settled", "trial")

    def __init__(self, breaker: CircuitBreaker, *, trial: bool) -> None:
        self._breaker = breaker
        self._settled = False
        self.trial = trial

    def succeed(self) -> None:
        """The backend answered properly."""
        if not self._settled:
            self._settled = True
            self._breaker._on_success(self)

    def fail(self, error: str) -> None:
        """The backend failed (down, timed out, server error)."""
        if not self._settled:
            self._settled = True
            self._breaker._on_failure(self, error)

    def release(self) -> None:
        """The call ended for the caller's reasons: no outcome for the breaker."""
        if not self._settled:
            self._settled = True
            self._breaker._on_release(self)


class CircuitBreaker:
    """One backend's breaker. Not thread-safe: used from the event loop only."""

    def __init__(
        self,
        backend: str,
        *,
        failure_threshold: int,
        cooldown_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._backend = backend
        self._threshold = failure_threshold
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at_monotonic = 0.0
        self._opened_at: datetime | None = None
        self._trial_in_flight = False
        self._last_error = ""
        self._successes = 0
        self._failures = 0
        self._rejected = 0
        self.on_change: Callable[[BreakerState], None] = lambda _state: None
        """Called after each change of state (metrics)."""

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker past its cool-down reads as half-open)."""
        if self._state is BreakerState.OPEN and self._cooled_down():
            return BreakerState.HALF_OPEN
        return self._state

    def admit(self) -> Permit:
        """A permit for one call.

        Raises:
            BreakerOpenError: the breaker is open, or half-open with its trial call in flight.
        """
        if self._state is BreakerState.CLOSED:
            return Permit(self, trial=False)
        if self._state is BreakerState.OPEN and self._cooled_down():
            self._set(BreakerState.HALF_OPEN)
        if self._state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return Permit(self, trial=True)
        self._rejected += 1
        raise BreakerOpenError(self._backend, self._retry_after(), self._last_error)

    def reset(self) -> None:
        """Close the breaker now (an operator's decision); counters since start are kept."""
        self._consecutive_failures = 0
        self._trial_in_flight = False
        self._set(BreakerState.CLOSED)

    def snapshot(self) -> BreakerSnapshot:
        """The state and counters now."""
        return BreakerSnapshot(
            state=self.state,
            consecutive_failures=self._consecutive_failures,
            failure_threshold=self._threshold,
            opened_at=self._opened_at,
            cooldown_seconds=self._cooldown,
            last_error=self._last_error,
            successes_total=self._successes,
            failures_total=self._failures,
            rejected_total=self._rejected,
        )

    def _on_success(self, permit: Permit) -> None:
        self._successes += 1
        self._consecutive_failures = 0
        if permit.trial:
            self._trial_in_flight = False
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def _on_failure(self, permit: Permit, error: str) -> None:
        self._failures += 1
        self._consecutive_failures += 1
        self._last_error = error[:MAX_ERROR_CHARS]
        if permit.trial:
            self._trial_in_flight = False
        if permit.trial or (
            self._state is BreakerState.CLOSED and self._consecutive_failures >= self._threshold
        ):
            self._open()

    def _on_release(self, permit: Permit) -> None:
        if permit.trial:
            self._trial_in_flight = False

    def _open(self) -> None:
        self._opened_at_monotonic = self._clock()
        self._opened_at = self._wall_clock()
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            self.on_change(state)

    def _cooled_down(self) -> bool:
        return self._clock() - self._opened_at_monotonic >= self._cooldown

    def _retry_after(self) -> float:
        if self._state is BreakerState.OPEN:
            return max(0.0, self._cooldown - (self._clock() - self._opened_at_monotonic))
        return 1.0  # half-open: the trial's outcome comes soon
