"""``<state dir>/supervisor.pid``: who supervises a state directory, held under a lock.

The supervisor keeps an exclusive ``flock`` on the file for its whole life, so a pid left
behind by a crashed supervisor is recognised as stale instead of being signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from sutazai.ops.supervisor.errors import AlreadyRunningError

PID_FILE = "supervisor.pid"


def pid_path(state_dir: Path) -> Path:
    """The pid file of a state directory."""
    return state_dir / PID_FILE


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 64).decode("ascii", errors="replace").strip()
    return int(raw) if raw.isdigit() else None


def running_supervisor(state_dir: Path) -> int | None:
    """The pid of the live supervisor of ``state_dir``, or ``None`` if there is none."""
    try:
        fd = os.open(pid_path(state_dir), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        # The lock was free: whoever wrote the file is gone.
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class PidFile:
    """Claims a state directory for this process; use as a context manager."""

    def __init__(self, state_dir: Path) -> None:
        self.path = pid_path(state_dir)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Lock the file and write this process's pid.

        Raises:
            AlreadyRunningError: another live process holds the lock.

        """
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunningError(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Remove the file and drop the lock."""
        if self._fd is None:
            return
        # Unlink while still holding the lock, so nobody can lock the old inode in between.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> PidFile:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
