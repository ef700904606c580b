"""Every mesh service at one moment: its instances and how each one looks from every side.

An instance's row puts together what the registry says (address, version, pid, start, last
heartbeat), the latest probe of it (status board), Envoy's view of it in each cluster (admin
``/clusters?format=json``: health flags, request counts) and its own RPC counters (its
Prometheus ``sutazai_grpc_server_handled_total``). The payloads are parsed here; fetching them
is the caller's job.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from sutazai.services.system.domain.status import ComponentStatus, Health, MeshStatus
from sutazai.services.system.domain.upstreams import Upstream, service_upstreams

HANDLED_FAMILY: Final = "sutazai_grpc_server_handled"
"""The runtime's per-method, per-status RPC counter (``runtime.metrics.RpcMetrics``)."""
HEALTH_METHODS: Final = "/grpc.health.v1.Health/"
"""Health checks are left out of an instance's RPC counts: Envoy and the system service make
them every few seconds whether anyone calls the instance or not."""
SERVER_ERROR_CODES: Final = frozenset(
    {"UNKNOWN", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "DEADLINE_EXCEEDED", "UNIMPLEMENTED"}
)
"""gRPC statuses counted as the server's fault (as Envoy maps them: 5xx)."""


class EndpointHealth(enum.Enum):
    """Envoy's verdict on one endpoint."""

    HEALTHY = "healthy"
    FAILING_HEALTH_CHECK = "failing_health_check"
    EJECTED = "ejected"
    DRAINING = "draining"


@dataclass(frozen=True, slots=True)
class EndpointState:
    """One instance in one Envoy cluster (a gRPC service's, or its service's HTTP routes')."""

    grpc_service: str
    """Empty for the HTTP routes' cluster."""
    health: EndpointHealth
    health_flags: str
    requests_total: int
    errors_total: int
    active_requests: int
    http_prefixes: tuple[str, ...] = ()
    """The HTTP routes' prefixes (for their cluster)."""


@dataclass(frozen=True, slots=True)
class RpcCounts:
    """What an instance's own metrics say it answered since it started."""

    requests_total: int = 0
    errors_total: int = 0


@dataclass(frozen=True, slots=True)
class Registration:
    """An instance as the registry holds it."""

    service: str
    instance_id: str
    label: str
    """How the status board and Envoy name it: ``<service>/<instance id>``."""
    address: str
    version: str
    pid: int
    started_at: datetime | None
    heartbeat_at: datetime | None
    grpc_services: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InstanceView:
    """One instance's row."""

    instance_id: str
    address: str
    version: str
    pid: int
    started_at: datetime | None
    heartbeat_at: datetime | None
    health: Health | None
    """``None`` until the system service has probed it."""
    last_error: str
    rpcs: RpcCounts
    endpoints: tuple[EndpointState, ...]


@dataclass(frozen=True, slots=True)
class ServiceView:
    """One service: what the deployment asks for and what runs."""

    name: str
    grpc_services: tuple[str, ...]
    desired_instances: int
    instances: tuple[InstanceView, ...]


@dataclass(frozen=True, slots=True)
class Deployed:
    """A service of ``deploy/mesh.toml``."""

    name: str
    grpc_services: tuple[str, ...]
    instances: int
    http_prefixes: tuple[str, ...] = ()

    def upstreams(self) -> list[Upstream]:
        """Its Envoy clusters."""
        return service_upstreams(self.name, self.grpc_services, self.http_prefixes)


def services_view(
    deployed: Sequence[Deployed],
    registrations: Iterable[Registration],
    status: MeshStatus,
    endpoints: Mapping[str, Sequence[EndpointState]],
    rpcs: Mapping[str, RpcCounts],
) -> tuple[ServiceView, ...]:
    """Every deployed service by name, then any other registered name.

    ``endpoints`` and ``rpcs`` are keyed by instance label (``<service>/<instance id>``).
    """
    probed: dict[str, ComponentStatus] = {c.name: c for c in status.components}
    by_service: dict[str, list[InstanceView]] = {}
    for registration in registrations:
        component = probed.get(registration.label)
        by_service.setdefault(registration.service, []).append(
            InstanceView(
                instance_id=registration.instance_id,
                address=registration.address,
                version=registration.version,
                pid=registration.pid,
                started_at=registration.started_at,
                heartbeat_at=registration.heartbeat_at,
                health=component.health if component else None,
                last_error=component.last_error if component else "",
                rpcs=rpcs.get(registration.label, RpcCounts()),
                endpoints=tuple(
                    sorted(
                        endpoints.get(registration.label, ()),
                        key=lambda e: (e.grpc_service, e.http_prefixes),
                    )
                ),
            )
        )
    views = [
        ServiceView(
            name=entry.name,
            grpc_services=entry.grpc_services,
            desired_instances=entry.instances,
            instances=_ordered(by_service.pop(entry.name, [])),
        )
        for entry in sorted(deployed, key=lambda e: e.name)
    ]
    views += [
        ServiceView(name=name, grpc_services=(), desired_instances=0, instances=_ordered(found))
        for name, found in sorted(by_service.items())
    ]
    return tuple(views)


