"""Component specs of the mesh, in start order: infrastructure, gateway, Envoy, services."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sutazai.ops.supervisor.components.envoy import envoy_component
from sutazai.ops.supervisor.components.gateway import gateway_component
from sutazai.ops.supervisor.components.nats import nats_component
from sutazai.ops.supervisor.components.postgres import postgres_component
from sutazai.ops.supervisor.components.redis import redis_component
from sutazai.ops.supervisor.components.services import agent_components, service_components
from sutazai.ops.supervisor.environment import child_environment
from sutazai.ops.supervisor.spec import ComponentSpec
from sutazai.runtime.deployment import AgentEntry, load_agents, load_catalog
from sutazai.runtime.settings import MeshSettings


def infrastructure_components(
    settings: MeshSettings, env: Mapping[str, str], *, agents: Sequence[AgentEntry] | None = None
) -> list[ComponentSpec]:
    """NATS, PostgreSQL and Redis (each embedded or external per ``settings``).

    ``agents`` (default: those of ``deploy/mesh.toml``) are NATS principals of the embedded
    server, each with its work consumers.
    """
    return [
        nats_component(settings, env, agents=agents),
        postgres_component(settings, env),
        redis_component(settings, env),
    ]


def mesh_components(settings: MeshSettings) -> list[ComponentSpec]:
    """Everything ``sutazai up`` runs, in start order.

    Infrastructure, gateway, Envoy, the services of the catalog (``deploy/mesh.toml``), then
    its agents (which need the coordinator and the services they call).
    """
    env = child_environment(settings)
    return [
        *infrastructure_components(settings, env),
        gateway_component(settings, env),
        envoy_component(settings, env),
        *service_components(settings, load_catalog(), env),
        *agent_components(settings, load_agents(), env),
    ]


__all__ = [
    "agent_components",
    "envoy_component",
    "gateway_component",
    "infrastructure_components",
    "mesh_components",
    "nats_component",
    "postgres_component",
    "redis_component",
    "service_components",
]
