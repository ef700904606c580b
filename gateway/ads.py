"""The Aggregated Discovery Service (SotW ADS) on a grpcio aio server.

envoy-data-plane ships grpclib service bases only; the gateway shares the mesh's grpcio runtime
instead, so the one RPC is registered through a generic handler with betterproto2 messages
(de)serialized by hand (``DiscoveryRequest.parse`` in, ``bytes(response)`` out).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import grpc
import structlog
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse

from sutazai.gateway.session import AdsSession
from sutazai.gateway.snapshot import Snapshot, SnapshotCache
from sutazai.gateway.xds_status import XdsStatus

log = structlog.get_logger(__name__)

ADS_SERVICE: Final = "envoy.service.discovery.v3.AggregatedDiscoveryService"
ADS_METHOD: Final = "StreamAggregatedResources"


class _RequestsEnded:
    """Marker: the client half-closed or the stream broke."""


_REQUESTS_ENDED: Final = _RequestsEnded()

_StreamEvent = DiscoveryRequest | Snapshot | _RequestsEnded


class AggregatedDiscoveryService:
    """Serves :class:`~sutazai.gateway.snapshot.SnapshotCache` content to Envoys over ADS."""

    def __init__(self, cache: SnapshotCache, status: XdsStatus) -> None:
        self._cache = cache
        self._status = status
        self._streams: set[asyncio.Queue[_StreamEvent]] = set()

    def close_streams(self) -> None:
        """End every open stream (OK status); Envoys keep their config and reconnect.

        Lets a stopping server finish at once instead of waiting out its grace period on
        streams that never end by themselves.
        """
        for events in self._streams:
            events.put_nowait(_REQUESTS_ENDED)

    def rpc_handler(self) -> grpc.GenericRpcHandler:
        """The handler to add to a grpc.aio server (``server.add_generic_rpc_handlers``)."""
        return grpc.method_handlers_generic_handler(
            ADS_SERVICE,
            {
                ADS_METHOD: grpc.stream_stream_rpc_method_handler(
                    self.stream_aggregated_resources,
                    request_deserializer=DiscoveryRequest.parse,
                    response_serializer=bytes,
                )
            },
        )

    async def stream_aggregated_resources(
        self,
        requests: AsyncIterator[DiscoveryRequest],
        context: grpc.aio.ServicerContext[DiscoveryRequest, DiscoveryResponse],
    ) -> AsyncIterator[DiscoveryResponse]:
        """One Envoy's ADS stream: answer its requests and push snapshot changes.

        Requests and snapshot changes are merged into one queue, so a change is pushed without
        waiting for the next request and the session sees events in a single order.
        """
        events: asyncio.Queue[_StreamEvent] = asyncio.Queue()
        self._streams.add(events)
        session = AdsSession(status=self._status)
        self._status.stream_opened()
        log.info("xds.stream_opened", peer=context.peer())
        with self._cache.watching(events.put_nowait):
            reader = asyncio.create_task(_read_requests(requests, events))
            try:
                while True:
                    event = await events.get()
                    if isinstance(event, _RequestsEnded):
                        return
                    if isinstance(event, DiscoveryRequest):
                        responses = session.on_request(event, self._cache.snapshot)
                    else:
                        # Always the latest snapshot: queued intermediate ones coalesce.
                        latest = self._cache.snapshot
                        responses = session.on_snapshot(latest) if latest is not None else []
                    for response in responses:
                        yield response
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                self._streams.discard(events)
                self._status.stream_closed()
                log.info("xds.stream_closed", node=session.node_id, peer=context.peer())


async def _read_requests(
    requests: AsyncIterator[DiscoveryRequest], events: asyncio.Queue[_StreamEvent]
) -> None:
    try:
        async for request in requests:
            events.put_nowait(request)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a broken stream ends the session like a half-close
        log.info("xds.stream_broken", error=repr(exc))
    finally:
        events.put_nowait(_REQUESTS_ENDED)
