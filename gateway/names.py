"""Names the Envoy bootstrap and the xDS resources must agree on.

Kept free of Envoy types so the bootstrap renderer (run by the supervisor) stays cheap to import.
"""

from __future__ import annotations

from typing import Final

# Set here (as the edge's stat prefix), read back from Envoy's stats by the system service.
from sutazai.runtime.envoy import EDGE_STAT_PREFIX

XDS_CLUSTER: Final = "xds"
"""Static bootstrap cluster pointing at the gateway: carries ADS, and mesh-wide reflection and
health calls routed to the gateway."""

EDGE_LISTENER: Final = "edge"
"""The one listener serving gRPC and REST/JSON."""

EDGE_ROUTES: Final = "edge_routes"
"""Route configuration of the edge listener, delivered by RDS over ADS."""


EDGE_JWT_CONFIG: Final = "edge_jwt_authn"
"""The edge's jwt_authn filter, whose configuration (with the key ring) is delivered by ECDS."""

__all__ = ["EDGE_JWT_CONFIG", "EDGE_LISTENER", "EDGE_ROUTES", "EDGE_STAT_PREFIX", "XDS_CLUSTER"]
