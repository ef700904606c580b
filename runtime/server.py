"""Hosting one service instance: the gRPC server and everything around it.

:class:`ServiceHost` builds a grpc.aio server with the mesh's interceptors, standard health and
reflection, binds it (a loopback TCP port for direct callers, and a Unix socket in the mesh's
0700 run directory where Envoy reaches it), exposes metrics, registers the instance in the
registry with a heartbeat, and on shutdown drains: NOT_SERVING and deregistration first (so
Envoy stops routing here), then in-flight calls get ``grace_seconds`` to finish.

A service that also serves plain HTTP (an HTTP prefix of ``deploy/mesh.toml``, e.g. the
inference service's OpenAI-compatible API) hands an :class:`HttpServer` to the host, which binds
it to a second Unix socket beside the gRPC one, registers both and drains both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from nats.aio.client import Client as NatsClient
from prometheus_client import CollectorRegistry

from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.auth import Guard
from sutazai.runtime.interceptors import ServerInterceptor
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.metrics import MetricsEndpoint, RpcMetrics
from sutazai.runtime.reclaim import answer_reclaim
from sutazai.runtime.registry import Heartbeat, Registry, new_instance_id
from sutazai.runtime.settings import MeshSettings, ServiceSettings
from sutazai.runtime.sockets import (
    checked_socket_path,
    claim_socket,
    grpc_target,
    instance_http_socket,
    instance_socket,
    prepare_run_dir,
    remove_socket,
    restrict_socket,
)

log = structlog.get_logger(__name__)

HEALTH_SERVICE = health.SERVICE_NAME
GUARD_READY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Servicer:
    """One gRPC service implementation and the generated function that adds it to a server."""

    name: str
    """Fully-qualified service name, e.g. ``sutazai.system.v1.SystemService``."""
    implementation: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]


class HttpServer(Protocol):
    """An HTTP server on an instance's second Unix socket (where Envoy sends its HTTP prefixes)."""

    async def bind(self, socket: Path) -> None:
        """Listen on ``socket`` (a free path in the run directory): connections queue from now."""

    async def run(self) -> None:
        """Serve until :meth:`stop`; an exception ends the instance."""

    async def stop(self, grace_seconds: float) -> None:
        """Stop accepting, give requests in flight ``grace_seconds``, then end :meth:`run`."""


