"""Traffic figures from Envoy's statistics, on payloads recorded from a real Envoy.

``data/envoy_stats_before.json`` and ``data/envoy_stats_after.json`` are two readings of a mesh
Envoy (``/stats?format=json&histogram_buckets=cumulative`` with the sampler's filter), taken
around 12 ``Login`` calls through the edge that auth refused (6 INVALID_ARGUMENT, 6
RESOURCE_EXHAUSTED), 10 ``GET /v1/system/status`` and one REST call Envoy refused itself (401).
``data/envoy_stats_http_before.json`` and ``data/envoy_stats_http_after.json`` (the same
filter, another mesh) were taken around calls of the inference service's ``/openai/v1``: three
``GET /models`` (200), two chat completions with a bad body (400), ``GET /models/nope`` (404),
and one ``GET /models`` without a token that Envoy refused itself (401).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sutazai.runtime.envoy import http_cluster
from sutazai.services.system.domain.traffic import (
    Buckets,
    Upstream,
    parse_stats,
    traffic_between,
)

DATA = Path(__file__).parent / "data"
AUTH = "sutazai.auth.v1.AuthService"
SYSTEM = "sutazai.system.v1.SystemService"
OWNERS = [Upstream.grpc(AUTH, "auth"), Upstream.grpc(SYSTEM, "system")]
OPENAI = Upstream.http(http_cluster("inference"), "inference", ["/openai/"])
T0 = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = 4.0


def recorded(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def reading(name: str, at: datetime = T0) -> Any:
    return parse_stats(recorded(name), upstreams=OWNERS, edge_stat_prefix="edge", taken_at=at)


def stat(payload: Any, name: str) -> int:
    return next(s["value"] for s in payload["stats"] if s.get("name") == name)


def test_recorded_readings_count_grpc_statuses_per_cluster() -> None:
    before, after = recorded("envoy_stats_before.json"), recorded("envoy_stats_after.json")
    auth = reading("envoy_stats_after.json").clusters[AUTH]

    # Every auth call so far was refused by auth: INVALID_ARGUMENT (3), UNAUTHENTICATED (16),
    # RESOURCE_EXHAUSTED (8): client errors all, as Envoy maps them (4xx).
    codes = {3, 8, 16}
    assert auth.completed == sum(stat(after, f"cluster.{AUTH}.grpc.{c}") for c in codes)
    assert auth.client_errors == auth.completed
    assert auth.server_errors == 0
    assert auth.latency.count == auth.completed
    assert stat(after, f"cluster.{AUTH}.grpc.3") - stat(before, f"cluster.{AUTH}.grpc.3") == 6


def test_window_between_recorded_readings() -> None:
    sample = traffic_between(
        reading("envoy_stats_before.json"),
        reading("envoy_stats_after.json", T0 + timedelta(seconds=WINDOW)),
        OWNERS,
    )

    assert sample.window_seconds == WINDOW
    assert [(s.service, s.grpc_service) for s in sample.services] == [
        ("auth", AUTH),
        ("system", SYSTEM),
    ]
    auth, system = (s.figures for s in sample.services)
    assert auth.requests_per_second == 12 / WINDOW
    assert auth.client_error_rate == 1.0
    assert auth.error_rate == 0.0
    assert system.requests_per_second == 10 / WINDOW
    assert system.client_error_rate == 0.0
    assert system.requests_total == stat(
        recorded("envoy_stats_after.json"), f"cluster.{SYSTEM}.grpc.0"
    )
    # Latency: the percentiles fall inside the buckets the recorded calls landed in.
    assert 0 < system.p50_ms <= system.p99_ms <= 5.0
    assert 0 < auth.p50_ms <= auth.p99_ms
    # The edge saw the 22 routed calls and the refused REST call (its one 4xx).
    after = recorded("envoy_stats_after.json")
    before = recorded("envoy_stats_before.json")
    completed = stat(after, "http.edge.downstream_rq_completed") - stat(
        before, "http.edge.downstream_rq_completed"
    )
    assert completed == 23
    assert sample.edge.requests_per_second == completed / WINDOW
    assert sample.edge.client_error_rate == 1 / completed
    assert sample.edge.requests_total == stat(after, "http.edge.downstream_rq_completed")


def test_a_first_reading_has_totals_but_no_rates() -> None:
    sample = traffic_between(None, reading("envoy_stats_after.json"), OWNERS)

    assert sample.window_seconds == 0.0
    auth = sample.services[0].figures
    assert auth.requests_total > 0
    assert auth.requests_per_second == auth.p99_ms == auth.client_error_rate == 0.0


def test_an_envoy_restart_between_readings_gives_no_rates() -> None:
    sample = traffic_between(
        reading("envoy_stats_after.json"),
        reading("envoy_stats_before.json", T0 + timedelta(seconds=2)),
        OWNERS,
    )

    assert all(s.figures.requests_per_second == 0.0 for s in sample.services)
    assert sample.edge.requests_per_second == 0.0


def test_a_cluster_without_stats_yet_counts_zero() -> None:
    owners = [*OWNERS, Upstream.grpc("sutazai.chat.v1.ChatService", "chat"), OPENAI]
    parsed = parse_stats(
        recorded("envoy_stats_after.json"),
        upstreams=owners,
        edge_stat_prefix="edge",
        taken_at=T0,
    )
    sample = traffic_between(None, parsed, owners)

    for service in ("chat", "inference"):
        figures = next(s for s in sample.services if s.service == service).figures
        assert figures.requests_total == figures.active_requests == 0


def test_server_errors_are_the_statuses_envoy_maps_to_5xx() -> None:
    def payload(**codes: int) -> dict[str, Any]:
        return {
            "stats": [
                {"name": f"cluster.{AUTH}.grpc.{code.lstrip('c')}", "value": n}
                for code, n in codes.items()
            ]
        }

    earlier = parse_stats(payload(), upstreams=OWNERS[:1], edge_stat_prefix="edge", taken_at=T0)
    later = parse_stats(
        payload(c0=6, c14=2, c13=1, c5=1),  # OK, UNAVAILABLE, INTERNAL, NOT_FOUND
        upstreams=OWNERS[:1],
        edge_stat_prefix="edge",
        taken_at=T0 + timedelta(seconds=1),
    )

    figures = traffic_between(earlier, later, OWNERS[:1]).services[0].figures
    assert figures.error_rate == 0.3
    assert figures.client_error_rate == 0.1
    assert figures.errors_total == 3


def test_http_routes_count_http_statuses_of_their_cluster() -> None:
    before, after = (
        parse_stats(
            recorded(f"envoy_stats_http_{name}.json"),
            upstreams=[*OWNERS, OPENAI],
            edge_stat_prefix="edge",
            taken_at=at,
        )
        for name, at in (("before", T0), ("after", T0 + timedelta(seconds=WINDOW)))
    )
    sample = traffic_between(before, after, [*OWNERS, OPENAI])

    assert [(s.service, s.grpc_service, s.http_prefixes) for s in sample.services] == [
        ("auth", AUTH, ()),
        ("inference", "", ("/openai/",)),
        ("system", SYSTEM, ()),
    ]
    openai = sample.services[1].figures
    # Six requests reached the service (the seventh, without a token, stopped at the edge):
    # three 200s, and 400, 400 and 404 from the service.
    assert openai.requests_per_second == 6 / WINDOW
    assert openai.client_error_rate == 0.5
    assert openai.error_rate == 0.0
    assert openai.requests_total == stat(
        recorded("envoy_stats_http_after.json"), "cluster.http.inference.upstream_rq_completed"
    )
    assert 0 < openai.p50_ms <= openai.p99_ms
    assert sample.edge.requests_per_second == 7 / WINDOW


@pytest.mark.parametrize("payload", [[], {"stats": None}, "LIVE"])
def test_something_else_than_envoy_stats_is_refused(payload: Any) -> None:
    with pytest.raises(ValueError, match="not an Envoy"):
        parse_stats(payload, upstreams=OWNERS[:1], edge_stat_prefix="edge", taken_at=T0)


def test_quantiles_interpolate_inside_the_bucket() -> None:
    buckets = Buckets((1.0, 2.0, 4.0), (0, 50, 100))

    assert buckets.quantile(0.5) == 2.0
    assert buckets.quantile(0.25) == 1.5
    assert buckets.quantile(0.99) == pytest.approx(3.96)
    assert Buckets().quantile(0.5) == 0.0


def test_bucket_deltas_refuse_histograms_that_do_not_line_up() -> None:
    now = Buckets((1.0, 2.0), (3, 5))

    assert now.minus(Buckets((1.0, 2.0), (1, 1))) == Buckets((1.0, 2.0), (2, 4))
    assert now.minus(Buckets((1.0, 3.0), (1, 1))) is None
    assert now.minus(Buckets((1.0, 2.0), (4, 6))) is None
