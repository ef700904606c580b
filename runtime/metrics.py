"""Prometheus metrics of a service process, served on their own HTTP port."""

from __future__ import annotations

from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server


@dataclass(frozen=True, slots=True)
class RpcMetrics:
    """The standard RPC metrics, labelled by gRPC method and status code."""

    handled: Counter
    latency: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RpcMetrics:
        """Register the RPC metrics in ``registry``."""
        return cls(
            handled=Counter(
                "sutazai_grpc_server_handled",
                "RPCs completed on the server, by method and status code.",
                ["grpc_method", "grpc_code"],
                registry=registry,
            ),
            latency=Histogram(
                "sutazai_grpc_server_handling_seconds",
                "Time from receiving an RPC to answering it.",
                ["grpc_method"],
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10),
                registry=registry,
            ),
        )


class MetricsEndpoint:
    """An HTTP server exposing one registry at ``/metrics``."""

    def __init__(self, server: WSGIServer, thread: Thread, host: str) -> None:
        self._server = server
        self._thread = thread
        self._host = host

    @classmethod
    def start(cls, registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
        """Serve ``registry`` on ``host:port`` (port 0 picks a free one)."""
        server, thread = start_http_server(port, addr=host, registry=registry)
        return cls(server, thread, host)

    @property
    def address(self) -> str:
        """``host:port`` the endpoint listens on."""
        return f"{self._host}:{self._server.server_port}"

    def stop(self) -> None:
        """Stop serving and wait for the server thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
