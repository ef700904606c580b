"""Versioned, self-consistent sets of xDS resources, and the cache ADS streams serve from.

A :class:`Snapshot` holds every resource of the five types the edge uses, each type with a
version that is a hash of its content: rebuilding from an unchanged registry yields the same
versions, so Envoy is not sent (and does not re-apply) identical configuration.

The fifth type, ECDS (``TypedExtensionConfig``), carries the jwt_authn configuration with the
key ring, so a key rotation changes that one resource and nothing else (see
:mod:`~sutazai.gateway.guards`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Generic, TypeVar

import betterproto2
from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.core.v3 import TypedExtensionConfig
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
)
from envoy_data_plane.google.protobuf import Any

from sutazai.gateway.catalog import ServiceCatalog
from sutazai.gateway.guards import guard_filters, jwt_extension_config
from sutazai.gateway.names import XDS_CLUSTER
from sutazai.gateway.resources import (
    EdgePolicy,
    HttpService,
    build_cluster,
    build_http_cluster,
    build_http_load_assignment,
    build_listener,
    build_load_assignment,
    build_route_configuration,
)
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.keys import PublicKeys

_TYPE_PREFIX: Final = "type.googleapis.com/"
CLUSTER_TYPE: Final = _TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE: Final = _TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER_TYPE: Final = _TYPE_PREFIX + "envoy.config.listener.v3.Listener"
ROUTE_TYPE: Final = _TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
EXTENSION_CONFIG_TYPE: Final = _TYPE_PREFIX + "envoy.config.core.v3.TypedExtensionConfig"

PUSH_ORDER: Final = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, EXTENSION_CONFIG_TYPE)
"""Make-before-break: clusters and their endpoints exist before anything routes to them.
(Envoy asks for routes and filter configurations only once a listener names them.)"""

STATIC_CLUSTERS: Final = frozenset({XDS_CLUSTER})
"""Clusters defined in the bootstrap, which routes may name without CDS declaring them."""


_M = TypeVar("_M", bound=betterproto2.Message)
_M_co = TypeVar("_M_co", bound=betterproto2.Message, covariant=True)


@dataclass(frozen=True, slots=True)
class ResourceSet(Generic[_M_co]):
    """All resources of one type, by name, with the version of their content."""

    type_url: str
    version: str
    messages: Mapping[str, _M_co]
    packed: Mapping[str, Any]
    """The same resources packed as ``google.protobuf.Any`` for a DiscoveryResponse."""

    @classmethod
    def of(cls, type_url: str, messages: Iterable[_M]) -> ResourceSet[_M]:
        """Pack ``messages`` (each with a unique resource name) and version their content."""
        by_name: dict[str, _M] = {}
        for message in messages:
            name = resource_name(message)
            if name in by_name:
                raise ValueError(f"duplicate {type_url} resource {name!r}")
            by_name[name] = message
        packed = {name: Any.pack(by_name[name]) for name in sorted(by_name)}
        for name, any_ in packed.items():
            if any_.type_url != type_url:
                raise ValueError(f"{name!r} packs as {any_.type_url}, expected {type_url}")
        digest = hashlib.sha256()
        for name, any_ in packed.items():
            for part in (name.encode(), any_.value):
                digest.update(len(part).to_bytes(8, "big"))
                digest.update(part)
        return ResourceSet(
            type_url=type_url,
            version=digest.hexdigest()[:16],
            messages=MappingProxyType(by_name),
            packed=MappingProxyType(packed),
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One consistent configuration of the edge."""

    clusters: ResourceSet[Cluster]
    endpoints: ResourceSet[ClusterLoadAssignment]
    listeners: ResourceSet[Listener]
    routes: ResourceSet[RouteConfiguration]
    extension_configs: ResourceSet[TypedExtensionConfig]
    """HTTP filter configurations delivered by ECDS (the jwt_authn filter's)."""

    @property
    def version(self) -> str:
        """Version of the whole snapshot: changes iff some type's content changed."""
        return "-".join(self.resource_set(t).version for t in PUSH_ORDER)

    def resource_set(self, type_url: str) -> ResourceSet[betterproto2.Message]:
        """The resources of one type; ``KeyError`` for a type the edge does not use."""
        sets: dict[str, ResourceSet[betterproto2.Message]] = {
            CLUSTER_TYPE: self.clusters,
            ENDPOINT_TYPE: self.endpoints,
            LISTENER_TYPE: self.listeners,
            ROUTE_TYPE: self.routes,
            EXTENSION_CONFIG_TYPE: self.extension_configs,
        }
        return sets[type_url]

    def resources(self, type_url: str, names: Collection[str] | None = None) -> list[Any]:
        """Packed resources of a type, all of them or only ``names`` (those that exist)."""
        packed = self.resource_set(type_url).packed
        if names is None:
            return list(packed.values())
        return [packed[n] for n in sorted(names) if n in packed]

    def missing_references(self) -> list[str]:
        """Names some resource refers to that the snapshot (or the bootstrap) lacks."""
        problems: list[str] = []
        for cluster in self.clusters.messages.values():
            if cluster.type != ClusterDiscoveryType.EDS:
                continue
            config = cluster.eds_cluster_config
            eds_name = (config.service_name if config else "") or cluster.name
            if eds_name not in self.endpoints.messages:
                problems.append(f"cluster {cluster.name!r} needs endpoints {eds_name!r}")
        for listener in self.listeners.messages.values():
            for route_name in _rds_names(listener):
                if route_name not in self.routes.messages:
                    problems.append(f"listener {listener.name!r} needs routes {route_name!r}")
            for config_name in _ecds_names(listener):
                if config_name not in self.extension_configs.messages:
                    problems.append(
                        f"listener {listener.name!r} needs filter configuration {config_name!r}"
                    )
        known_clusters = set(self.clusters.messages) | STATIC_CLUSTERS
        for route_config in self.routes.messages.values():
            for vhost in route_config.virtual_hosts:
                for route in vhost.routes:
                    cluster_name = route.route.cluster if route.route else ""
                    if cluster_name and cluster_name not in known_clusters:
                        problems.append(f"route {route.name!r} needs cluster {cluster_name!r}")
        return problems


