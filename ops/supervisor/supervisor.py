"""The supervisor: runs the components of the mesh in health-gated order and keeps them up."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import structlog

from sutazai.ops.supervisor.backoff import RestartPolicy
from sutazai.ops.supervisor.logfiles import prepare_logs_dir
from sutazai.ops.supervisor.runner import ComponentRunner
from sutazai.ops.supervisor.spec import ComponentSpec
from sutazai.runtime.logfiles import log_path
from sutazai.runtime.settings import MeshSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ComponentState:
    """What the supervisor knows about one started component."""

    name: str
    external: bool
    pid: int | None
    """Current process id; ``None`` for external components and between restarts."""
    restarts: int
    log_file: str


class Supervisor:
    """Runs the components of a mesh as supervised child processes.

    It starts components one after another, each once the previous one is healthy, restarts
    crashed children with backoff, and stops everything in reverse order. Use it as an async
    context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        settings: MeshSettings,
        components: Sequence[ComponentSpec],
        *,
        restart_policy: RestartPolicy | None = None,
    ) -> None:
        names = [spec.name for spec in components]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"component names must be unique: {', '.join(duplicates)}")
        self._settings = settings
        self._specs = list(components)
        self._policy = restart_policy or RestartPolicy()
        self._runners: list[ComponentRunner] = []
        self._lock = asyncio.Lock()

    @property
    def settings(self) -> MeshSettings:
        """The settings the components were built from."""
        return self._settings

    async def start(self) -> None:
        """Start every component in order; return once all are healthy.

        On failure or cancellation, whatever was started is stopped before the error propagates.

        Raises:
            StartupError: a component was not healthy within its start timeout.
            LaunchError: a component could not be prepared or launched.

        """
        async with self._lock:
            if self._runners:
                raise RuntimeError("the supervisor is already started")
            try:
                prepare_logs_dir(self._settings.state_dir)
                for spec in self._specs:
                    runner = ComponentRunner(
                        spec, log_path(self._settings.state_dir, spec.name), self._policy
                    )
                    self._runners.append(runner)
                    log.info("component.starting", component=spec.name, external=spec.external)
                    await runner.start()
            except BaseException:
                await self._stop_runners()
                raise
        log.info("mesh.started", components=len(self._specs))

    async def stop(self) -> None:
        """Stop every started component in reverse start order. Safe to call more than once."""
        # Not under the start lock: stop must be able to interrupt a start in progress, which
        # the caller does by cancelling the start task first.
        await self._stop_runners()

    def snapshot(self) -> list[ComponentState]:
        """The started components, in start order."""
        return [
            ComponentState(
                name=runner.spec.name,
                external=runner.spec.external,
                pid=runner.pid,
                restarts=runner.restarts,
                log_file=str(runner.log_file),
            )
            for runner in self._runners
        ]

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _stop_runners(self) -> None:
        while self._runners:
            runner = self._runners.pop()
            log.info("component.stopping", component=runner.spec.name)
            await runner.stop()
