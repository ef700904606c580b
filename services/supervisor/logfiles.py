"""Where component logs live (``<state dir>/logs/<name>.log``) and how to read their end."""

from __future__ import annotations

import os
from pathlib import Path

_BLOCK = 8192


def logs_dir(state_dir: Path) -> Path:
    """The directory holding every component's log."""
    return state_dir / "logs"


def log_path(state_dir: Path, name: str) -> Path:
    """The log file of one component (or of the supervisor itself, ``supervisor``)."""
    return logs_dir(state_dir) / f"{name}.log"


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a file, read backwards so large logs stay cheap.

    Returns an empty list for a missing file.
    """
    if count <= 0:
        return []
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return []
    with handle:
        end = handle.seek(0, os.SEEK_END)
        data = b""
        position = end
        # One extra line: the first one in the window may be partial.
        while position > 0 and data.count(b"\n") <= count:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-count:]


def tail(path: Path, count: int = 20) -> str:
    """The last lines of a file as one string, for error messages."""
    return "\n".join(last_lines(path, count))
