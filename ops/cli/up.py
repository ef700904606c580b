"""``sutazai up``: run the mesh in the foreground, or start it detached and wait until healthy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Annotated

import typer

from sutazai.ops.cli.console import err, out
from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError
from sutazai.ops.cli.logging_setup import configure_logging
from sutazai.ops.supervisor import Supervisor
from sutazai.ops.supervisor.components import mesh_components
from sutazai.ops.supervisor.credentials import ensure_credentials
from sutazai.ops.supervisor.logfiles import open_log, prepare_logs_dir, tail
from sutazai.ops.supervisor.pidfile import PidFile, running_supervisor
from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.exposure import require_safe_edge
from sutazai.runtime.logfiles import log_path
from sutazai.runtime.settings import MeshSettings

READY = "ready"


def up(
    ctx: typer.Context,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; return once healthy.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="With --detach: seconds to wait for the mesh to be healthy.")
    ] = 600.0,
    notify_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Start the whole mesh: NATS, PostgreSQL, Redis, gateway, Envoy, then the services."""
    settings = mesh_settings(ctx)
    try:
        require_safe_edge(settings)
    except ConfigurationError as exc:
        raise CliError(str(exc)) from exc
    running = running_supervisor(settings.state_dir)
    if running is not None:
        raise CliError(f"the mesh is already running (supervisor pid {running})")
    # Passwords and signing keys exist before any child (or the detached supervisor) reads
    # them; a running mesh's are left alone (this may retire a principal's).
    ensure_credentials(settings)
    if detach:
        _start_detached(settings, timeout)
        return
    configure_logging()
    notify = _notifier(notify_fd)

    def ready(message: str) -> None:
        notify(message)
        if notify_fd is None:
            err.print("the mesh is up; Ctrl-C stops it")

    try:
        asyncio.run(run_supervisor(settings, ready))
    except BaseException as exc:
        notify(str(exc) or type(exc).__name__)
        raise


async def run_supervisor(settings: MeshSettings, ready: Callable[[str], None]) -> None:
    """Run the mesh until SIGINT or SIGTERM, then stop every component in reverse order.

    ``ready`` is called with :data:`READY` once every component is healthy.
    """
    with PidFile(settings.state_dir):
        supervisor = Supervisor(settings, mesh_components(settings))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        starting = asyncio.create_task(supervisor.start(), name="supervisor.start")
        stopping = asyncio.create_task(stop.wait(), name="supervisor.stop-requested")
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()
                ready(READY)
                await stopping
            else:
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
        finally:
            stopping.cancel()
            await supervisor.stop()


def _notifier(fd: int | None) -> Callable[[str], None]:
    """Report the outcome of the start once, to the detached parent's pipe (if any)."""
    sent = False

    def notify(message: str) -> None:
        nonlocal sent
        if fd is None or sent:
            return
        sent = True
        with contextlib.suppress(OSError):
            os.write(fd, message.encode("utf-8", errors="replace") + b"\n")
            os.close(fd)

    return notify


def _start_detached(settings: MeshSettings, timeout: float) -> None:
    prepare_logs_dir(settings.state_dir)
    log_file = log_path(settings.state_dir, "supervisor")
    read_end, write_end = os.pipe()
    command = [
        sys.executable,
        "-m",
        "sutazai.ops.cli",
        "--state-dir",
        str(settings.state_dir),
        "up",
        "--notify-fd",
        str(write_end),
    ]
    with open_log(log_file) as sink:
        # A new session: the supervisor outlives this command and the terminal's signals.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            pass_fds=(write_end,),
            start_new_session=True,
        )
    os.close(write_end)
    try:
        message = _read_outcome(read_end, timeout)
    finally:
        os.close(read_end)
    if message == READY:
        # The supervisor runs on as a daemon: not waiting for it is the point.
        out.print(f"the mesh is up (supervisor pid {process.pid}, logs in {log_file.parent})")
        return
    if message is None:
        process.terminate()
        process.wait()
        raise CliError(
            f"the mesh was not healthy within {timeout:.0f}s and was stopped (see {log_file})"
        )
    process.wait()
    if not message:
        raise CliError(f"the supervisor exited during start:\n{tail(log_file)}")
    raise CliError(f"the mesh did not start: {message}")


def _read_outcome(fd: int, timeout: float) -> str | None:
    """The one-line outcome written by the detached supervisor.

    Returns ``""`` if the supervisor exited without writing one, ``None`` on timeout.
    """
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", errors="replace").strip()
