"""The Envoy clusters the system service reports on: gRPC services and services' HTTP routes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sutazai.runtime.envoy import http_cluster


@dataclass(frozen=True, slots=True)
class Upstream:
    """An Envoy cluster whose traffic is shown: a gRPC service, or a service's HTTP routes."""

    cluster: str
    service: str
    """The mesh service that owns it."""
    grpc_service: str = ""
    """The gRPC service (whose name the cluster has); empty for HTTP routes."""
    http_prefixes: tuple[str, ...] = ()
    """The HTTP routes' path prefixes; empty for a gRPC service."""

    @classmethod
    def grpc(cls, grpc_service: str, service: str) -> Upstream:
        """A gRPC service of ``service`` (its cluster is named after it)."""
        return cls(cluster=grpc_service, service=service, grpc_service=grpc_service)

    @classmethod
    def http(cls, cluster: str, service: str, prefixes: Iterable[str]) -> Upstream:
        """The HTTP routes of ``service``, served by ``cluster``."""
        return cls(cluster=cluster, service=service, http_prefixes=tuple(prefixes))


def service_upstreams(
    service: str, grpc_services: Iterable[str], http_prefixes: Iterable[str]
) -> list[Upstream]:
    """The clusters of one mesh service: one per gRPC service, one for all its HTTP routes."""
    upstreams = [Upstream.grpc(grpc_service, service) for grpc_service in grpc_services]
    prefixes = tuple(http_prefixes)
    if prefixes:
        upstreams.append(Upstream.http(http_cluster(service), service, prefixes))
    return upstreams
