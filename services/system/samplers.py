"""The I/O behind the traffic and services streams: Envoy admin, the registry, instance metrics.

One :class:`TrafficSampler` reads Envoy's statistics on its own cadence and one
:class:`InventoryWatch` puts the services' view together after each probe round, however many
clients watch; each publishes to its :class:`~.domain.fanout.Broadcast`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Final

import httpx
import structlog

from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.registry import Registry, instance_label
from sutazai.services.system.domain import StatusBoard
from sutazai.services.system.domain.fanout import Broadcast
from sutazai.services.system.domain.inventory import (
    Deployed,
    EndpointState,
    Inventory,
    Registration,
    RpcCounts,
    parse_clusters,
    parse_rpc_counts,
    services_view,
    without_heartbeats,
)
from sutazai.services.system.domain.traffic import (
    EnvoyReading,
    TrafficSample,
    parse_stats,
    traffic_between,
)
from sutazai.services.system.domain.upstreams import Upstream

log = structlog.get_logger(__name__)

RESEND_SECONDS: Final = 30.0
"""The services view is sent at least this often, changed or not (keeps proxies' streams open)."""
MAX_METRICS_BYTES: Final = 1024 * 1024
"""An instance's metrics page larger than this is not read (it is a few kB)."""


def stats_filter(edge_stat_prefix: str) -> str:
    """Envoy's ``/stats`` ``filter`` regex: only the stats :mod:`.domain.traffic` reads."""
    edge = edge_stat_prefix.replace(".", r"\.")
    return (
        r"^(cluster\..+\.(grpc\.[0-9]+|upstream_rq_(active|time|completed|4xx|5xx))"
        rf"|http\.{edge}\.downstream_rq_(completed|4xx|5xx|active|time))$"
    )


class TrafficSampler:
    """Reads Envoy's ``/stats`` every ``interval`` seconds and publishes a traffic sample."""

    def __init__(
        self,
        admin: httpx.AsyncClient,
        upstreams: Iterable[Upstream],
        *,
        edge_stat_prefix: str,
        interval: float,
    ) -> None:
        """Sample through ``admin`` (Envoy's admin socket) the clusters of ``upstreams``."""
        self._admin = admin
        self._upstreams = tuple(upstreams)
        self._edge = edge_stat_prefix
        self._interval = interval
        self._previous: EnvoyReading | None = None
        self.samples: Broadcast[TrafficSample] = Broadcast()

    async def sample_once(self) -> TrafficSample:
        """Read Envoy now and publish the sample since the previous reading.

        Raises:
            httpx.HTTPError: Envoy's admin interface did not answer.
            ValueError: it answered something that is not its JSON stats.

        """
        reply = await self._admin.get(
            "/stats",
            params={
                "format": "json",
                "histogram_buckets": "cumulative",
                "filter": stats_filter(self._edge),
            },
        )
        reply.raise_for_status()
        reading = parse_stats(
            reply.json(),
            upstreams=self._upstreams,
            edge_stat_prefix=self._edge,
            taken_at=datetime.now(UTC),
        )
        sample = traffic_between(self._previous, reading, self._upstreams)
        self._previous = reading
        self.samples.publish(sample)
        return sample

    async def run(self) -> None:
        """Sample forever; a failed reading is logged and the next window is just longer."""
        while True:
            try:
                await self.sample_once()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("system.traffic_sample_failed", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(self._interval)


class InventoryWatch:
    """Puts the services' view together after every probe round while anyone watches it.

    A view is published when it differs from the last one published (heartbeat times aside)
    or :data:`RESEND_SECONDS` after it, so watchers hear of every change within a round.
    """

    def __init__(
        self,
        board: StatusBoard,
        registry: Registry,
        admin: httpx.AsyncClient,
        scraper: httpx.AsyncClient,
        deployed: Sequence[Deployed],
        *,
        resend_seconds: float = RESEND_SECONDS,
    ) -> None:
        """Build views from ``board``, ``registry``, Envoy's ``admin`` and instance metrics.

        ``scraper`` fetches each instance's Prometheus page; ``deployed`` is the catalog.
        """
        self._board = board
        self._registry = registry
        self._admin = admin
        self._scraper = scraper
        self._deployed = tuple(deployed)
        self._upstreams = [upstream for entry in self._deployed for upstream in entry.upstreams()]
        self._resend = resend_seconds
        self._published_at = 0.0
        self._rpcs: dict[str, RpcCounts] = {}
        self._build: asyncio.Future[Inventory] | None = None
        self.views: Broadcast[Inventory] = Broadcast()

    async def refresh(self) -> Inventory:
        """Build the view now (or join the build in progress) and publish it if due."""
        if self._build is None or self._build.done():
            self._build = asyncio.ensure_future(self._build_and_publish())
        return await asyncio.shield(self._build)

    async def run(self) -> None:
        """Follow the probe rounds; build a view after each while there are watchers."""
        with self._board.subscribe() as rounds:
            async for _ in rounds:
                if not self.views.subscribers:
                    continue
                try:
                    await self.refresh()
                except Exception as exc:  # must not end the instance
                    # Watchers keep the last view; the next round tries again.
                    log.warning("system.inventory_failed", error=str(exc) or type(exc).__name__)

    async def _build_and_publish(self) -> Inventory:
        instances = await self._registry.list()
        endpoints, rpcs = await asyncio.gather(
            self._endpoints(), asyncio.gather(*(self._scrape(i) for i in instances))
        )
        for label, counts in rpcs:
            if counts is not None:
                self._rpcs[label] = counts
        live = {instance_label(i.service, i.instance_id) for i in instances}
        self._rpcs = {label: c for label, c in self._rpcs.items() if label in live}
        inventory = Inventory(
            observed_at=datetime.now(UTC),
            services=services_view(
                self._deployed,
                [_registration(i) for i in instances],
                self._board.snapshot(),
                endpoints,
                self._rpcs,
            ),
        )
        last = self.views.latest
        changed = last is None or without_heartbeats(last.services) != without_heartbeats(
            inventory.services
        )
        if changed or time.monotonic() - self._published_at >= self._resend:
            self._published_at = time.monotonic()
            self.views.publish(inventory)
        return inventory

    async def _endpoints(self) -> dict[str, list[EndpointState]]:
        try:
            reply = await self._admin.get("/clusters", params={"format": "json"})
            reply.raise_for_status()
            return parse_clusters(reply.json(), self._upstreams)
        except (httpx.HTTPError, ValueError) as exc:
            # Shown as "Envoy does not know the endpoint" until Envoy answers again.
            log.warning("system.envoy_clusters_failed", error=str(exc) or type(exc).__name__)
            return {}

    async def _scrape(self, instance: ServiceInstance) -> tuple[str, RpcCounts | None]:
        """The instance's own RPC counters; ``None`` (keep the last ones) when unreadable."""
        label = instance_label(instance.service, instance.instance_id)
        url = _metrics_url(instance)
        if url is None:
            return label, None
        try:
            async with self._scraper.stream("GET", url) as reply:
                reply.raise_for_status()
                body = bytearray()
                async for chunk in reply.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_METRICS_BYTES:
                        raise ValueError(f"metrics page over {MAX_METRICS_BYTES} bytes")
            return label, parse_rpc_counts(body.decode("utf-8", errors="replace"))
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("system.metrics_scrape_failed", instance=label, error=str(exc))
            return label, None


def _metrics_url(instance: ServiceInstance) -> str | None:
    """``http://host:port/metrics`` of an instance, or ``None``.

    Only on the host its gRPC server is probed on: a registry entry cannot steer the system
    service's requests to another host.
    """
    host, _, port = instance.metrics_address.rpartition(":")
    if not port.isdigit() or not host or host != instance.host:
        return None
    return f"http://{host}:{int(port)}/metrics"


def _registration(instance: ServiceInstance) -> Registration:
    return Registration(
        service=instance.service,
        instance_id=instance.instance_id,
        label=instance_label(instance.service, instance.instance_id),
        address=instance.socket_path or f"{instance.host}:{instance.port}",
        version=instance.version,
        pid=instance.pid,
        started_at=instance.started_at.ToDatetime(UTC) if instance.HasField("started_at") else None,
        heartbeat_at=(
            instance.heartbeat_at.ToDatetime(UTC) if instance.HasField("heartbeat_at") else None
        ),
        grpc_services=tuple(instance.grpc_services),
    )
