"""Whole-tree snapshots: content, kind, mode and modification time of every entry.

A dry run, or a refused request, must leave a tree exactly as it was: comparing two snapshots
catches a file moved, written, re-timed or re-moded, and a directory entry added or removed
(a directory's own modification time changes with its entries).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

Entry = tuple[str, int, int, str]
"""(kind, mode bits, mtime in ns, sha256 of a file's content or a symlink's target)"""


def snapshot(top: Path) -> dict[str, Entry]:
    """Every entry under ``top`` (itself included), never following a symlink."""
    found: dict[str, Entry] = {}
    for directory, dirs, files in os.walk(top, followlinks=False):
        for name in [".", *dirs, *files]:
            path = Path(directory) / name if name != "." else Path(directory)
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                kind, digest = "link", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                kind, digest = "dir", ""
            elif stat.S_ISREG(st.st_mode):
                kind, digest = "file", hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                kind, digest = "other", ""
            found[str(path.relative_to(top))] = (
                kind,
                stat.S_IMODE(st.st_mode),
                st.st_mtime_ns,
                digest,
            )
    return found
