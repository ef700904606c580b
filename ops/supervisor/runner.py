"""The life of one component: prepare, launch, wait until healthy, restart after crashes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import structlog

from sutazai.ops.supervisor.backoff import RestartPolicy
from sutazai.ops.supervisor.child import Child, describe_exit
from sutazai.ops.supervisor.errors import StartupError, SupervisorError
from sutazai.ops.supervisor.logfiles import tail
from sutazai.ops.supervisor.spec import ComponentSpec

log = structlog.get_logger(__name__)

# One probe may not take longer than this, so a hung probe cannot eat the whole start timeout.
_PROBE_TIMEOUT = 5.0
# How long stop() waits for supervision to end before stopping the child regardless: a
# well-behaved supervision ends at its next await; only a probe or bootstrap that ignores
# cancellation takes longer, and it must not keep the child (and stop()) alive forever.
_SUPERVISION_STOP_TIMEOUT = 5.0
# stop() cancels again this often while it waits: a cancellation swallowed by whatever was
# being awaited then still arrives at supervision's next await.
_RECANCEL_INTERVAL = 0.5


class ComponentRunner:
    """Runs one :class:`ComponentSpec` until stopped."""

    def __init__(self, spec: ComponentSpec, log_file: Path, policy: RestartPolicy) -> None:
        self.spec = spec
        self.log_file = log_file
        self._policy = policy
        self._child: Child | None = None
        self._supervision: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The pid of the current process, or ``None`` (external, or between restarts)."""
        if self._child is None or self._child.returncode is not None:
            return None
        return self._child.pid

    async def start(self) -> None:
        """Prepare, launch and wait until healthy, then bootstrap and watch for crashes.

        Raises:
            StartupError: the component was not healthy within its start timeout.
            LaunchError: preparing, launching or bootstrapping failed.

        """
        await self.spec.prepare()
        launch = self.spec.launch
        if launch is not None:
            self._child = await Child.spawn(self.spec.name, launch, self.log_file)
        await self._await_healthy(self._child)
        await self.spec.bootstrap()
        if self._child is not None:
            self._supervision = asyncio.create_task(
                self._supervise(), name=f"supervise:{self.spec.name}"
            )

    async def stop(self) -> None:
        """Stop watching, then stop the process (no-op for an external component).

        Bounded: supervision that does not end within a few seconds of being cancelled is
        abandoned (it can no longer start a process) and the process is stopped anyway.
        """
        self._stopping = True
        supervision, self._supervision = self._supervision, None
        if supervision is not None and not await _cancel(supervision, _SUPERVISION_STOP_TIMEOUT):
            log.error(
                "component.supervision_stuck",
                component=self.spec.name,
                after_seconds=_SUPERVISION_STOP_TIMEOUT,
            )
        if self._child is not None:
            await self._child.stop()

    async def _await_healthy(self, child: Child | None) -> None:
        started = time.monotonic()
        deadline = started + self.spec.start_timeout
        last_error = "not probed yet"
        pid = None if child is None else child.pid
        while True:
            if child is not None and child.returncode is not None:
                raise StartupError(
                    self.spec.name,
                    f"exited ({describe_exit(child.returncode)}) before becoming healthy",
                    tail(self.log_file),
                )
            # asyncio.timeout, not wait_for: the probe runs in this task, so a cancellation
            # (stop()) always reaches it. Python 3.11's wait_for runs it in a task of its own and
            # returns its result instead of raising when cancelled just after it finished.
            try:
                async with asyncio.timeout(_PROBE_TIMEOUT):
                    await self.spec.probe(pid)
            except Exception as exc:  # Any probe failure just means "not healthy yet".
                last_error = str(exc) or type(exc).__name__
            else:
                log.info(
                    "component.healthy",
                    component=self.spec.name,
                    pid=pid,
                    seconds=round(time.monotonic() - started, 2),
                )
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StartupError(
                    self.spec.name,
                    f"not healthy within {self.spec.start_timeout:.0f}s (last probe: {last_error})",
                    tail(self.log_file) if child is not None else "",
                )
            pause = min(self.spec.probe_interval, remaining)
            if child is None:
                await asyncio.sleep(pause)
            else:
                # Wake early when the child exits, to report that instead of a timeout.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await child.wait()

    async def _supervise(self) -> None:
        failures = 0
        child = self._child
        # The checks of the flag, besides the cancellation: supervision that swallowed its
        # cancellation (see stop()) ends instead of restarting what stop() stopped.
        while True:
            if child is not None:
                code = await child.wait()
                if self._stopping:
                    return
                failures = self._policy.failures_after(failures, child.uptime())
                log.warning(
                    "component.exited",
                    component=self.spec.name,
                    pid=child.pid,
                    status=describe_exit(code),
                )
            else:
                failures += 1
            delay = self._policy.delay(failures)
            log.info(
                "component.restart_scheduled",
                component=self.spec.name,
                in_seconds=round(delay, 2),
                consecutive_failures=failures,
            )
            await asyncio.sleep(delay)
            child = await self._respawn()
            if self._stopping:
                return

    async def _respawn(self) -> Child | None:
        launch = self.spec.launch
        if launch is None:  # Only launched components are supervised.
            return None
        try:
            await self.spec.prepare()
            if self._stopping:
                return None
            child = await Child.spawn(self.spec.name, launch, self.log_file)
        except SupervisorError as exc:
            log.error("component.restart_failed", component=self.spec.name, error=str(exc))
            return None
        self._child = child
        self.restarts += 1
        log.info(
            "component.restarted", component=self.spec.name, pid=child.pid, restarts=self.restarts
        )
        try:
            await self._await_healthy(child)
            await self.spec.bootstrap()
        except SupervisorError as exc:
            # Keep supervising: if the process exits, the loop restarts it again.
            log.error("component.unhealthy_after_restart", component=self.spec.name, error=str(exc))
        return child


async def _cancel(task: asyncio.Task[None], grace: float) -> bool:
    """Cancel ``task`` and wait up to ``grace`` seconds for it to end; whether it ended.

    Cancels again every :data:`_RECANCEL_INTERVAL` while waiting. Waiting with
    :func:`asyncio.wait` leaves the caller's own cancellation alone (``await task`` under
    ``suppress(CancelledError)`` would swallow it too).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(_RECANCEL_INTERVAL, remaining))
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("component.supervision_failed", error=repr(error))
    return True
