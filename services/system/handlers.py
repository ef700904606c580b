"""gRPC handlers of ``sutazai.system.v1.SystemService``."""

from __future__ import annotations

import grpc

from sutazai.services.system.domain import (
    ComponentStatus,
    Health,
    Kind,
    MeshStatus,
    Overall,
    StatusBoard,
)
from sutazai.system.v1 import system_service_pb2 as pb
from sutazai.system.v1 import system_service_pb2_grpc as pb_grpc

_OVERALL = {
    Overall.UNKNOWN: pb.OVERALL_STATE_UNSPECIFIED,
    Overall.HEALTHY: pb.HEALTHY,
    Overall.DEGRADED: pb.DEGRADED,
    Overall.CRITICAL: pb.CRITICAL,
}
_HEALTH = {
    Health.HEALTHY: pb.COMPONENT_STATE_HEALTHY,
    Health.UNHEALTHY: pb.COMPONENT_STATE_UNHEALTHY,
}
_KIND = {
    Kind.INFRASTRUCTURE: pb.COMPONENT_KIND_INFRASTRUCTURE,
    Kind.SERVICE_INSTANCE: pb.COMPONENT_KIND_SERVICE_INSTANCE,
}


class SystemHandlers(pb_grpc.SystemServiceServicer):
    """Answers from the status board the prober keeps current."""

    def __init__(self, board: StatusBoard, reporter: str) -> None:
        self._board = board
        self._reporter = reporter

    async def GetStatus(  # noqa: N802 - generated servicer method name
        self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStatusResponse:
        """Return the latest probe round."""
        return to_proto(self._board.snapshot(), self._reporter)


def to_proto(status: MeshStatus, reporter: str) -> pb.GetStatusResponse:
    """Render a mesh status as the API's response."""
    response = pb.GetStatusResponse(
        overall=_OVERALL[status.overall],
        components=[_component(c) for c in status.components],
        reported_by=reporter,
    )
    if status.checked_at is not None:
        response.checked_at.FromDatetime(status.checked_at)
    return response


def _component(component: ComponentStatus) -> pb.ComponentStatus:
    message = pb.ComponentStatus(
        name=component.name,
        kind=_KIND[component.kind],
        state=_HEALTH[component.health],
        address=component.address,
        latency_ms=component.latency_ms,
        last_error=component.last_error,
        version=component.version,
    )
    message.since.FromDatetime(component.since)
    return message