class SnapshotBuilder:
    """Builds snapshots for one edge: endpoints follow the registry, ECDS the public keys.

    Clusters, the listener (which embeds the whole descriptor set) and routes follow the catalog
    alone, so they are built and versioned once; registry churn rebuilds EDS only, and a key
    rotation (:meth:`set_jwks`) ECDS only.
    """

    def __init__(
        self,
        catalog: ServiceCatalog,
        policy: EdgePolicy,
        *,
        host: str,
        port: int,
        jwks: PublicKeys,
        http: Sequence[HttpService] = (),
    ) -> None:
        """Prepare the edge listening on ``host:port`` for the services of ``catalog``.

        ``jwks`` are the public keys tokens are checked with (typed so that nothing but public
        keys can reach a snapshot). ``http`` are the services serving HTTP path prefixes.
        """
        self._catalog = catalog
        self._policy = policy
        self._http = tuple(http)
        self._clusters = ResourceSet.of(
            CLUSTER_TYPE,
            [
                *(build_cluster(s, policy) for s in catalog.services),
                *(build_http_cluster(h, policy) for h in self._http),
            ],
        )
        listener = build_listener(
            catalog,
            policy,
            host=host,
            port=port,
            guard_filters=guard_filters(policy),
            http=self._http,
        )
        self._listeners = ResourceSet.of(LISTENER_TYPE, [listener])
        self._routes = ResourceSet.of(
            ROUTE_TYPE, [build_route_configuration(catalog, policy, self._http)]
        )
        self._extension_configs = self._filter_configs(jwks)

    def set_jwks(self, jwks: PublicKeys) -> None:
        """Check tokens against ``jwks`` in the snapshots built from now on."""
        self._extension_configs = self._filter_configs(jwks)

    def build(self, instances: Iterable[ServiceInstance]) -> Snapshot:
        """The edge's configuration for the current registry content."""
        instances = list(instances)
        endpoints = ResourceSet.of(
            ENDPOINT_TYPE,
            [
                *(build_load_assignment(n, instances) for n in self._catalog.service_names),
                *(build_http_load_assignment(h, instances) for h in self._http),
            ],
        )
        return Snapshot(
            self._clusters, endpoints, self._listeners, self._routes, self._extension_configs
        )

    def rekeyed(self, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` with the current keys; its endpoints (and all else) unchanged."""
        return dataclasses.replace(snapshot, extension_configs=self._extension_configs)

    def _filter_configs(self, jwks: PublicKeys) -> ResourceSet[TypedExtensionConfig]:
        prefixes = [p for h in self._http for p in h.prefixes]
        return ResourceSet.of(
            EXTENSION_CONFIG_TYPE,
            [jwt_extension_config(self._catalog, self._policy, jwks, prefixes)],
        )


def resource_name(message: betterproto2.Message) -> str:
    """The xDS resource name of a resource message."""
    if isinstance(message, ClusterLoadAssignment):
        return message.cluster_name
    if isinstance(message, Cluster | Listener | RouteConfiguration | TypedExtensionConfig):
        return message.name
    raise TypeError(f"not an xDS resource the edge uses: {type(message).__name__}")


def _rds_names(listener: Listener) -> Iterator[str]:
    for hcm in _connection_managers(listener):
        if hcm.rds is not None:
            yield hcm.rds.route_config_name


def _ecds_names(listener: Listener) -> Iterator[str]:
    """Names of the HTTP filter configurations the listener expects over ECDS."""
    for hcm in _connection_managers(listener):
        yield from (f.name for f in hcm.http_filters if f.config_discovery is not None)


def _connection_managers(listener: Listener) -> Iterator[HttpConnectionManager]:
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            typed = network_filter.typed_config
            if typed is None:
                continue
            hcm = typed.unpack()
            if isinstance(hcm, HttpConnectionManager):
                yield hcm


SnapshotListener = Callable[[Snapshot], None]
"""Called (synchronously, on the event loop) with each new snapshot."""


class SnapshotCache:
    """The current snapshot, and who to tell when it changes.

    Empty until the first :meth:`set`: ADS streams answer nothing before that, so an Envoy that
    reconnects to a restarted gateway keeps its endpoints instead of getting an empty set while
    the registry is still being read.
    """

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._listeners: list[SnapshotListener] = []

    @property
    def snapshot(self) -> Snapshot | None:
        """The current snapshot, ``None`` before the first :meth:`set`."""
        return self._snapshot

    def set(self, snapshot: Snapshot) -> bool:
        """Make ``snapshot`` current; returns whether anything changed.

        Raises ``ValueError`` for an inconsistent snapshot, which Envoy would half-apply.
        """
        problems = snapshot.missing_references()
        if problems:
            raise ValueError("inconsistent snapshot: " + "; ".join(problems))
        if self._snapshot is not None and self._snapshot.version == snapshot.version:
            return False
        self._snapshot = snapshot
        for listener in list(self._listeners):
            listener(snapshot)
        return True

    @contextmanager
    def watching(self, listener: SnapshotListener) -> Iterator[Snapshot | None]:
        """Call ``listener`` on every change while inside the block; yields the current one."""
        self._listeners.append(listener)
        try:
            yield self._snapshot
        finally:
            self._listeners.remove(listener)
