"""Turn a snapshot into a static Envoy bootstrap, so `envoy --mode validate` can judge it.

Envoy validates a binary bootstrap (``.pb``) with the same checks, protoc-gen-validate rules
included, that it applies to resources arriving over xDS.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.core.v3 import Address, SocketAddress
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
)
from envoy_data_plane.google.protobuf import Any

from sutazai.gateway.names import XDS_CLUSTER
from sutazai.gateway.snapshot import Snapshot
from tests.gateway.processes import ENVOY


def static_bootstrap(snapshot: Snapshot) -> bytes:
    """The snapshot as static resources: EDS clusters inlined, RDS and ECDS into the listener."""
    clusters = []
    for cluster in snapshot.clusters.messages.values():
        static = Cluster.parse(bytes(cluster))
        static.type = ClusterDiscoveryType.STATIC
        static.eds_cluster_config = None
        static.load_assignment = snapshot.endpoints.messages[cluster.name]
        clusters.append(static)
    clusters.append(
        Cluster(
            name=XDS_CLUSTER,
            type=ClusterDiscoveryType.STATIC,
            load_assignment=ClusterLoadAssignment(
                cluster_name=XDS_CLUSTER,
                endpoints=[
                    LocalityLbEndpoints(
                        lb_endpoints=[
                            LbEndpoint(
                                endpoint=Endpoint(
                                    address=Address(
                                        socket_address=SocketAddress(
                                            address="127.0.0.1", port_value=1
                                        )
                                    )
                                )
                            )
                        ]
                    )
                ],
            ),
        )
    )
    listeners = []
    for listener in snapshot.listeners.messages.values():
        static_listener = Listener.parse(bytes(listener))
        for chain in static_listener.filter_chains:
            for network_filter in chain.filters:
                assert network_filter.typed_config is not None
                hcm = network_filter.typed_config.unpack()
                assert isinstance(hcm, HttpConnectionManager)
                assert hcm.rds is not None
                hcm.route_config = snapshot.routes.messages[hcm.rds.route_config_name]
                hcm.rds = None
                for http_filter in hcm.http_filters:
                    if http_filter.config_discovery is not None:
                        ecds = snapshot.extension_configs.messages[http_filter.name]
                        http_filter.typed_config = ecds.typed_config
                        http_filter.config_discovery = None
                network_filter.typed_config = Any.pack(hcm)
        listeners.append(static_listener)
    return bytes(
        Bootstrap(static_resources=BootstrapStaticResources(clusters=clusters, listeners=listeners))
    )


def envoy_validate(config: Path) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate -c config`` (loads and checks, binds nothing)."""
    return subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(config), "--log-level", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
