"""The gateway process: one gRPC Unix socket serving ADS to Envoy, mesh-wide reflection and health.

:class:`Gateway` wires the parts together: the registry mirror and the public key watch feed a
:class:`~sutazai.gateway.snapshot.SnapshotBuilder`, whose snapshots go into the
:class:`~sutazai.gateway.snapshot.SnapshotCache` that every ADS stream serves from; the registry
also feeds the mesh health statuses. :func:`run_gateway` is the process entry point
(``python -m sutazai.gateway``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import grpc
import structlog
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry

from sutazai.gateway.access import GatewayAccess
from sutazai.gateway.ads import AggregatedDiscoveryService
from sutazai.gateway.catalog import REFLECTION_V1_SERVICE, ServiceCatalog
from sutazai.gateway.mesh_health import MeshHealth
from sutazai.gateway.registry_trust import RegistryTrust
from sutazai.gateway.registry_watch import Instances, RegistryMirror, RegistryOpener
from sutazai.gateway.resources import EdgePolicy, HttpService, http_services
from sutazai.gateway.snapshot import SnapshotBuilder, SnapshotCache
from sutazai.gateway.xds_status import XdsStatus
from sutazai.runtime.auth import Authenticator, open_authenticator
from sutazai.runtime.deployment import grpc_owners, http_owners, load_catalog
from sutazai.runtime.exposure import require_safe_edge
from sutazai.runtime.interceptors import ServerInterceptor
from sutazai.runtime.key_watch import POLL_INTERVAL, KeyFileWatch
from sutazai.runtime.keys import PublicKeys
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.metrics import MetricsEndpoint, RpcMetrics
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import MeshSettings
from sutazai.runtime.sockets import (
    checked_socket_path,
    grpc_target,
    prepare_run_dir,
    remove_socket,
    restrict_socket,
)

log = structlog.get_logger(__name__)

INITIAL_SYNC_TIMEOUT: Final = 5.0
"""How long to wait for the registry before serving a configuration without endpoints."""
STOP_GRACE: Final = 2.0
"""Seconds in-flight reflection and health calls get when the gateway stops."""


def create_grpc_server(
    metrics: CollectorRegistry, access: GatewayAccess | None = None
) -> grpc.aio.Server:
    """The gateway's grpc.aio server, before any service is added.

    It carries the services' interceptor (request ids in the logs, per-method metrics, status
    mapping) with the gateway's ``access`` checks (revoked tokens; see :mod:`.access`). Its socket
    is reachable by the mesh's user only (0700 run directory), and Envoy checks token signatures
    for reflection.
    """
    return grpc.aio.server(
        interceptors=[ServerInterceptor(RpcMetrics.create(metrics), access)],
        options=[
            # ADS streams are quiet for long periods; accept client keepalive pings during
            # them instead of answering GOAWAY "too_many_pings".
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )


class Gateway:
    """The xDS control plane bound to one registry. Use :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        open_registry: RegistryOpener,
        *,
        catalog: ServiceCatalog,
        edge_host: str,
        edge_port: int,
        jwks_file: Path,
        trust: RegistryTrust,
        http: Sequence[HttpService] = (),
        policy: EdgePolicy | None = None,
        metrics_registry: CollectorRegistry | None = None,
        initial_sync_timeout: float = INITIAL_SYNC_TIMEOUT,
        retry_wait_max: float = 5.0,
        keys_poll_interval: float = POLL_INTERVAL,
        authenticator: Authenticator | None = None,
    ) -> None:
        """Prepare a gateway configuring an edge that listens on ``edge_host:edge_port``.

        ``open_registry`` is called from the background (and again after NATS failures), so
        the gateway serves Envoy even while NATS is still starting. Only what ``trust`` admits of
        each registry entry is routed. Envoy checks tokens against the public keys in
        ``jwks_file``, which is followed for rotations. The ``http`` services get their path
        prefixes routed to their instances. With an ``authenticator`` the gateway's
        reflection and health refuse revoked tokens (Envoy cannot); without one (tests of the
        xDS side only) Envoy's signature check is all.

        Raises:
            ConfigurationError: the public key file is missing or unreadable.
        """
        self._catalog = catalog
        self._keys = KeyFileWatch.public_keys(jwks_file)
        self._keys_poll_interval = keys_poll_interval
        self._builder = SnapshotBuilder(
            catalog,
            policy or EdgePolicy(),
            host=edge_host,
            port=edge_port,
            jwks=self._keys.load(),
            http=http,
        )
        self.cache = SnapshotCache()
        """The snapshots served to Envoy."""
        self._metrics_registry = metrics_registry or CollectorRegistry()
        self.status = XdsStatus(self._metrics_registry)
        """ACKs and NACKs reported by Envoys."""
        self._health = MeshHealth(health.aio.HealthServicer(), catalog.service_names)
        self._mirror = RegistryMirror(
            open_registry,
            self._on_registry_change,
            admit=trust.admit,
            retry_wait_max=retry_wait_max,
        )
        self._initial_sync_timeout = initial_sync_timeout
        self._access = GatewayAccess(authenticator) if authenticator is not None else None
        self._access_task: asyncio.Task[None] | None = None
        self._ads = AggregatedDiscoveryService(self.cache, self.status)
        self._server: grpc.aio.Server | None = None
        self._mirror_task: asyncio.Task[None] | None = None
        self._fallback_task: asyncio.Task[None] | None = None
        self._keys_task: asyncio.Task[None] | None = None
        self._socket: Path | None = None

    @property
    def socket(self) -> Path:
        """The Unix socket the gateway listens on (after :meth:`start`)."""
        if self._socket is None:
            raise RuntimeError("the gateway is not started")
        return self._socket

    @property
    def instances(self) -> Instances:
        """The registry instances the current configuration was built from."""
        return self._mirror.instances

    async def start(self, socket: Path) -> None:
        """Serve on the Unix socket ``socket`` and start following the registry.

        Its directory is made 0700 (created if missing) and the socket 0600: only the mesh's
        user reaches ADS, which carries the whole edge configuration.

        Raises:
            ConfigurationError: the directory is not this user's or the path is too long.
        """
        prepare_run_dir(socket.parent)
        server = create_grpc_server(self._metrics_registry, self._access)
        server.add_generic_rpc_handlers([self._ads.rpc_handler()])
        health_pb2_grpc.add_HealthServicer_to_server(self._health.servicer, server)
        _add_reflection(server, self._catalog)
        if server.add_insecure_port(grpc_target(checked_socket_path(socket))) == 0:
            raise OSError(f"cannot bind the gateway to {socket}")
        restrict_socket(socket)
        await server.start()
        self._server, self._socket = server, socket
        await self._health.start()
        self._mirror_task = asyncio.create_task(self._mirror.run(), name="gateway:registry")
        self._fallback_task = asyncio.create_task(
            self._publish_if_registry_silent(), name="gateway:sync-timeout"
        )
        self._keys_task = asyncio.create_task(
            self._keys.run(self._on_keys_change, self._keys_poll_interval), name="gateway:keys"
        )
        if self._access is not None:
            self._access_task = asyncio.create_task(self._access.run(), name="gateway:revocations")
        log.info("gateway.started", socket=str(socket), keys=str(self._keys.path))

    async def wait_failed(self) -> None:
        """Raise when following the registry or the public keys failed (after :meth:`start`)."""
        if self._mirror_task is None or self._keys_task is None:
            raise RuntimeError("the gateway is not started")
        done, _ = await asyncio.wait(
            [self._mirror_task, self._keys_task], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            task.result()

    async def stop(self) -> None:
        """Report NOT_SERVING, stop following the registry, end ADS streams, stop serving."""
        if self._server is None:
            return
        await self._health.shutdown()
        self._ads.close_streams()
        for task in (self._mirror_task, self._fallback_task, self._keys_task, self._access_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._server.stop(STOP_GRACE)
        self._server = None
        if self._socket is not None:
            remove_socket(self._socket)
        log.info("gateway.stopped")

    async def _on_registry_change(self, instances: Instances) -> None:
        snapshot = self._builder.build(instances.values())
        if self.cache.set(snapshot):
            log.info("gateway.snapshot", version=snapshot.version, instances=len(instances))
        await self._health.update(instances.values())

    def _on_keys_change(self, keys: PublicKeys) -> None:
        self._builder.set_jwks(keys)
        current = self.cache.snapshot
        # Before the first snapshot there is nothing to update: the first one gets the new keys.
        if current is not None and self.cache.set(self._builder.rekeyed(current)):
            log.info("gateway.keys_pushed", kids=[k.kid for k in keys.keys])

    async def _publish_if_registry_silent(self) -> None:
        """Give a fresh Envoy its listener and routes even while NATS is unreachable."""
        try:
            async with asyncio.timeout(self._initial_sync_timeout):
                await self._mirror.wait_synced()
        except TimeoutError:
            if self.cache.snapshot is None:
                log.warning(
                    "gateway.registry_unavailable", serving="configuration without endpoints"
                )
                self.cache.set(self._builder.build(()))


def _add_reflection(server: grpc.aio.Server, catalog: ServiceCatalog) -> None:
    """Reflection for every mesh service, answered from the descriptor set.

    v1alpha comes from grpcio-reflection; v1 (tried first by newer clients) is the same
    servicer under the v1 name, which is wire-identical.
    """
    names = [*catalog.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    servicer = reflection.aio.ReflectionServicer(names, pool=catalog.descriptor_pool())
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                REFLECTION_V1_SERVICE,
                {
                    "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                        servicer.ServerReflectionInfo,
                        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
                    )
                },
            )
        ]
    )


