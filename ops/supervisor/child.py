"""One run of a component's process: spawned into its own session, logged, stopped for good."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import structlog

from sutazai.ops.supervisor.errors import LaunchError
from sutazai.ops.supervisor.lifeline import die_with_parent
from sutazai.ops.supervisor.logfiles import open_log
from sutazai.ops.supervisor.spec import Launch
from sutazai.ops.supervisor.system_user import identity_of

log = structlog.get_logger(__name__)


class Child:
    """A running child process; build it with :meth:`spawn`."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, launch: Launch) -> None:
        self.name = name
        self._process = process
        self._launch = launch
        self.started_at = time.monotonic()

    @classmethod
    async def spawn(cls, name: str, launch: Launch, log_path: Path) -> Child:
        """Start ``launch`` with stdout and stderr appended to ``log_path`` (created 0600).

        The child gets its own session so a terminal's Ctrl-C reaches only the supervisor, which
        then stops children in reverse start order instead of all at once.
        """
        identity = identity_of(launch.user)
        with open_log(log_path) as sink:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            sink.write(f"--- {stamp} supervisor starts {name}: {' '.join(launch.argv)}\n".encode())
            sink.flush()
            try:
                process = await asyncio.create_subprocess_exec(
                    *launch.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env=dict(launch.env),
                    cwd=launch.cwd,
                    user=identity.uid,
                    group=identity.gid,
                    extra_groups=identity.extra_groups,
                    start_new_session=True,
                    preexec_fn=die_with_parent(launch.stop_signal),
                )
            except OSError as exc:
                raise LaunchError(f"cannot start {name} ({launch.argv[0]}): {exc}") from exc
        log.info("child.started", component=name, pid=process.pid)
        return cls(name, process, launch)

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended, else ``None``."""
        return self._process.returncode

    def uptime(self) -> float:
        """Seconds since the process was started."""
        return time.monotonic() - self.started_at

    async def wait(self) -> int:
        """Wait until the process ends; returns its exit status."""
        return await self._process.wait()

    async def stop(self) -> None:
        """Ask the process to stop, kill its group after the grace period, reap it.

        The final group kill also reaches grandchildren (e.g. PostgreSQL backends) that a
        process killed with SIGKILL could leave behind.
        """
        if self._process.returncode is None:
            self._signal(self._launch.stop_signal)
            try:
                async with asyncio.timeout(self._launch.stop_timeout):
                    await self._process.wait()
            except TimeoutError:
                log.warning(
                    "child.kill",
                    component=self.name,
                    pid=self.pid,
                    after_seconds=self._launch.stop_timeout,
                )
                self._kill_group()
                await self._process.wait()
        self._kill_group()
        log.info("child.stopped", component=self.name, pid=self.pid, code=self.returncode)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def describe_exit(code: int) -> str:
    """``exit status 3`` or ``killed by SIGKILL``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
