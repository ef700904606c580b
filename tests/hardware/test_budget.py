"""Walks end before the call must answer: the caller's deadline, or Envoy's limit if sooner."""

from __future__ import annotations

from typing import Any

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.settings import HardwareSettings
from sutazai.services.hardware.handlers import (
    EDGE_RETRIED_SECONDS,
    EDGE_UNARY_SECONDS,
    _remaining,
    _walk_budget,
)
from sutazai.services.hardware.operations import budgeted, budgeted_settings


class Context:
    def __init__(
        self, remaining: float | None, peer: str, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self._remaining = remaining
        self._peer = peer
        self._metadata = metadata

    def time_remaining(self) -> float | None:
        return self._remaining

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def ctx(*args: Any) -> Any:
    return Context(*args)


def test_through_envoy_the_edge_limit_wins_over_a_longer_deadline() -> None:
    assert _remaining(ctx(660.0, "unix:/run/x.sock")) == EDGE_UNARY_SECONDS
    assert _remaining(ctx(None, "unix:/run/x.sock"), EDGE_RETRIED_SECONDS) == EDGE_RETRIED_SECONDS
    assert _remaining(ctx(3.0, "unix:/run/x.sock")) == 3.0
    header = (("x-envoy-expected-rq-timeout-ms", "4000"),)
    assert _remaining(ctx(660.0, "unix:/run/x.sock", header)) == 4.0


def test_a_direct_caller_has_its_own_deadline_or_none() -> None:
    assert _remaining(ctx(60.0, "ipv4:127.0.0.1:5555")) == 60.0
    assert _remaining(ctx(None, "ipv4:127.0.0.1:5555")) is None
    assert _walk_budget(ctx(None, "ipv4:127.0.0.1:5555")) is None


def test_a_walk_keeps_a_margin_for_the_answer() -> None:
    budget = _walk_budget(ctx(660.0, "unix:/x"))
    assert budget is not None
    assert 10.0 < budget < EDGE_UNARY_SECONDS


def test_a_longer_walk_limit_is_cut_to_the_budget_and_a_shorter_one_kept() -> None:
    settings = HardwareSettings(allowed_roots=[])
    cut = budgeted(pb.AnalyzeStorageRequest(path="x"), settings, 5.0)
    assert cut.limits.max_duration.ToMilliseconds() == 5000
    assert cut.path == "x"
    short = pb.AnalyzeStorageRequest()
    short.limits.max_duration.FromSeconds(2)
    assert budgeted(short, settings, 5.0) is short
    assert budgeted(pb.AnalyzeStorageRequest(), settings, None).HasField("limits") is False
    assert budgeted_settings(settings, 4.0).default_max_seconds == 4.0
    assert budgeted_settings(settings, None) is settings
