"""Names in Envoy's configuration that processes other than the gateway read back.

The gateway sets them (``gateway/names.py`` re-exports them for the xDS resources); the system
service finds the edge's statistics by them in Envoy's admin ``/stats``.
"""

from __future__ import annotations

from typing import Final

EDGE_STAT_PREFIX: Final = "edge"
"""Stat prefix of the edge's HTTP connection manager (``http.edge.*`` in Envoy stats)."""

HTTP_CLUSTER_PREFIX: Final = "http."
"""Clusters of services' HTTP routes are ``http.<service>`` (a gRPC service's cluster is named
after the gRPC service, ``sutazai.…``)."""


def http_cluster(service: str) -> str:
    """The Envoy cluster of ``service``'s HTTP routes (its ``http_prefixes``)."""
    return f"{HTTP_CLUSTER_PREFIX}{service}"
