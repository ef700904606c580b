"""The gateway: the xDS control plane that configures Envoy from the registry."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from sutazai.ops.supervisor.credentials import write_principal_credentials
from sutazai.ops.supervisor.environment import principal_environment
from sutazai.ops.supervisor.nats_auth import GATEWAY
from sutazai.ops.supervisor.probes import grpc_serving
from sutazai.ops.supervisor.spec import ComponentSpec, Launch
from sutazai.runtime.credentials import credentials_path
from sutazai.runtime.settings import MeshSettings
from sutazai.runtime.sockets import grpc_target

NAME = "gateway"


def gateway_component(settings: MeshSettings, env: Mapping[str, str]) -> ComponentSpec:
    """``python -m sutazai.gateway``, healthy when its gRPC health service says SERVING.

    It connects to NATS as the ``gateway`` principal: it may read the registry, not write it.
    It serves on the Unix socket ``settings.gateway_socket``, where the probe asks. Its
    credentials file holds that NATS password only (no PostgreSQL or Redis access).
    """
    target = grpc_target(settings.gateway_socket)

    async def prepare() -> None:
        write_principal_credentials(settings, GATEWAY)

    return ComponentSpec(
        name=NAME,
        launch=Launch(
            argv=[sys.executable, "-m", "sutazai.gateway"],
            env=principal_environment(
                settings, env, GATEWAY, credentials_path(settings.state_dir, GATEWAY)
            ),
        ),
        prepare=prepare,
        probe=lambda _pid: grpc_serving(target),
        start_timeout=30.0,
    )
