"""Where component logs live (``<state dir>/logs/<name>.log``) and how to read their end.

The supervisor writes the logs (``sutazai.ops.supervisor.logfiles``); ``sutazai logs`` and the
system service's ``TailLogs`` read them with these helpers, so both agree on the layout.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_BLOCK = 8192


def logs_dir(state_dir: Path) -> Path:
    """The directory holding every component's log."""
    return state_dir / "logs"


def log_path(state_dir: Path, name: str) -> Path:
    """The log file of one component (or of the supervisor itself, ``supervisor``)."""
    return logs_dir(state_dir) / f"{name}.log"


def lines_backwards(
    handle: BinaryIO, *, max_bytes: int | None = None, end: int | None = None
) -> Iterator[bytes]:
    """The lines of an open file, last first, without their line breaks.

    Reads blocks from the end, so the cost follows what the caller consumes, not the file's
    size. With ``max_bytes`` at most that much of the file's end is read; a line cut by that
    window is not returned (one byte before the window tells). A final line without a line
    break is returned. ``end`` (default: the file's size now) is where reading starts, so a
    caller that follows the file afterwards can continue exactly there.
    """
    if end is None:
        end = handle.seek(0, os.SEEK_END)
    floor = 0 if max_bytes is None else max(0, end - max_bytes)
    position = end
    # Pieces of the line being assembled, last piece first (joined once the line is whole, so
    # a very long line costs linear time).
    carry: list[bytes] = []
    at_end = True  # nothing returned yet: the text after the last line break comes first
    while position > floor:
        step = min(_BLOCK, position - floor)
        position -= step
        handle.seek(position)
        block = handle.read(step)
        if b"\n" not in block:
            carry.append(block)
            continue
        pieces = block.split(b"\n")
        last = pieces[-1] + b"".join(reversed(carry))
        carry = [pieces[0]]
        if not (at_end and last == b""):
            yield last
        at_end = False
        yield from reversed(pieces[1:-1])
    first = b"".join(reversed(carry))
    if floor > 0:
        handle.seek(floor - 1)
        if handle.read(1) != b"\n":
            return  # the window starts inside a line
    if first or not at_end:
        yield first


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
    lines: list[str] = []
    with handle:
        for raw in lines_backwards(handle):
            lines.append(raw.decode("utf-8", errors="replace"))
            if len(lines) == count:
                break
    lines.reverse()
    return lines
