"""``sutazai logs``: the log of one component, from ``<state dir>/logs``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError
from sutazai.runtime.logfiles import last_lines, log_path, logs_dir

_FOLLOW_INTERVAL = 0.25


def logs(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Component name, e.g. postgres or system.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing lines as they are written.")
    ] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Lines to show.")] = 50,
) -> None:
    """Print the end of a component's log."""
    settings = mesh_settings(ctx)
    if not service or Path(service).name != service or service.startswith("."):
        raise CliError(f"invalid component name {service!r}")
    path = log_path(settings.state_dir, service)
    if not path.is_file():
        known = sorted(p.stem for p in logs_dir(settings.state_dir).glob("*.log"))
        hint = f"; logs exist for: {', '.join(known)}" if known else ""
        raise CliError(f"no log for {service!r} in {logs_dir(settings.state_dir)}{hint}")
    for line in last_lines(path, lines):
        typer.echo(line)
    if follow:
        try:
            _follow(path)
        except KeyboardInterrupt:
            return


def _follow(path: Path) -> None:
    """Print what is appended to ``path``; start over if it is truncated or replaced."""
    handle = path.open("rb")
    try:
        handle.seek(0, os.SEEK_END)
        while True:
            chunk = handle.read()
            if chunk:
                typer.echo(chunk.decode("utf-8", errors="replace"), nl=False)
                continue
            try:
                current = path.stat()
            except FileNotFoundError:
                current = None
            if current is not None and (
                current.st_ino != os.fstat(handle.fileno()).st_ino
                or current.st_size < handle.tell()
            ):
                handle.close()
                handle = path.open("rb")
                continue
            # A log file offers nothing to wait on portably; poll like `tail -f`.
            time.sleep(_FOLLOW_INTERVAL)
    finally:
        handle.close()
