"""gRPC handlers of ``sutazai.system.v1.SystemService``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence

import grpc

from sutazai.runtime.auth import caller_key, current_identity
from sutazai.runtime.errors import RegistryError
from sutazai.runtime.faults import invalid_argument, resource_exhausted, unavailable
from sutazai.runtime.stream_slots import StreamSlots
from sutazai.services.system.domain import (
    ComponentStatus,
    Health,
    Kind,
    MeshStatus,
    Overall,
    StatusBoard,
)
from sutazai.services.system.log_handlers import LogHandlers
from sutazai.services.system.log_reader import LogReader
from sutazai.services.system.messages import services_message, traffic_message
from sutazai.services.system.prober import Prober
from sutazai.services.system.samplers import InventoryWatch, TrafficSampler
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


WATCH_RETRY_SECONDS = 5.0
"""When a refused watcher may try again (streams end only when clients leave)."""


class SystemHandlers(LogHandlers, pb_grpc.SystemServiceServicer):
    """Answers from the status board the prober keeps current, the samplers and the logs."""

    def __init__(
        self,
        board: StatusBoard,
        prober: Prober,
        reporter: str,
        *,
        traffic: TrafficSampler,
        inventory: InventoryWatch,
        streams: StreamSlots,
        logs: LogReader,
    ) -> None:
        self._logs = logs
        self._board = board
        self._prober = prober
        self._reporter = reporter
        self._traffic = traffic
        self._inventory = inventory
        self._streams = streams

    @contextlib.contextmanager
    def _stream_slot(self, context: grpc.aio.ServicerContext) -> Iterator[None]:
        """Hold one of the instance's streams (watches and log tails) for the block, or refuse."""
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        caller = caller_key(current_identity(), metadata, context.peer())
        if not self._streams.take(caller):
            raise resource_exhausted(
                f"too many streams: at most {self._streams.per_caller} per caller and "
                f"{self._streams.limit} per instance",
                WATCH_RETRY_SECONDS,
            )
        try:
            yield
        finally:
            self._streams.give_back(caller)

    async def WatchStatus(  # noqa: N802 - generated servicer method name
        self, request: pb.WatchStatusRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchStatusResponse]:
        """The latest probe round at once, then each round; overall only for anonymous callers."""
        components = current_identity() is not None
        with self._stream_slot(context), self._board.subscribe() as rounds:
            async for status in rounds:
                yield watch_status_message(status, self._reporter, components=components)

    async def WatchTraffic(  # noqa: N802 - generated servicer method name
        self, request: pb.WatchTrafficRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchTrafficResponse]:
        """The latest traffic sample at once (when there is one), then each new sample."""
        with self._stream_slot(context), self._traffic.samples.subscribe() as samples:
            async for sample in samples:
                yield traffic_message(sample)

    async def WatchServices(  # noqa: N802 - generated servicer method name
        self, request: pb.WatchServicesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchServicesResponse]:
        """A fresh view at once, then one whenever it changes, and at least every 30 s."""
        with self._stream_slot(context):
            # Fresh, not the last one published: nobody may have watched for a while.
            try:
                await self._inventory.refresh()
            except RegistryError as exc:
                raise unavailable(
                    "the service registry cannot be read", WATCH_RETRY_SECONDS
                ) from exc
            with self._inventory.views.subscribe() as views:
                async for inventory in views:
                    yield services_message(inventory)

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


def watch_status_message(
    status: MeshStatus, reporter: str, *, components: bool
) -> pb.WatchStatusResponse:
    """A probe round as a WatchStatus message; without ``components`` the overall state only."""
    full = to_proto(status, reporter)
    response = pb.WatchStatusResponse(
        overall=full.overall,
        components=full.components if components else [],
        reported_by=full.reported_by,
    )
    if full.HasField("checked_at"):
        response.checked_at.CopyFrom(full.checked_at)
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
