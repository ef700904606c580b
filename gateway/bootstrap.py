"""Envoy's bootstrap: just enough static configuration to reach the gateway over ADS.

The supervisor writes :func:`render_bootstrap`'s output to a file and runs
``envoy -c FILE --base-id <settings.envoy.base_id>``; everything else Envoy serves arrives from
the gateway.
"""

from __future__ import annotations

import json
from importlib import resources
from string import Template
from typing import Final

from sutazai.gateway.names import XDS_CLUSTER
from sutazai.runtime.settings import MeshSettings
from sutazai.runtime.sockets import checked_socket_path

TEMPLATE_PACKAGE: Final = "sutazai.envoy"
TEMPLATE_NAME: Final = "bootstrap.yaml"
NODE_CLUSTER: Final = "sutazai-edge"
"""Envoy's service cluster name (``--service-cluster``): all edge Envoys share it."""


def render_bootstrap(settings: MeshSettings, *, node_id: str) -> str:
    """Envoy bootstrap YAML for the edge described by ``settings``.

    ``node_id`` names this Envoy to the control plane (unique per Envoy process). Admin listens
    on the Unix socket ``settings.envoy_admin_socket``; ADS goes to the gateway's socket
    ``settings.gateway_socket`` (both in the 0700 run directory, which must exist). The overload
    manager refuses downstream connections beyond ``settings.edge.max_downstream_connections``.

    Raises:
        ConfigurationError: a socket path is too long to bind.
    """
    template = Template(
        resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")
    )
    values: dict[str, str | int] = {
        "node_id": node_id,
        "node_cluster": NODE_CLUSTER,
        "admin_socket": str(checked_socket_path(settings.envoy_admin_socket)),
        "xds_cluster": XDS_CLUSTER,
        "gateway_socket": str(checked_socket_path(settings.gateway_socket)),
        "max_downstream_connections": settings.edge.max_downstream_connections,
    }
    # JSON scalars are YAML scalars: a node id with ':' or '#' cannot break the document.
    return template.substitute({k: json.dumps(v) for k, v in values.items()})
