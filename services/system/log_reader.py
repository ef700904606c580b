"""Reading the components' logs in ``<state dir>/logs``: list them, tail one, follow it.

The system service runs as the same user as the supervisor that writes the logs, so it can
read them; what it reads is only ever a regular file directly in the logs directory, named by a
validated component name (:func:`.logs.component_problem`), opened without following symlinks.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final

from sutazai.runtime.logfiles import lines_backwards, log_path, logs_dir
from sutazai.services.system.logs import LineFilter, LogLine, component_problem

MAX_SCAN_BYTES: Final = 16 * 1024 * 1024
"""How much of a log's end one tail reads at most while looking for matching lines: a filter
that matches nothing must not make every call read a whole large log."""
FOLLOW_POLL_SECONDS: Final = 0.25
"""How often a followed log is checked for new data (a file offers nothing portable to wait on;
like ``tail -f``)."""
KEEPALIVE_SECONDS: Final = 30.0
"""Silence after which a follower yields an empty batch (the edge's idle timeout is 5 min)."""
_READ_BYTES: Final = 64 * 1024
_MAX_PARTIAL: Final = 64 * 1024
_SUFFIX: Final = ".log"


@dataclass(frozen=True, slots=True)
class LogFile:
    """One component's log as listed."""

    component: str
    size_bytes: int
    modified_at: datetime


class LogReader:
    """The logs directory of one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir

    def list(self) -> list[LogFile]:
        """Every regular ``<component>.log`` directly in the logs directory, by component."""
        found = []
        try:
            entries = list(os.scandir(logs_dir(self._state_dir)))
        except FileNotFoundError:
            return []
        for entry in entries:
            component = entry.name.removesuffix(_SUFFIX)
            if component == entry.name or component_problem(component) is not None:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append(
                    LogFile(component, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))
                )
        return sorted(found, key=lambda f: f.component)

    def path(self, component: str) -> Path:
        """Where a (validated) component's log is."""
        return log_path(self._state_dir, component)

    def open(self, component: str) -> BinaryIO | None:
        """The component's log opened for reading, or None when there is no such regular file.

        A symlink, FIFO, device or directory planted under the name counts as missing.
        """
        if component_problem(component) is not None:
            return None
        return _open_regular(self.path(component))


def _open_regular(path: Path) -> BinaryIO | None:
    # O_NOFOLLOW: a symlink in the logs directory is refused, not read through; O_NONBLOCK: a
    # FIFO planted there cannot block the open.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in {errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ENXIO, errno.EISDIR}:
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def tail(handle: BinaryIO, count: int, line_filter: LineFilter) -> tuple[list[LogLine], int]:
    """The last ``count`` lines that pass the filter, oldest first, and where the file ended.

    Blocking; reads at most :data:`MAX_SCAN_BYTES` of the end.
    """
    end = os.fstat(handle.fileno()).st_size
    found: list[LogLine] = []
    if count > 0:
        for raw in lines_backwards(handle, max_bytes=MAX_SCAN_BYTES, end=end):
            line = line_filter.accept(raw)
            if line is not None:
                found.append(line)
                if len(found) == count:
                    break
    found.reverse()
    return found, end


async def follow(
    path: Path,
    handle: BinaryIO,
    position: int,
    line_filter: LineFilter,
    *,
    poll_seconds: float = FOLLOW_POLL_SECONDS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> AsyncIterator[list[LogLine]]:
    """Batches of the lines written to ``path`` after ``position``, forever.

    A batch is empty after ``keepalive_seconds`` without one. When the file is truncated or
    replaced (rotated, recreated by a restarted supervisor), reading starts over at the start of
    the new file; while it is missing (or replaced by something that is not a regular file),
    the follower waits.
    """
    current: BinaryIO | None = handle
    handle.seek(position)
    partial = bytearray()
    dropped = 0
    last_sent = time.monotonic()
    try:
        while True:
            chunk = current.read(_READ_BYTES) if current is not None else b""
            if chunk:
                batch: list[LogLine] = []
                *complete, rest = chunk.split(b"\n")
                for piece in complete:
                    partial += piece
                    line = line_filter.accept(bytes(partial), dropped)
                    partial.clear()
                    dropped = 0
                    if line is not None:
                        batch.append(line)
                room = max(0, _MAX_PARTIAL - len(partial))
                partial += rest[:room]
                dropped += len(rest) - len(rest[:room])
                if batch:
                    last_sent = time.monotonic()
                    yield batch
                continue
            changed, replacement = _replacement(path, current)
            if changed:
                if current is not None and replacement is not current:
                    current.close()
                current = replacement
                partial.clear()
                dropped = 0
                continue
            if time.monotonic() - last_sent >= keepalive_seconds:
                last_sent = time.monotonic()
                yield []
            await asyncio.sleep(poll_seconds)
    finally:
        if current is not None:
            current.close()


def _replacement(path: Path, current: BinaryIO | None) -> tuple[bool, BinaryIO | None]:
    """Whether to switch handles, and to which.

    To ``current`` rewound (it was truncated in place), a fresh handle (the file was replaced)
    or None (it is gone, or is no regular file now).
    """
    try:
        info = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return current is not None, None
    if current is not None:
        mine = os.fstat(current.fileno())
        if (info.st_ino, info.st_dev) == (mine.st_ino, mine.st_dev):
            if info.st_size >= current.tell():
                return False, current
            current.seek(0)
            return True, current
    fresh = _open_regular(path)
    if fresh is None:
        return current is not None, None
    return True, fresh
