"""Mesh services: ``sutazai serve NAME`` processes, healthy once registered with their pid."""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping, Sequence

from sutazai.ops.supervisor.credentials import write_principal_credentials
from sutazai.ops.supervisor.environment import principal_environment
from sutazai.ops.supervisor.probes import registry_has
from sutazai.ops.supervisor.spec import ComponentSpec, Hook, Launch, Probe
from sutazai.runtime.credentials import credentials_path
from sutazai.runtime.deployment import ServiceEntry
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


def _credentials_writer(settings: MeshSettings, service: str) -> Hook:
    async def prepare() -> None:
        write_principal_credentials(settings, service)

    return prepare


def _registered(settings: MeshSettings, service: str) -> Probe:
    async def probe(pid: int | None) -> None:
        await registry_has(settings, service, pid)

    return probe
