"""The traffic and services streams' domain values rendered as the API's messages."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from sutazai.services.system.domain import Health
from sutazai.services.system.domain.inventory import (
    EndpointHealth,
    EndpointState,
    InstanceView,
    Inventory,
    ServiceView,
)
from sutazai.services.system.domain.traffic import Figures, ServiceTraffic, TrafficSample
from sutazai.system.v1 import system_service_pb2 as pb

_ENDPOINT_HEALTH = {
    EndpointHealth.HEALTHY: pb.ENDPOINT_HEALTH_HEALTHY,
    EndpointHealth.FAILING_HEALTH_CHECK: pb.ENDPOINT_HEALTH_FAILING_HEALTH_CHECK,
    EndpointHealth.EJECTED: pb.ENDPOINT_HEALTH_EJECTED,
    EndpointHealth.DRAINING: pb.ENDPOINT_HEALTH_DRAINING,
}
_STATE = {
    None: pb.COMPONENT_STATE_UNSPECIFIED,
    Health.HEALTHY: pb.COMPONENT_STATE_HEALTHY,
    Health.UNHEALTHY: pb.COMPONENT_STATE_UNHEALTHY,
}


def _timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def traffic_message(sample: TrafficSample) -> pb.WatchTrafficResponse:
    """One traffic sample."""
    return pb.WatchTrafficResponse(
        sampled_at=_timestamp(sample.sampled_at),
        window_seconds=sample.window_seconds,
        edge=_figures(sample.edge),
        services=[_service_traffic(s) for s in sample.services],
    )


def _service_traffic(traffic: ServiceTraffic) -> pb.ServiceTraffic:
    return pb.ServiceTraffic(
        service=traffic.service,
        grpc_service=traffic.grpc_service,
        figures=_figures(traffic.figures),
        http_prefixes=traffic.http_prefixes,
    )


def _figures(figures: Figures) -> pb.TrafficFigures:
    return pb.TrafficFigures(
        requests_per_second=figures.requests_per_second,
        error_rate=figures.error_rate,
        client_error_rate=figures.client_error_rate,
        p50_ms=figures.p50_ms,
        p99_ms=figures.p99_ms,
        requests_total=figures.requests_total,
        errors_total=figures.errors_total,
        active_requests=figures.active_requests,
    )


def services_message(inventory: Inventory) -> pb.WatchServicesResponse:
    """Every service's view."""
    return pb.WatchServicesResponse(
        observed_at=_timestamp(inventory.observed_at),
        services=[_service(s) for s in inventory.services],
    )


def _service(view: ServiceView) -> pb.ServiceView:
    return pb.ServiceView(
        name=view.name,
        grpc_services=view.grpc_services,
        desired_instances=view.desired_instances,
        instances=[_instance(i) for i in view.instances],
    )


def _instance(view: InstanceView) -> pb.InstanceView:
    return pb.InstanceView(
        instance_id=view.instance_id,
        address=view.address,
        version=view.version,
        pid=view.pid,
        started_at=_timestamp(view.started_at),
        heartbeat_at=_timestamp(view.heartbeat_at),
        state=_STATE[view.health],
        last_error=view.last_error,
        requests_total=view.rpcs.requests_total,
        errors_total=view.rpcs.errors_total,
        endpoints=[_endpoint(e) for e in view.endpoints],
    )


def _endpoint(state: EndpointState) -> pb.EndpointView:
    return pb.EndpointView(
        grpc_service=state.grpc_service,
        health=_ENDPOINT_HEALTH[state.health],
        health_flags=state.health_flags,
        requests_total=state.requests_total,
        errors_total=state.errors_total,
        active_requests=state.active_requests,
        http_prefixes=state.http_prefixes,
    )
