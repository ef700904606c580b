"""Small files that several processes edit: written atomically, edited under a lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def replace_file(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` atomically with ``mode``.

    The text goes to a fresh temporary file in the same directory (created 0600, so a secret is
    never readable by others, not even briefly), is flushed to disk, then renamed over ``path``;
    readers see the old file or the new one, never half of one, and a crash leaves the old one.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename itself reaches the disk only with its directory.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def exclusive_lock(lock_file: Path) -> Iterator[None]:
    """An exclusive advisory lock (``flock``) held for the ``with`` block.

    Every editor of a shared file takes it around its read-modify-write, so two concurrent
    edits are serialised instead of one silently undoing the other. The lock is released when
    the block ends or the process dies.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock_file, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
