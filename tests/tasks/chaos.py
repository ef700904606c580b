"""The chaos agent (:mod:`tests.tasks.chaos_agent`) under a supervisor, and its traces.

Each instance is a component like those ``sutazai up`` runs for an agent of ``deploy/mesh.toml``:
its own process, principal ``chaos`` with the credentials file the supervisor writes, its slot's
instance id, healthy once its heartbeat is its own, restarted after it dies.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sutazai.ops.supervisor import ComponentSpec, Launch, Supervisor
from sutazai.ops.supervisor.credentials import write_agent_credentials
from sutazai.ops.supervisor.environment import child_environment, principal_environment
from sutazai.ops.supervisor.probes import agent_heartbeat_since
from sutazai.runtime.credentials import credentials_path
from sutazai.runtime.deployment import AGENT_INSTANCE_VARIABLE
from sutazai.runtime.settings import MeshSettings
from tests.harness.mesh import component_pid, supervised
from tests.tasks.chaos_agent import CONCURRENCY_VARIABLE, DIRECTORY_VARIABLE, NAME

INSTANCES = ("1", "2")
"""The slots of ``[agents.chaos]`` (tests/harness/mesh.toml)."""


def agent_id(instance: str) -> str:
    return f"{NAME}.{instance}"


def component_name(instance: str) -> str:
    return f"agent-{NAME}-{instance}"


def chaos_component(
    settings: MeshSettings, instance: str, directory: Path, *, concurrency: int = 2
) -> ComponentSpec:
    """One instance of the chaos agent, as the supervisor runs an agent of the catalog."""
    credentials = credentials_path(settings.state_dir, NAME)
    env = {
        **principal_environment(settings, child_environment(settings), NAME, credentials),
        AGENT_INSTANCE_VARIABLE: instance,
        DIRECTORY_VARIABLE: str(directory),
        CONCURRENCY_VARIABLE: str(concurrency),
        # A drain (SIGTERM) lets running handlers finish; the tests' handlers are short.
        "SUTAZAI_AGENT_DRAIN_SECONDS": "10",
    }

    async def prepare() -> None:
        write_agent_credentials(settings, NAME)

    async def probe(pid: int | None) -> None:
        await agent_heartbeat_since(settings, agent_id(instance), pid)

    return ComponentSpec(
        name=component_name(instance),
        launch=Launch(
            argv=[sys.executable, "-m", "tests.tasks.chaos_agent"],
            env=env,
            stop_signal=signal.SIGTERM,
            stop_timeout=20.0,
        ),
        prepare=prepare,
        probe=probe,
        start_timeout=60.0,
    )


@dataclass(frozen=True, slots=True)
class ChaosAgents:
    """The running instances, their supervisor and the directory of their traces."""

    supervisor: Supervisor
    directory: Path

    def pid(self, instance: str) -> int | None:
        """The current process of ``chaos.<instance>``."""
        return component_pid(self.supervisor, component_name(instance))

    def release(self, task_id: str) -> None:
        """Let a ``chaos.hold`` task finish."""
        self._touch("release", task_id)

    def heal(self, task_id: str) -> None:
        """Let a ``chaos.fail`` task succeed."""
        self._touch("healed", task_id)

    def started(self, task_id: str) -> list[tuple[int, str]]:
        """``(attempt, agent id)`` of every handler run of the task that started."""
        return sorted(
            (int(attempt), agent)
            for attempt, agent in (
                name.removeprefix(f"{task_id}.").split(".", 1)
                for name in self._names("started", task_id)
            )
        )

    def completions(self, task_id: str) -> list[tuple[int, str, str]]:
        """``(attempt, agent id, nonce)`` of every handler run of the task that completed."""
        found = []
        for name in self._names("done", task_id):
            attempt, rest = name.removeprefix(f"{task_id}.").split(".", 1)
            agent, _, nonce = rest.rpartition(".")
            found.append((int(attempt), agent, nonce))
        return sorted(found)

    def all_completions(self) -> dict[str, list[tuple[int, str, str]]]:
        """:meth:`completions` of every task that completed at least once."""
        folder = self.directory / "done"
        task_ids = {p.name.split(".", 1)[0] for p in folder.iterdir()} if folder.is_dir() else set()
        return {task_id: self.completions(task_id) for task_id in task_ids}

    def _touch(self, kind: str, task_id: str) -> None:
        folder = self.directory / kind
        folder.mkdir(parents=True, exist_ok=True)
        (folder / task_id).touch()

    def _names(self, kind: str, task_id: str) -> list[str]:
        folder = self.directory / kind
        if not folder.is_dir():
            return []
        return [p.name for p in folder.iterdir() if p.name.startswith(f"{task_id}.")]


@asynccontextmanager
async def running_chaos_agents(
    settings: MeshSettings,
    directory: Path,
    *,
    instances: Sequence[str] = INSTANCES,
    concurrency: int = 2,
) -> AsyncIterator[ChaosAgents]:
    """The chaos agent's ``instances``, healthy, under a supervisor of their own.

    ``directory`` (which must exist) receives their traces.
    """
    components = [
        chaos_component(settings, instance, directory, concurrency=concurrency)
        for instance in instances
    ]
    async with supervised(settings, components) as supervisor:
        yield ChaosAgents(supervisor, directory)
