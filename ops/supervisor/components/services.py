"""Mesh services and agents: ``sutazai serve NAME`` processes.

A service instance is healthy once registered with its pid; an agent instance once its
heartbeat (``sutazai_agents``) is newer than its process.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from sutazai.ops.supervisor.credentials import write_agent_credentials, write_principal_credentials
from sutazai.ops.supervisor.environment import principal_environment
from sutazai.ops.supervisor.probes import ProbeError, agent_heartbeat_since, registry_has
from sutazai.ops.supervisor.spec import ComponentSpec, Hook, Launch, Probe
from sutazai.runtime.credentials import credentials_path
from sutazai.runtime.deployment import AGENT_INSTANCE_VARIABLE, AgentEntry, ServiceEntry
from sutazai.runtime.registry import new_instance_id
from sutazai.runtime.settings import MeshSettings, ServiceSettings


def instance_name(entry: ServiceEntry, index: int) -> str:
    """``system`` for a single instance, ``system-1``, ``system-2``… for several."""
    return entry.name if entry.instances == 1 else f"{entry.name}-{index}"


INSTANCE_ID_VARIABLE = "SUTAZAI_SERVICE_INSTANCE_ID"
"""Where a service process finds its slot's id (``ServiceSettings.instance_id``)."""

# A service drains in-flight calls for its grace period after SIGTERM; allow that, plus time
# to deregister, before killing it.
DEFAULT_STOP_TIMEOUT = ServiceSettings.model_fields["grace_seconds"].get_default() + 5.0
AGENT_STOP_TIMEOUT = 35.0
"""An agent drains on SIGTERM: running tasks finish (or are handed back) before it exits."""


def service_components(
    settings: MeshSettings,
    entries: Sequence[ServiceEntry],
    env: Mapping[str, str],
    *,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
) -> list[ComponentSpec]:
    """One component per instance of every catalog entry, each with an instance id of its own.

    Every instance is the principal named after its service: its NATS user may write only that
    service's registry entries, its PostgreSQL role owns only that service's schema, its Redis
    user reaches only that service's keys. It gets the path of its own credentials file, which
    is (re)written before every start.
    """
    components = []
    for entry in entries:
        credentials = credentials_path(settings.state_dir, entry.name)
        service_env = principal_environment(settings, env, entry.name, credentials)
        for index in range(1, entry.instances + 1):
            # Chosen once per slot: every restart of the slot registers under the same key and
            # socket, so a crashed instance's entry is overwritten, not left to expire.
            slot_env = {**service_env, INSTANCE_ID_VARIABLE: new_instance_id()}
            components.append(
                ComponentSpec(
                    name=instance_name(entry, index),
                    launch=Launch(
                        argv=[sys.executable, "-m", "sutazai.ops.cli", "serve", entry.name],
                        env=slot_env,
                        stop_signal=signal.SIGTERM,
                        stop_timeout=stop_timeout,
                    ),
                    prepare=_credentials_writer(settings, entry.name),
                    probe=_registered(settings, entry.name),
                    start_timeout=60.0,
                )
            )
    return components


"""Where an agent process finds its instance id (its slot: ``1`` .. ``instances``)."""


def agent_component_name(agent: AgentEntry, instance_id: str) -> str:
    """``agent-text-1``: the component (and log file) of one agent instance."""
    return f"agent-{agent.name}-{instance_id}"


def agent_components(
    settings: MeshSettings,
    agents: Sequence[AgentEntry],
    env: Mapping[str, str],
    *,
    stop_timeout: float = AGENT_STOP_TIMEOUT,
) -> list[ComponentSpec]:
    """One component per instance of every agent; one credentials-only entry per external agent.

    Each instance runs ``sutazai serve NAME`` as the agent's NATS principal, with only that
    principal's NATS user and password in its credentials file, and its instance id (stable
    for the slot, so a restart resumes the same work consumer) in ``SUTAZAI_AGENT_INSTANCE_ID``.
    An external agent (another language, another host) gets its credentials file written and
    nothing started.
    """
    components = []
    for agent in agents:
        credentials = credentials_path(settings.state_dir, agent.name)
        writer = _agent_credentials_writer(settings, agent.name)
        if agent.external:
            components.append(
                ComponentSpec(
                    name=f"agent-{agent.name}", probe=_present(credentials), prepare=writer
                )
            )
            continue
        agent_env = principal_environment(settings, env, agent.name, credentials)
        for instance_id in agent.instance_ids:
            components.append(
                ComponentSpec(
                    name=agent_component_name(agent, instance_id),
                    launch=Launch(
                        argv=[sys.executable, "-m", "sutazai.ops.cli", "serve", agent.name],
                        env={**agent_env, AGENT_INSTANCE_VARIABLE: instance_id},
                        stop_signal=signal.SIGTERM,
                        stop_timeout=stop_timeout,
                    ),
                    prepare=writer,
                    probe=_heartbeating(settings, f"{agent.name}.{instance_id}"),
                    start_timeout=60.0,
                )
            )
    return components


def _agent_credentials_writer(settings: MeshSettings, agent: str) -> Hook:
    async def prepare() -> None:
        write_agent_credentials(settings, agent)

    return prepare


def _present(path: Path) -> Probe:
    async def probe(_pid: int | None) -> None:
        if not await asyncio.to_thread(path.is_file):
            raise ProbeError(f"{path} was not written")

    return probe


def _heartbeating(settings: MeshSettings, agent_id: str) -> Probe:
    async def probe(pid: int | None) -> None:
        await agent_heartbeat_since(settings, agent_id, pid)

    return probe


def _credentials_writer(settings: MeshSettings, service: str) -> Hook:
    async def prepare() -> None:
        write_principal_credentials(settings, service)

    return prepare


def _registered(settings: MeshSettings, service: str) -> Probe:
    async def probe(pid: int | None) -> None:
        await registry_has(settings, service, pid)

    return probe
