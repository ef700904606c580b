"""Envoy's bootstrap: just enough static configuration to reach the gateway over ADS.

The supervisor writes :func:`render_bootstrap`'s output to a file and runs
``envoy -c FILE --base-id <settings.envoy.base_id>``; everything else Envoy serves arrives from
the gateway.
"""

from __future__ import annotations

import ipaddress
import json
from importlib import resources
from string import Template
from typing import Final

from sutazai.gateway.names import XDS_CLUSTER
from sutazai.services.runtime.settings import LOOPBACK, MeshSettings

TEMPLATE_PACKAGE: Final = "sutazai.envoy"
TEMPLATE_NAME: Final = "bootstrap.yaml"
NODE_CLUSTER: Final = "sutazai-edge"
"""Envoy's service cluster name (``--service-cluster``): all edge Envoys share it."""
MAX_DOWNSTREAM_CONNECTIONS: Final = 50_000


def render_bootstrap(
    settings: MeshSettings,
    *,
    node_id: str,
    max_downstream_connections: int = MAX_DOWNSTREAM_CONNECTIONS,
) -> str:
    """Envoy bootstrap YAML for the edge described by ``settings``.

    ``node_id`` names this Envoy to the control plane (unique per Envoy process). Admin listens
    on loopback at ``settings.envoy.admin_port``; ADS goes to the gateway at
    ``settings.host:settings.gateway.port``.
    """
    template = Template(
        resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")
    )
    gateway_host = connect_address(settings.host)
    values: dict[str, str | int] = {
        "node_id": node_id,
        "node_cluster": NODE_CLUSTER,
        "admin_port": settings.envoy.admin_port,
        "xds_cluster": XDS_CLUSTER,
        "gateway_host": gateway_host,
        "gateway_cluster_type": "STATIC" if _is_ip(gateway_host) else "STRICT_DNS",
        "gateway_port": settings.gateway.port,
        "max_downstream_connections": max_downstream_connections,
    }
    # JSON scalars are YAML scalars: a node id with ':' or '#' cannot break the document.
    return template.substitute({k: json.dumps(v) for k, v in values.items()})


def connect_address(bind_host: str) -> str:
    """Where to connect to a server bound to ``bind_host`` (a wildcard means loopback)."""
    if _is_ip(bind_host) and ipaddress.ip_address(bind_host).is_unspecified:
        return LOOPBACK
    return bind_host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
