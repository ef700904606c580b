"""The circuit breaker: closed, open, half-open with exactly one trial call."""

import pytest

from sutazai.services.inference.breaker import BreakerState, CircuitBreaker
from sutazai.services.inference.errors import BreakerOpenError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, threshold: int = 3, cooldown: float = 10.0) -> CircuitBreaker:
    return CircuitBreaker("b", failure_threshold=threshold, cooldown_seconds=cooldown, clock=clock)


def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        b.admit().fail("refused")


def test_opens_after_threshold_failures_in_a_row() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 2)
    b.admit().succeed()  # a success resets the run
    fail(b, 2)
    assert b.state is BreakerState.CLOSED
    fail(b, 1)
    assert b.state is BreakerState.OPEN
    snapshot = b.snapshot()
    assert snapshot.consecutive_failures == 3
    assert snapshot.failures_total == 5
    assert snapshot.last_error == "refused"
    assert snapshot.opened_at is not None


def test_open_breaker_refuses_fast_with_the_time_left() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += 4
    with pytest.raises(BreakerOpenError) as refused:
        b.admit()
    assert refused.value.retry_after_seconds == pytest.approx(6.0)
    assert b.snapshot().rejected_total == 1


def test_half_open_lets_exactly_one_trial_through() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += 10
    assert b.state is BreakerState.HALF_OPEN
    trial = b.admit()
    assert trial.trial
    with pytest.raises(BreakerOpenError):
        b.admit()
    trial.succeed()
    assert b.state is BreakerState.CLOSED
    b.admit().succeed()


def test_a_failed_trial_reopens_for_another_cooldown() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += 10
    b.admit().fail("still down")
    assert b.state is BreakerState.OPEN
    clock.now += 9.9
    with pytest.raises(BreakerOpenError):
        b.admit()
    clock.now += 0.1
    assert b.admit().trial


def test_a_released_trial_lets_the_next_call_try() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += 10
    b.admit().release()  # e.g. the caller cancelled: no verdict
    assert b.state is BreakerState.HALF_OPEN
    assert b.admit().trial


def test_reset_closes_at_once() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    b.reset()
    assert b.state is BreakerState.CLOSED
    assert b.snapshot().consecutive_failures == 0
    b.admit().succeed()


def test_a_permit_settles_once() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1)
    permit = b.admit()
    permit.succeed()
    permit.fail("late")
    assert b.state is BreakerState.CLOSED
    assert b.snapshot().failures_total == 0


def test_state_changes_are_reported() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1)
    seen: list[BreakerState] = []
    b.on_change = seen.append
    fail(b, 1)
    clock.now += 10
    b.admit().succeed()
    assert seen == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