@dataclass(slots=True)
class ServiceHost:
    """Runs one instance of a mesh service. Use :meth:`start`/:meth:`stop`, or :meth:`run`."""

    name: str
    """Logical service name as in the registry and ``deploy/mesh.toml``, e.g. ``system``."""
    mesh: MeshSettings
    settings: ServiceSettings
    servicers: Sequence[Servicer]
    registry: Registry | None
    """Where to register; ``None`` serves without registering (e.g. a unit test)."""
    guard: Guard | None = None
    """Access control for every call; ``None`` admits everything (tests and tools only)."""
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()
    """Coroutines that run for the life of the instance (e.g. a prober)."""
    on_drain: Sequence[Callable[[], None]] = ()
    """Called at shutdown once the instance is out of rotation, before in-flight calls get
    their grace period: ends calls that would never end on their own (watch streams)."""
    instance_id: str = ""
    """This instance's id (its registry key is ``<name>.<instance id>``); empty takes
    :func:`instance_id_of` the settings."""
    http_server: HttpServer | None = None
    """What serves the service's HTTP prefixes, on the instance's HTTP socket
    (:func:`~sutazai.runtime.sockets.instance_http_socket`); ``None`` when it has none."""
    metrics_registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    _server: grpc.aio.Server | None = None
    _health: health.aio.HealthServicer | None = None
    _heartbeat: Heartbeat | None = None
    _metrics: MetricsEndpoint | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _port: int = 0
    _socket: Path | None = None
    _http_socket: Path | None = None

    def __post_init__(self) -> None:
        if not self.instance_id:
            self.instance_id = instance_id_of(self.settings)

    @property
    def address(self) -> str:
        """``host:port`` the gRPC server listens on (after :meth:`start`)."""
        return f"{self.mesh.internal_host}:{self._port}"

    @property
    def socket(self) -> Path:
        """The Unix socket the gRPC server also listens on (after :meth:`start`)."""
        if self._socket is None:
            raise RuntimeError("the service host is not started")
        return self._socket

    @property
    def health(self) -> health.aio.HealthServicer:
        """The instance's health servicer (after :meth:`start`)."""
        if self._health is None:
            raise RuntimeError("the service host is not started")
        return self._health

    async def start(self) -> None:
        """Bind, serve, expose metrics, start background work and register."""
        server = grpc.aio.server(
            interceptors=[ServerInterceptor(RpcMetrics.create(self.metrics_registry), self.guard)],
            options=[
                # grpcio enables SO_REUSEPORT by default, which lets a second process bind the
                # same port silently and steal calls; every instance must own its port.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", self.settings.max_message_bytes),
                ("grpc.max_send_message_length", self.settings.max_message_bytes),
            ],
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for servicer in self.servicers:
            servicer.add_to_server(servicer.implementation, server)
        names = [s.name for s in self.servicers]
        reflection.enable_server_reflection(
            [*names, HEALTH_SERVICE, reflection.SERVICE_NAME], server
        )
        self._port = server.add_insecure_port(f"{self.mesh.internal_host}:{self.settings.port}")
        if self._port == 0:
            raise OSError(f"cannot bind {self.mesh.internal_host}:{self.settings.port}")
        run_dir = prepare_run_dir(self.mesh.run_dir)
        socket = instance_socket(run_dir, self.name, self.instance_id)
        # A restarted instance keeps its id, so its killed predecessor's socket file may still
        # be there; grpcio would unlink whatever is at the path, even a live server's.
        claim_socket(checked_socket_path(socket))
        if server.add_insecure_port(grpc_target(socket)) == 0:
            raise OSError(f"cannot bind {socket}")
        restrict_socket(socket)
        if self.http_server is not None:
            http_socket = instance_http_socket(run_dir, self.name, self.instance_id)
            claim_socket(checked_socket_path(http_socket))
            await self.http_server.bind(http_socket)
            restrict_socket(http_socket)
            self._http_socket = http_socket
        await server.start()
        self._server, self._health, self._socket = server, health_servicer, socket
        if self.settings.metrics_port >= 0:
            self._metrics = MetricsEndpoint.start(
                self.metrics_registry, self.mesh.internal_host, self.settings.metrics_port
            )
        jobs = [
            *self.background,
            *([self.guard.run] if self.guard else []),
            *([self.http_server.run] if self.http_server else []),
        ]
        self._tasks = [asyncio.create_task(job()) for job in jobs]
        if self.guard is not None:
            # SERVING only once revocations are known; should Redis be away, serve anyway after
            # a while (signed-in callers get UNAVAILABLE until it is back).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(GUARD_READY_SECONDS):
                    await self.guard.wait_ready()
        for name in ["", *names]:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.registry is not None:
            self._heartbeat = Heartbeat(self.registry, self._instance(names))
            await self._heartbeat.start()
        log.info(
            "service.started",
            address=self.address,
            socket=str(socket),
            instance_id=self.instance_id,
        )

    async def stop(self) -> None:
        """Drain and stop: NOT_SERVING, deregister, let in-flight calls finish, stop."""
        if self._server is None:
            return
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._heartbeat is not None:
            await self._heartbeat.stop()
        for drain in self.on_drain:
            drain()
        grace = self.settings.grace_seconds
        if self.http_server is not None:
            await asyncio.gather(self._server.stop(grace), self.http_server.stop(grace))
        else:
            await self._server.stop(grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._metrics is not None:
            self._metrics.stop()
        for path in (self._socket, self._http_socket):
            if path is not None:
                remove_socket(path)
        self._server = None
        log.info("service.stopped", instance_id=self.instance_id)

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT (or cancellation), then drain and stop."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            failed = asyncio.ensure_future(self._first_failure())
            stopped = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
            failed.cancel()
            stopped.cancel()
            if failed in done and failed.exception() is not None:
                raise failed.exception()  # type: ignore[misc]
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await asyncio.shield(self.stop())

    async def _first_failure(self) -> None:
        """Return when a background job ends; its exception (if any) becomes ours."""
        if not self._tasks:
            await asyncio.Event().wait()
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()

    def _instance(self, grpc_services: list[str]) -> ServiceInstance:
        instance = ServiceInstance(
            service=self.name,
            instance_id=self.instance_id,
            host=self.mesh.internal_host,
            port=self._port,
            socket_path=str(self._socket) if self._socket else "",
            http_socket_path=str(self._http_socket) if self._http_socket else "",
            version=self.mesh.version,
            grpc_services=grpc_services,
            metrics_address=self._metrics.address if self._metrics else "",
            pid=os.getpid(),
        )
        instance.started_at.GetCurrentTime()
        return instance


def instance_id_of(settings: ServiceSettings) -> str:
    """The id the supervisor chose for this process's slot, else a fresh one."""
    return settings.instance_id or new_instance_id()


Builder = Callable[
    [MeshSettings, ServiceSettings, contextlib.AsyncExitStack], Coroutine[Any, Any, ServiceHost]
]
"""Creates a service's connections (closed by the stack) and its unstarted host."""


async def serve_until_stopped(build: Builder, mesh: MeshSettings, service: ServiceSettings) -> None:
    """Build a service instance and run it until SIGTERM/SIGINT, then close its connections."""
    async with contextlib.AsyncExitStack() as stack:
        host = await build(mesh, service, stack)
        await host.run()


async def join_registry(
    mesh: MeshSettings, service_name: str, stack: contextlib.AsyncExitStack
) -> tuple[NatsClient, Registry]:
    """Connect to NATS as ``service_name`` (closed by ``stack``) and open the registry.

    The instance also answers the hardware service's memory reclamation requests from now on
    (:mod:`sutazai.runtime.reclaim`).
    """
    nc = await connect_nats(mesh, name=f"sutazai-{service_name}")
    stack.push_async_callback(nc.close)
    await answer_reclaim(nc, service_name)
    return nc, await Registry.open(nc.jetstream(), mesh.registry)
