"""A site for the storage tests: an allowed root, a place outside it, and a state directory.

Every test builds its own tree under ``tmp_path`` and its own :class:`HardwareSettings`, with
``allowed_roots`` set explicitly (the defaults would point at the real ``/tmp``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sutazai.runtime.settings import HardwareSettings
from sutazai.services.hardware.paths import PathPolicy
from sutazai.services.hardware.walk import WalkLimits

DAY_NS = 86_400 * 10**9


@dataclass
class Site:
    """``root`` is allowed; ``outside`` (holding ``secret.txt``) is not; ``state`` holds
    ``logs`` (a root of its own) and ``secrets``."""

    tmp: Path
    root: Path
    outside: Path
    state: Path
    logs: Path

    def settings(self, **overrides: Any) -> HardwareSettings:
        values: dict[str, Any] = {"allowed_roots": [self.root]}
        values.update(overrides)
        return HardwareSettings(**values)

    def policy(self, **overrides: Any) -> PathPolicy:
        return PathPolicy(self.settings(**overrides), state_dir=self.state, logs_dir=self.logs)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    state = tmp_path / "state"
    logs = state / "logs"
    for directory in (root, outside / "nested", logs, state / "secrets"):
        directory.mkdir(parents=True)
    (outside / "secret.txt").write_bytes(b"outside secret\n")
    (outside / "nested" / "deep-secret.txt").write_bytes(b"deeper secret\n")
    (state / "secrets" / "key").write_bytes(b"private\n")
    (logs / "gateway.log").write_bytes(b"log line\n")
    return Site(tmp_path, root, outside, state, logs)


def write(path: Path, data: bytes, *, age_days: float = 0.0, now_ns: int | None = None) -> Path:
    """Write a file and set its modification time ``age_days`` before ``now_ns``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age_days:
        now = now_ns if now_ns is not None else _now_ns()
        mtime = now - int(age_days * DAY_NS)
        os.utime(path, ns=(mtime, mtime))
    return path


def _now_ns() -> int:
    import time

    return time.time_ns()


def limits(**overrides: Any) -> WalkLimits:
    values: dict[str, Any] = {
        "max_depth": 16,
        "max_files": 1_000_000,
        "max_seconds": 60.0,
        "include_hidden": False,
    }
    values.update(overrides)
    return WalkLimits(**values)


def never() -> threading.Event:
    return threading.Event()


@dataclass
class Untouched:
    """A tree no operation may read or change: its content, and its access times set to 0
    (reading a file or listing a directory moves an access time on, with ``relatime``)."""

    top: Path
    atime_tracked: bool
    before: dict[Path, tuple[str, int]] = field(default_factory=dict)

    @classmethod
    def capture(cls, top: Path) -> Untouched:
        tracked = _atime_is_tracked(top.parent)
        before: dict[Path, tuple[str, int]] = {}
        # Listed and read first, then every access time is set to 0 (listing moves them on).
        for path in [top, *top.rglob("*")]:
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            before[path] = (digest, path.lstat().st_mtime_ns)
        for path, (_, mtime_ns) in before.items():
            os.utime(path, ns=(0, mtime_ns), follow_symlinks=False)
        return cls(top, tracked, before)

    def check(self) -> None:
        """Assert nothing was read (when the mount tracks it), changed, added or removed."""
        # Access times first: the checks below read and list the tree themselves.
        for path, (_, mtime_ns) in self.before.items():
            st = path.lstat()
            assert st.st_mtime_ns == mtime_ns, f"{path} was modified"
            if self.atime_tracked:
                assert st.st_atime_ns == 0, f"{path} was read"
        now = {self.top, *self.top.rglob("*")}
        assert now == set(self.before), "files appeared or vanished outside the roots"
        for path, (digest, _) in self.before.items():
            if digest:
                assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def _atime_is_tracked(where: Path) -> bool:
    """Whether reading moves the access time on here (not on a ``noatime`` mount)."""
    probe = where / ".atime-probe"
    probe.write_bytes(b"x")
    os.utime(probe, ns=(0, probe.lstat().st_mtime_ns))
    probe.read_bytes()
    tracked = probe.lstat().st_atime_ns != 0
    probe.unlink()
    return tracked
