"""A bounded, cancellable walk of a directory tree that never follows a symlink.

The walk holds one directory file descriptor per level and opens each sub-directory relative
to its parent with ``O_NOFOLLOW | O_DIRECTORY``, so a directory swapped for a symlink between
listing and descending is refused by the kernel, not followed. Only regular files are
yielded; symlinks, special files, hidden directories (unless asked for), protected entries and
unreadable directories are passed over and counted (``entries_skipped``).

Depth bounds what is visited (deeper entries are simply not looked at); ``max_files`` and
``max_seconds`` stop the walk early, which the summary reports as ``truncated`` (not an
error). A set cancel token raises :class:`Cancelled`. All of it is synchronous: the service
runs it in a worker thread.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.settings import HardwareSettings
from sutazai.services.hardware.errors import Cancelled, InvalidArgumentError, InvalidPathError
from sutazai.services.hardware.paths import PathPolicy

TRUNCATED_BY_FILES = "max_files"
TRUNCATED_BY_DURATION = "max_duration"

_CHECK_EVERY = 256
"""Entries between two looks at the cancel token, the clock and the progress interval."""
_PROGRESS_SECONDS = 0.5
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class WalkLimits:
    """How far one walk may go (see :func:`limits_from`)."""

    max_depth: int
    """Directory levels below the walked path: 0 visits only its own files."""
    max_files: int
    max_seconds: float
    include_hidden: bool
    """Also descend into directories whose name starts with a dot."""


def limits_from(request_limits: pb.ScanLimits | None, settings: HardwareSettings) -> WalkLimits:
    """A request's limits with the configured defaults filled in.

    Zero or unset means the default; a value above the configured maximum, or a negative or
    malformed duration, raises :class:`InvalidArgumentError` naming the field.
    """
    limits = request_limits if request_limits is not None else pb.ScanLimits()
    max_depth = limits.max_depth or min(settings.default_max_depth, settings.max_depth)
    if max_depth > settings.max_depth:
        raise InvalidArgumentError("limits.max_depth", f"at most {settings.max_depth}")
    max_files = limits.max_files or min(settings.default_max_files, settings.max_files)
    if max_files > settings.max_files:
        raise InvalidArgumentError("limits.max_files", f"at most {settings.max_files}")
    max_seconds = min(settings.default_max_seconds, settings.max_seconds)
    if limits.HasField("max_duration"):
        duration = limits.max_duration
        if duration.seconds < 0 or not 0 <= duration.nanos < 1_000_000_000:
            raise InvalidArgumentError("limits.max_duration", "must be a positive duration")
        asked = duration.seconds + duration.nanos / 1e9
        if asked > settings.max_seconds:
            raise InvalidArgumentError(
                "limits.max_duration", f"at most {settings.max_seconds:g} seconds"
            )
        if asked > 0:
            max_seconds = asked
    return WalkLimits(
        max_depth=max_depth,
        max_files=max_files,
        max_seconds=max_seconds,
        include_hidden=limits.include_hidden,
    )


class Progress(Protocol):
    """Told how far a long operation got (a task's progress report, a log line)."""

    def __call__(self, files_done: int, message: str) -> None:
        """``files_done`` files looked at so far; ``message`` says what is happening."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One regular file met by a walk (``lstat`` values)."""

    path: Path
    size: int
    mtime_ns: int
    dev: int
    ino: int
    mode: int
    ctime_ns: int
    """Inode change time: nobody can set it, so it tells a rewrite whose mtime was put back."""

    def entry(self) -> pb.FileEntry:
        """The file as the API reports it."""
        modified = Timestamp()
        modified.FromNanoseconds(self.mtime_ns)
        return pb.FileEntry(path=shown(self.path), size_bytes=self.size, modified_at=modified)


def shown(path: Path | str) -> str:
    r"""A path as the API sends it: a protobuf string carries only UTF-8.

    A name whose bytes are not UTF-8 (legal on Linux) is shown with them escaped as ``\xNN``.
    """
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


@dataclass(slots=True)
class _Level:
    """One open directory of the walk, and the sub-directories still to visit."""

    fd: int
    path: Path
    depth: int
    pending: list[str] = field(default_factory=list)


class Walk(Iterator[FileInfo]):
    """The files of one walk, as an iterator; its counters build the :meth:`summary`.

    Closing it (or leaving its ``with`` block) closes every directory it holds open.
    """

    def __init__(
        self,
        root: Path,
        limits: WalkLimits,
        *,
        cancel: threading.Event,
        progress: Progress | None,
        policy: PathPolicy,
    ) -> None:
        self.root = root
        self.limits = limits
        self.files = 0
        self.directories = 0
        self.skipped = 0
        self.truncated_by = ""
        """``"max_files"`` or ``"max_duration"`` when a limit stopped the walk."""
        self._cancel = cancel
        self._progress = progress
        self._policy = policy
        self._started = time.monotonic()
        self.deadline = self._started + limits.max_seconds
        """When ``max_seconds`` runs out (``time.monotonic``); later phases share it."""
        self._finished: float | None = None
        self._last_progress = self._started
        self._ticks = 0
        self._files = self._walk()

    def __iter__(self) -> Walk:
        return self

    def __next__(self) -> FileInfo:
        return next(self._files)

    def __enter__(self) -> Walk:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the walk and release its directories."""
        self._files.close()
        if self._finished is None:
            self._finished = time.monotonic()

    @property
    def truncated(self) -> bool:
        """Whether a limit stopped the walk before it covered everything."""
        return bool(self.truncated_by)

    @property
    def elapsed(self) -> float:
        """Seconds from the start to the end of the walk (or to now, while it runs)."""
        end = self._finished if self._finished is not None else time.monotonic()
        return end - self._started

    def summary(self) -> pb.ScanSummary:
        """What the walk covered, for the response."""
        elapsed = Duration()
        elapsed.FromNanoseconds(int(self.elapsed * 1e9))
        return pb.ScanSummary(
            resolved_path=shown(self.root),
            files_scanned=self.files,
            directories_scanned=self.directories,
            entries_skipped=self.skipped,
            truncated=self.truncated,
            truncated_by=self.truncated_by,
            elapsed=elapsed,
        )

    # -- the walk --------------------------------------------------------------------------

    def _walk(self) -> Generator[FileInfo]:
        try:
            root_fd = os.open(self.root, _DIR_FLAGS)
        except OSError:
            self._finished = time.monotonic()
            raise InvalidPathError("path", "cannot be opened as a directory") from None
        levels = [_Level(root_fd, self.root, 0)]
        try:
            yield from self._list(levels[0])
            while levels and not self.truncated_by:
                level = levels[-1]
                if not level.pending:
                    os.close(levels.pop().fd)
                    continue
                name = level.pending.pop()
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=level.fd)
                except OSError:
                    # Gone, unreadable, or swapped for a symlink (ELOOP) since it was listed.
                    self.skipped += 1
                    continue
                child = _Level(fd, level.path / name, level.depth + 1)
                levels.append(child)
                yield from self._list(child)
        finally:
            for level in levels:
                os.close(level.fd)
            self._finished = time.monotonic()
        self._report(force=True)

    def _list(self, level: _Level) -> Generator[FileInfo]:
        """Yield the regular files of one directory and note its sub-directories."""
        if self._stop():
            return
        self.directories += 1
        descend = level.depth < self.limits.max_depth
        subdirs: list[str] = []
        try:
            with os.scandir(level.fd) as entries:
                for entry in entries:
                    self._ticks += 1
                    if self._ticks % _CHECK_EVERY == 0 and self._stop():
                        return
                    name = entry.name
                    path = level.path / name
                    try:
                        if entry.is_symlink() or self._policy.excluded(path):
                            self.skipped += 1
                        elif entry.is_dir(follow_symlinks=False):
                            if name.startswith(".") and not self.limits.include_hidden:
                                self.skipped += 1
                            elif descend:
                                subdirs.append(name)
                        elif entry.is_file(follow_symlinks=False):
                            info = self._file(path, entry.stat(follow_symlinks=False))
                            if info is None:
                                self.skipped += 1
                                continue
                            if self.files >= self.limits.max_files:
                                self.truncated_by = TRUNCATED_BY_FILES
                                return
                            self.files += 1
                            yield info
                        else:
                            self.skipped += 1
                    except OSError:
                        self.skipped += 1  # vanished or unreadable between listing and stat
        finally:
            # Depth first, in listing order: pop() takes from the end.
            level.pending = subdirs[::-1]

    @staticmethod
    def _file(path: Path, st: os.stat_result) -> FileInfo | None:
        if not stat.S_ISREG(st.st_mode):
            return None
        return FileInfo(
            path, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, st.st_mode, st.st_ctime_ns
        )

    def _stop(self) -> bool:
        """Check the token, the clock and the progress interval; true when out of time."""
        if self._cancel.is_set():
            raise Cancelled("the walk was cancelled")
        now = time.monotonic()
        if now >= self.deadline:
            self.truncated_by = TRUNCATED_BY_DURATION
            return True
        if now - self._last_progress >= _PROGRESS_SECONDS:
            self._report(now=now)
        return False

    def _report(self, *, now: float | None = None, force: bool = False) -> None:
        if self._progress is None:
            return
        self._last_progress = now if now is not None else time.monotonic()
        state = "walked" if force else "walking"
        self._progress(self.files, f"{state} {self.files} files in {self.directories} directories")


def walk(
    root: Path,
    limits: WalkLimits,
    *,
    cancel: threading.Event,
    progress: Progress | None,
    policy: PathPolicy,
) -> Walk:
    """Walk ``root`` (a directory resolved by :meth:`PathPolicy.resolve_dir`).

    Iterate the result for the regular files; afterwards (or at any point) its
    :meth:`Walk.summary` tells what was covered. Raises :class:`Cancelled` from the iteration
    once ``cancel`` is set; use it in a ``with`` block to release directories early.
    """
    return Walk(root, limits, cancel=cancel, progress=progress, policy=policy)
