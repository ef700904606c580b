"""``sutazai down``: stop the supervisor of a state directory and wait until all is gone."""

from __future__ import annotations

import signal
from typing import Annotated

import psutil
import typer

from sutazai.ops.cli.console import out
from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError
from sutazai.ops.supervisor.pidfile import running_supervisor


def down(
    ctx: typer.Context,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every process to exit.")
    ] = 90.0,
) -> None:
    """Stop the mesh: the supervisor stops every component in reverse order."""
    settings = mesh_settings(ctx)
    pid = running_supervisor(settings.state_dir)
    if pid is None:
        out.print("the mesh is not running")
        return
    try:
        supervisor = psutil.Process(pid)
        # Collected before the signal: once the supervisor is gone, its children are orphans
        # that could no longer be found through it.
        family = [supervisor, *supervisor.children(recursive=True)]
        supervisor.send_signal(signal.SIGTERM)
    except psutil.NoSuchProcess:
        out.print("the mesh is not running")
        return
    except psutil.AccessDenied as exc:
        raise CliError(f"not allowed to signal the supervisor (pid {pid})") from exc
    _, alive = psutil.wait_procs(family, timeout=timeout)
    if alive:
        left = ", ".join(f"{p.pid}" for p in alive)
        raise CliError(f"still running after {timeout:.0f}s: pid {left}")
    out.print(f"the mesh is down ({len(family)} processes stopped)")