class NatsRegistry:
    """Opens the registry and the revocation bucket over one NATS connection, made once."""

    def __init__(self, settings: MeshSettings, *, client_name: str = "gateway") -> None:
        self._settings = settings
        self._client_name = client_name
        self._nc: Client | None = None

    async def open(self) -> Registry:
        """Connect if not yet connected (NATS reconnects by itself afterwards), then bind."""
        return await Registry.open(await self._jetstream(), self._settings.registry)

    async def revocations(self) -> KeyValue:
        """Connect if not yet connected, then bind the revocation bucket."""
        js = await self._jetstream()
        return await js.key_value(self._settings.auth.revocations_bucket)

    async def _jetstream(self) -> JetStreamContext:
        if self._nc is None:
            self._nc = await connect_nats(self._settings, name=self._client_name)
        return self._nc.jetstream()

    async def close(self) -> None:
        """Close the connection, if one was made."""
        if self._nc is not None:
            await self._nc.close()
            self._nc = None


async def run_gateway(settings: MeshSettings, *, metrics_port: int | None = None) -> None:
    """Run the control plane until SIGTERM or SIGINT, then stop gracefully.

    Serves on the Unix socket ``settings.gateway_socket`` at once and follows the registry over
    NATS in the background (retrying while NATS is unreachable), routing each gRPC service
    only to instances of the name that owns it in ``deploy/mesh.toml``. The edge enforces
    ``settings.edge`` and checks tokens against the public keys at ``settings.jwks_file``. The
    metrics (xDS versions and NACKs, RPCs) are served over HTTP at ``/metrics`` on
    ``metrics_port``, else ``settings.gateway.metrics_port`` (0 = any free port, logged;
    -1 = off).

    Raises:
        ConfigurationError: the public keys do not exist (yet) or cannot be read, the service
            catalog is malformed, the run directory cannot be used, or the edge would serve
            plaintext off loopback (:func:`require_safe_edge`).
    """
    require_safe_edge(settings)
    metrics_registry = CollectorRegistry()
    catalog = load_catalog()
    http = http_services(http_owners(catalog))
    trust = RegistryTrust(
        grpc_owners(catalog),
        settings.run_dir,
        metrics_registry,
        http_services=frozenset(h.name for h in http),
    )
    nats_registry = NatsRegistry(settings)
    gateway = Gateway(
        nats_registry.open,
        catalog=ServiceCatalog.packaged(),
        edge_host=settings.host,
        edge_port=settings.envoy.port,
        jwks_file=settings.jwks_file,
        trust=trust,
        http=http,
        policy=EdgePolicy.from_settings(settings),
        metrics_registry=metrics_registry,
        authenticator=open_authenticator(settings, nats_registry.revocations),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics: MetricsEndpoint | None = None
    try:
        await gateway.start(settings.gateway_socket)
        port = settings.gateway.metrics_port if metrics_port is None else metrics_port
        if port >= 0:
            metrics = MetricsEndpoint.start(metrics_registry, settings.internal_host, port)
            log.info("gateway.metrics", address=metrics.address)
        stopped = asyncio.ensure_future(stop.wait())
        failed = asyncio.ensure_future(gateway.wait_failed())
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if failed.done():
            failed.result()
        failed.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await asyncio.shield(gateway.stop())
        await nats_registry.close()
        if metrics is not None:
            metrics.stop()
