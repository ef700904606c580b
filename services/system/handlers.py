"""gRPC handlers of ``sutazai.system.v1.SystemService``."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from sutazai.runtime.auth import current_identity
from sutazai.runtime.faults import invalid_argument
from sutazai.services.system.domain import (
    ComponentStatus,
    Health,
    Kind,
    MeshStatus,
    Overall,
    StatusBoard,
)
from sutazai.services.system.log_handlers import LogHandlers, LogState
from sutazai.services.system.prober import Prober
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


class SystemHandlers(LogHandlers, pb_grpc.SystemServiceServicer):
    """Answers from the status board the prober keeps current, and from the logs directory."""

    def __init__(self, board: StatusBoard, prober: Prober, reporter: str, logs: LogState) -> None:
        self._logs = logs
        self._board = board
        self._prober = prober
        self._reporter = reporter

    async def GetStatus(  # noqa: N802 - generated servicer method name
        self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStatusResponse:
        """Return the latest probe round; anonymous callers get the overall state only."""
        response = to_proto(self._board.snapshot(), self._reporter)
        if current_identity() is None:
            del response.components[:]
        return response

    async def RefreshStatus(  # noqa: N802 - generated servicer method name
        self, request: pb.RefreshStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.RefreshStatusResponse:
        """Probe now (or join the round in progress) and return the requested components."""
        violations = _name_violations(request.components)
        if violations:
            raise invalid_argument(violations)
        status = await self._prober.probe_once()
        known = {c.name for c in status.components}
        unknown = {
            f"components[{i}]": f"unknown component {name!r}; known: {', '.join(sorted(known))}"
            for i, name in enumerate(request.components)
            if name not in known
        }
        if unknown:
            raise invalid_argument(unknown)
        wanted = set(request.components)
        full = to_proto(status, self._reporter)
        response = pb.RefreshStatusResponse(
            overall=full.overall,
            components=[c for c in full.components if not wanted or c.name in wanted],
            reported_by=full.reported_by,
        )
        response.checked_at.CopyFrom(full.checked_at)
        return response


MAX_NAMES = 64
MAX_NAME_LENGTH = 128


def _name_violations(names: Sequence[str]) -> dict[str, str]:
    if len(names) > MAX_NAMES:
        return {"components": f"at most {MAX_NAMES} names"}
    return {
        f"components[{i}]": f"must be 1 to {MAX_NAME_LENGTH} characters"
        for i, name in enumerate(names)
        if not 0 < len(name) <= MAX_NAME_LENGTH
    }


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
