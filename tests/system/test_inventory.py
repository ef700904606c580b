"""The services view: Envoy's endpoints, instance metrics and the registry, put together.

``data/envoy_clusters.json`` is Envoy's ``/clusters?format=json`` and ``data/auth_metrics.txt``
an auth instance's Prometheus page, both recorded from a running mesh;
``data/envoy_clusters_mesh.json`` is the same page of a whole mesh, whose inference instance
serves ``/openai/`` (cluster ``http.inference``, 43 requests so far) beside its gRPC service.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sutazai.runtime.envoy import http_cluster
from sutazai.services.system.domain import Health, Kind, ProbeOutcome, StatusBoard
from sutazai.services.system.domain.inventory import (
    Deployed,
    EndpointHealth,
    EndpointState,
    Registration,
    RpcCounts,
    endpoint_health,
    parse_clusters,
    parse_rpc_counts,
    services_view,
    without_heartbeats,
)
from sutazai.services.system.domain.upstreams import Upstream

DATA = Path(__file__).parent / "data"
AUTH = "sutazai.auth.v1.AuthService"
SYSTEM = "sutazai.system.v1.SystemService"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_recorded_clusters_give_each_instance_its_endpoint() -> None:
    payload = json.loads((DATA / "envoy_clusters.json").read_text())

    endpoints = parse_clusters(
        payload, [Upstream.grpc(AUTH, "auth"), Upstream.grpc(SYSTEM, "system")]
    )

    hosts = sorted(endpoints)
    assert [h.split("/")[0] for h in hosts] == ["auth", "system"]  # not the gateway's xds host
    (auth,) = endpoints[hosts[0]]
    assert auth.grpc_service == AUTH
    assert auth.health is EndpointHealth.HEALTHY
    assert auth.health_flags == ""
    assert auth.requests_total > 0


def test_an_instance_serving_http_routes_has_an_endpoint_in_their_cluster() -> None:
    payload = json.loads((DATA / "envoy_clusters_mesh.json").read_text())
    inference = Deployed(
        "inference", ("sutazai.inference.v1.InferenceService",), 1, http_prefixes=("/openai/",)
    )
    assert [u.cluster for u in inference.upstreams()] == [
        "sutazai.inference.v1.InferenceService",
        http_cluster("inference"),
    ]

    endpoints = parse_clusters(payload, inference.upstreams())

    (host,) = endpoints
    assert host.startswith("inference/")
    grpc, http = sorted(endpoints[host], key=lambda e: e.http_prefixes)
    assert (grpc.grpc_service, grpc.http_prefixes) == ("sutazai.inference.v1.InferenceService", ())
    assert (http.grpc_service, http.http_prefixes) == ("", ("/openai/",))
    assert http.health is EndpointHealth.HEALTHY
    assert http.requests_total == 43


@pytest.mark.parametrize(
    ("status", "health", "flags"),
    [
        ({"eds_health_status": "HEALTHY"}, EndpointHealth.HEALTHY, ""),
        (
            {"failed_active_health_check": True, "eds_health_status": "HEALTHY"},
            EndpointHealth.FAILING_HEALTH_CHECK,
            "/failed_active_hc",
        ),
        (
            {"failed_active_health_check": True, "failed_outlier_check": True},
            EndpointHealth.EJECTED,
            "/failed_outlier_check/failed_active_hc",
        ),
        ({"pending_dynamic_removal": True}, EndpointHealth.DRAINING, "/pending_dynamic_removal"),
        ({"eds_health_status": "DRAINING"}, EndpointHealth.DRAINING, "/eds_draining"),
    ],
)
def test_envoy_health_flags_become_one_verdict(
    status: dict[str, object], health: EndpointHealth, flags: str
) -> None:
    assert endpoint_health(status) == (health, flags)


def test_instance_rpc_counts_leave_out_health_checks() -> None:
    text = (DATA / "auth_metrics.txt").read_text()
    handled = re.findall(
        r'^sutazai_grpc_server_handled_total\{grpc_code="(\w+)",grpc_method="([^"]+)"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    calls = [(code, float(n)) for code, method, n in handled if "Health" not in method]
    assert calls, "the recording has RPCs besides health checks"

    counts = parse_rpc_counts(text)

    assert counts.requests_total == sum(n for _, n in calls)
    assert counts.errors_total == 0  # every recorded call was a client error


def test_server_errors_in_metrics_are_counted() -> None:
    text = (
        "# TYPE sutazai_grpc_server_handled_total counter\n"
        'sutazai_grpc_server_handled_total{grpc_code="OK",grpc_method="/a.B/C"} 5.0\n'
        'sutazai_grpc_server_handled_total{grpc_code="UNAVAILABLE",grpc_method="/a.B/C"} 2.0\n'
        'sutazai_grpc_server_handled_total{grpc_code="NOT_FOUND",grpc_method="/a.B/C"} 1.0\n'
    )

    assert parse_rpc_counts(text) == RpcCounts(requests_total=8, errors_total=2)


def registration(service: str, instance_id: str, heartbeat: datetime = T0) -> Registration:
    return Registration(
        service=service,
        instance_id=instance_id,
        label=f"{service}/{instance_id}",
        address=f"/run/{service}.{instance_id}.sock",
        version="0.1.0",
        pid=42,
        started_at=T0,
        heartbeat_at=heartbeat,
        grpc_services=(f"{service}.Service",),
    )


def test_view_lists_deployed_services_then_other_registered_names() -> None:
    board = StatusBoard()
    board.apply_round(
        [
            ProbeOutcome("auth/bbb", Kind.SERVICE_INSTANCE, "x", True, 1.0, T0),
            ProbeOutcome("auth/aaa", Kind.SERVICE_INSTANCE, "x", False, 1.0, T0, error="down"),
        ],
        T0,
    )
    endpoint = EndpointState(AUTH, EndpointHealth.HEALTHY, "", 3, 0, 1)

    views = services_view(
        [Deployed("system", (SYSTEM,), 1), Deployed("auth", (AUTH,), 2)],
        [registration("rogue", "ccc"), registration("auth", "bbb"), registration("auth", "aaa")],
        board.snapshot(),
        {"auth/bbb": [endpoint]},
        {"auth/bbb": RpcCounts(7, 1)},
    )

    assert [(v.name, v.desired_instances) for v in views] == [
        ("auth", 2),
        ("system", 1),
        ("rogue", 0),
    ]
    down, up = views[0].instances
    assert (down.instance_id, down.health, down.last_error) == ("aaa", Health.UNHEALTHY, "down")
    assert down.endpoints == ()
    assert (up.health, up.rpcs, up.endpoints) == (Health.HEALTHY, RpcCounts(7, 1), (endpoint,))
    assert views[1].instances == ()
    assert views[2].instances[0].health is None  # not probed yet


def test_heartbeats_alone_do_not_change_the_view() -> None:
    status = StatusBoard().snapshot()
    first = services_view([], [registration("auth", "a")], status, {}, {})
    beat = services_view([], [registration("auth", "a", T0 + timedelta(seconds=3))], status, {}, {})
    restarted = services_view([], [replace(registration("auth", "a"), pid=43)], status, {}, {})

    assert first != beat
    assert without_heartbeats(first) == without_heartbeats(beat)
    assert without_heartbeats(first) != without_heartbeats(restarted)