def _ordered(instances: list[InstanceView]) -> tuple[InstanceView, ...]:
    return tuple(sorted(instances, key=lambda i: i.instance_id))


def without_heartbeats(views: Iterable[ServiceView]) -> tuple[ServiceView, ...]:
    """The views with every ``heartbeat_at`` blanked: what must change to be worth sending."""
    return tuple(
        replace(view, instances=tuple(replace(i, heartbeat_at=None) for i in view.instances))
        for view in views
    )


def parse_clusters(payload: Any, upstreams: Iterable[Upstream]) -> dict[str, list[EndpointState]]:
    """Envoy's endpoints of ``upstreams`` by host name (the gateway names hosts by label).

    Raises:
        ValueError: the payload is not Envoy's ``/clusters?format=json``.

    """
    if not isinstance(payload, dict) or not isinstance(payload.get("cluster_statuses"), list):
        raise ValueError("not an Envoy /clusters?format=json payload")
    wanted = {upstream.cluster: upstream for upstream in upstreams}
    found: dict[str, list[EndpointState]] = {}
    for cluster in payload["cluster_statuses"]:
        name = cluster.get("name") if isinstance(cluster, dict) else None
        upstream = wanted.get(name) if isinstance(name, str) else None
        if upstream is None:
            continue
        for host in cluster.get("host_statuses") or []:
            if not isinstance(host, dict) or not isinstance(host.get("hostname"), str):
                continue
            health, flags = endpoint_health(host.get("health_status"))
            stats = _host_stats(host.get("stats"))
            found.setdefault(host["hostname"], []).append(
                EndpointState(
                    grpc_service=upstream.grpc_service,
                    http_prefixes=upstream.http_prefixes,
                    health=health,
                    health_flags=flags,
                    requests_total=stats.get("rq_total", 0),
                    errors_total=stats.get("rq_error", 0),
                    active_requests=stats.get("rq_active", 0),
                )
            )
    return found


# Envoy's host health flags as its text /clusters output spells them, worst verdict first.
_FLAGS: Final = (
    ("failed_outlier_check", "/failed_outlier_check", EndpointHealth.EJECTED),
    ("failed_active_health_check", "/failed_active_hc", EndpointHealth.FAILING_HEALTH_CHECK),
    ("pending_active_hc", "/pending_active_hc", EndpointHealth.FAILING_HEALTH_CHECK),
    ("active_hc_timeout", "/active_hc_timeout", EndpointHealth.FAILING_HEALTH_CHECK),
    (
        "excluded_via_immediate_hc_fail",
        "/excluded_via_immediate_hc_fail",
        EndpointHealth.FAILING_HEALTH_CHECK,
    ),
    ("failed_eds_health", "/failed_eds_health", EndpointHealth.DRAINING),
    ("pending_dynamic_removal", "/pending_dynamic_removal", EndpointHealth.DRAINING),
)


def endpoint_health(status: Any) -> tuple[EndpointHealth, str]:
    """Envoy's verdict and raw flags (e.g. ``/failed_active_hc``) from a host's health_status."""
    if not isinstance(status, dict):
        return EndpointHealth.HEALTHY, ""
    raised = [(flag, verdict) for key, flag, verdict in _FLAGS if status.get(key) is True]
    eds = status.get("eds_health_status")
    if eds in {"DRAINING", "UNHEALTHY", "TIMEOUT"}:
        raised.append((f"/eds_{str(eds).lower()}", EndpointHealth.DRAINING))
    if not raised:
        return EndpointHealth.HEALTHY, ""
    flags = "".join(flag for flag, _ in raised)
    order = [verdict for _, _, verdict in _FLAGS] + [EndpointHealth.DRAINING]
    worst = min((verdict for _, verdict in raised), key=order.index)
    return worst, flags


def _host_stats(stats: Any) -> dict[str, int]:
    found: dict[str, int] = {}
    for stat in stats if isinstance(stats, list) else []:
        if isinstance(stat, dict) and isinstance(stat.get("name"), str):
            # Zero values are left out of the payload; numbers arrive as strings.
            raw = stat.get("value", "0")
            try:
                found[stat["name"]] = int(raw)
            except (TypeError, ValueError):
                continue
    return found


def parse_rpc_counts(text: str) -> RpcCounts:
    """Completed RPCs and server errors from an instance's Prometheus exposition.

    Health checks do not count (see :data:`HEALTH_METHODS`).

    Raises:
        ValueError: the text is not the Prometheus text format.

    """
    total = errors = 0
    for family in text_string_to_metric_families(text):
        if family.name != HANDLED_FAMILY:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue  # the "_created" timestamps
            if sample.labels.get("grpc_method", "").startswith(HEALTH_METHODS):
                continue  # the mesh's own probes (Envoy, the system service), not traffic
            count = int(sample.value)
            total += count
            if sample.labels.get("grpc_code") in SERVER_ERROR_CODES:
                errors += count
    return RpcCounts(requests_total=total, errors_total=errors)


@dataclass(frozen=True, slots=True)
class Inventory:
    """Every service at one moment."""

    observed_at: datetime
    services: tuple[ServiceView, ...]
