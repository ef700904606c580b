from datetime import UTC, datetime, timedelta

import pytest

from sutazai.services.system.domain import (
    Health,
    Kind,
    Overall,
    ProbeOutcome,
    StatusBoard,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def outcome(name: str, healthy: bool, at: datetime = T0, kind: Kind = Kind.INFRASTRUCTURE):
    return ProbeOutcome(
        name=name,
        kind=kind,
        address="127.0.0.1:1",
        healthy=healthy,
        latency_ms=1.0,
        finished_at=at,
        error="" if healthy else "refused",
    )


def all_healthy(at: datetime = T0) -> list[ProbeOutcome]:
    return [outcome(n, True, at) for n in ("postgres", "redis", "nats", "envoy")]


def test_empty_board_is_unknown() -> None:
    assert StatusBoard().snapshot().overall is Overall.UNKNOWN


def test_all_healthy_is_healthy() -> None:
    assert StatusBoard().apply_round(all_healthy(), T0).overall is Overall.HEALTHY


@pytest.mark.parametrize("critical", ["postgres", "redis", "nats"])
def test_a_critical_dependency_down_is_critical(critical: str) -> None:
    outcomes = [o if o.name != critical else outcome(critical, False) for o in all_healthy()]
    assert StatusBoard().apply_round(outcomes, T0).overall is Overall.CRITICAL


def test_envoy_or_an_instance_down_is_degraded() -> None:
    board = StatusBoard()
    outcomes = [*all_healthy(), outcome("system/a", False, kind=Kind.SERVICE_INSTANCE)]
    assert board.apply_round(outcomes, T0).overall is Overall.DEGRADED
    envoy_down = [o if o.name != "envoy" else outcome("envoy", False) for o in all_healthy()]
    assert board.apply_round(envoy_down, T0).overall is Overall.DEGRADED


def test_since_moves_only_when_health_changes() -> None:
    board = StatusBoard()
    board.apply_round(all_healthy(T0), T0)
    later = T0 + timedelta(seconds=2)
    status = board.apply_round(all_healthy(later), later)
    redis = next(c for c in status.components if c.name == "redis")
    assert redis.since == T0

    failed_at = T0 + timedelta(seconds=4)
    outcomes = [
        o if o.name != "redis" else outcome("redis", False, failed_at) for o in all_healthy()
    ]
    status = board.apply_round(outcomes, failed_at)
    redis = next(c for c in status.components if c.name == "redis")
    assert (redis.health, redis.since, redis.last_error) == (Health.UNHEALTHY, failed_at, "refused")


def test_gone_components_are_dropped_and_infrastructure_sorts_first() -> None:
    board = StatusBoard()
    instance = outcome("system/a", True, kind=Kind.SERVICE_INSTANCE)
    board.apply_round([instance, *all_healthy()], T0)
    names = [c.name for c in board.snapshot().components]
    assert names == ["envoy", "nats", "postgres", "redis", "system/a"]
    board.apply_round(all_healthy(), T0)
    assert "system/a" not in [c.name for c in board.snapshot().components]
