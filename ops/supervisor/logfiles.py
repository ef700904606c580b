"""Component logs on the writing side: a private directory and files opened for appending.

Where they live and how to read their end is :mod:`sutazai.runtime.logfiles` (the system
service reads them too). Logs hold usernames and client addresses (Envoy's access log) and
whatever a component prints: the directory is 0700 and every file 0600, also those an older
version left more open.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Final

from sutazai.runtime.logfiles import last_lines, logs_dir

LOGS_DIR_MODE: Final = 0o700
LOG_FILE_MODE: Final = 0o600


def prepare_logs_dir(state_dir: Path) -> Path:
    """Create the logs directory 0700 and make it and every log file in it private."""
    directory = logs_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=LOGS_DIR_MODE)
    _restrict(directory, LOGS_DIR_MODE)
    for path in directory.glob("*.log"):
        _restrict(path, LOG_FILE_MODE)
    return directory


def open_log(path: Path) -> BinaryIO:
    """Open a log file for appending, created 0600 (an existing one is made 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=LOGS_DIR_MODE)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != LOG_FILE_MODE:
            os.fchmod(fd, LOG_FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab")


def _restrict(path: Path, mode: int) -> None:
    info = path.lstat()
    if not stat.S_ISLNK(info.st_mode) and stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)


def tail(path: Path, count: int = 20) -> str:
    """The last lines of a file as one string, for error messages."""
    return "\n".join(last_lines(path, count))
