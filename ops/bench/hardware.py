r"""Storage analysis and duplicate finding over a generated tree, beside the usual tools.

A deterministic tree (``files`` files, 100 per directory, two levels deep, sizes from 8 bytes
to 128 KiB with 1 % empty files, ages up to two years, and a known share of exact copies) is
written to a private temporary directory; then, on that same tree:

- analysis: the hardware service's ``analyze`` against ``du -sb``, ``find -type f -printf
  '%s\n'`` and a plain ``os.walk`` + ``lstat`` loop (the Python floor);
- duplicates: ``find_duplicates`` with a cold hash cache and a warm one, against the
  fdupes-style baseline (group by size, then hash each same-size file's whole content, in
  Python) and ``jdupes``/``fdupes``/``rdfind`` when one is installed.

The contenders run in rounds, each round running every one of them once, in turn; the median
of the rounds is reported. Every contender must find the same files, bytes and groups (the
generated tree says how many), or the benchmark fails. No mesh is needed: the domain code is
called in-process, as the service's worker thread calls it.

By default the tree goes to ``/dev/shm`` (tmpfs): the page cache holds the whole tree anyway
once it is written (every contender measures the same warm cache), and writing and deleting
100,000 files on a virtual disk takes minutes of the run. ``--directory`` puts it on a disk.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import shutil
import stat
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from google.protobuf.duration_pb2 import Duration

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.ops.bench.errors import BenchError
from sutazai.runtime.settings import HardwareSettings
from sutazai.services.hardware.analysis import analyze
from sutazai.services.hardware.duplicates import HashCache, find_duplicates
from sutazai.services.hardware.paths import PathPolicy
from sutazai.services.hardware.report import disk_of

FILES_PER_DIRECTORY = 100
SUBDIRECTORIES = 100
EXTENSIONS = (".log", ".txt", ".bin", ".json", ".tmp", ".gz", "")
DAY_NS = 86_400 * 10**9
_ID_BYTES = 8

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Tree:
    """What was generated, so every contender's answer can be checked."""

    root: Path
    files: int
    directories: int
    bytes: int
    duplicate_files: int
    """Files that are a copy of an earlier one (the waste)."""
    duplicate_groups: int
    wasted_bytes: int
    seconds: float


def _size(rng: random.Random) -> int:
    """Mostly small files, some medium, a few large-ish, and some empty."""
    draw = rng.random()
    if draw < 0.01:
        return 0
    if draw < 0.76:
        return rng.randint(_ID_BYTES, 1023)
    if draw < 0.97:
        return rng.randint(1024, 16 * 1024)
    return rng.randint(16 * 1024, 128 * 1024)


_POOL_BYTES = 256 * 1024
"""Random bytes the files' contents are cut from (generating each file's would dominate)."""


def _content(pool: bytes, content_id: int, size: int) -> bytes:
    # A unique id first: two originals never share content, even at 8 bytes; the rest is a
    # slice of the pool at an offset of the id's choosing.
    offset = (content_id * 7919) % (len(pool) - size + _ID_BYTES)
    return content_id.to_bytes(_ID_BYTES, "big") + pool[offset : offset + size - _ID_BYTES]


def generate(root: Path, files: int, *, seed: int, duplicate_share: float) -> Tree:
    """Write the tree under ``root`` (which must not exist) and say what it holds."""
    started = time.perf_counter()
    rng = random.Random(seed)  # noqa: S311 (a reproducible tree, not secrets)
    pool = rng.randbytes(_POOL_BYTES)
    now = time.time_ns()
    originals: list[tuple[int, int]] = []  # (content id, size) of non-empty originals
    copies: dict[int, int] = {}
    total = 0
    directories: set[Path] = set()
    for index in range(files):
        directory = (
            root
            / f"d{index // (FILES_PER_DIRECTORY * SUBDIRECTORIES):03}"
            / f"s{(index // FILES_PER_DIRECTORY) % SUBDIRECTORIES:02}"
        )
        if directory not in directories:
            directory.mkdir(parents=True)
            directories.update({directory, directory.parent})
        if originals and rng.random() < duplicate_share:
            content_id, size = originals[rng.randrange(len(originals))]
            copies[content_id] = copies.get(content_id, 0) + 1
        else:
            content_id, size = seed * 2**32 + index, _size(rng)
            if size:
                originals.append((content_id, size))
        path = directory / f"f{index:07}{rng.choice(EXTENSIONS)}"
        path.write_bytes(_content(pool, content_id, size) if size else b"")
        mtime = now - int(rng.uniform(0, 730) * DAY_NS)
        os.utime(path, ns=(mtime, mtime))
        total += size
    sizes = dict(originals)
    return Tree(
        root=root,
        files=files,
        directories=len(directories) + 1,
        bytes=total,
        duplicate_files=sum(copies.values()),
        duplicate_groups=len(copies),
        wasted_bytes=sum(sizes[cid] * n for cid, n in copies.items()),
        seconds=round(time.perf_counter() - started, 2),
    )


def _row(name: str, seconds: list[float], files: int, **extra: object) -> dict[str, object]:
    median = statistics.median(seconds)
    return {
        "name": name,
        "seconds": round(median, 3),
        "files_per_second": round(files / median),
        "runs_seconds": [round(s, 3) for s in seconds],
        **extra,
    }


def _command(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"{argv[0]} failed: {done.stderr.strip()[:200]}")
    return done.stdout


def _python_walk(root: Path) -> tuple[int, int]:
    """Files and bytes by ``os.walk`` and ``lstat``: the least a Python walk costs."""
    files = total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(directory, name))
            files += 1
            total += st.st_size
    return files, total


def fdupes_style(root: Path) -> tuple[int, int, int]:
    """Duplicate groups as fdupes finds them: by size, then each candidate's whole content.

    Returns groups, wasted bytes and files hashed. Symlinks and empty files are left out and
    hard links count once, as fdupes does by default.
    """
    by_size: dict[int, list[str]] = {}
    seen: set[tuple[int, int]] = set()
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            by_size.setdefault(st.st_size, []).append(path)
    groups = wasted = hashed = 0
    for size, paths in by_size.items():
        if len(paths) < 2:
            continue
        by_digest: dict[bytes, int] = {}
        for path in paths:
            with open(path, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").digest()
            hashed += 1
            by_digest[digest] = by_digest.get(digest, 0) + 1
        for count in by_digest.values():
            if count > 1:
                groups += 1
                wasted += size * (count - 1)
    return groups, wasted, hashed


def _installed_tool(root: Path) -> tuple[str, list[str]] | None:
    for tool, argv in (
        ("jdupes", ["jdupes", "-r", "-q", str(root)]),
        ("fdupes", ["fdupes", "-r", "-q", str(root)]),
        ("rdfind", ["rdfind", "-dryrun", "true", "-outputname", os.devnull, str(root)]),
    ):
        if shutil.which(tool):
            return tool, argv
    return None


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(f"contenders disagree: {what}")


class _Rounds:
    """Seconds per contender, over rounds that run every contender once each, in turn.

    Interleaving spreads a shared machine's noise over all contenders alike, where running
    one contender's repetitions back to back would hand it one quiet (or busy) stretch.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def time(self, key: str, function: Callable[[], T]) -> T:
        """Run ``function`` once, adding its seconds to ``key``'s."""
        started = time.perf_counter()
        result = function()
        self.seconds.setdefault(key, []).append(time.perf_counter() - started)
        return result

    def row(self, key: str, files: int, *, name: str, **extra: object) -> dict[str, object]:
        """The median of ``key``'s runs, reported under ``name``."""
        return _row(name, self.seconds[key], files, **extra)


def default_parent() -> Path | None:
    """``/dev/shm`` when it is a writable directory (see the module docstring), else ``None``."""
    shm = Path("/dev/shm")  # noqa: S108 (a private temporary directory is made inside)
    return shm if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def measure(
    *, files: int, runs: int, seed: int, duplicate_share: float, parent: Path | None
) -> dict[str, object]:
    """Generate the tree, time every contender on it, remove it; the results as JSON."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sutazai-bench-storage-", dir=parent) as tmp:
        tree = generate(Path(tmp) / "tree", files, seed=seed, duplicate_share=duplicate_share)
        settings = _settings_for(tree.root)
        policy = PathPolicy(settings, state_dir=Path(tmp) / "state", logs_dir=Path(tmp) / "logs")
        limits = pb.ScanLimits(max_files=files + 1, max_duration=Duration(seconds=600))
        cancel = threading.Event()
        root = str(tree.root)
        tool = _installed_tool(tree.root)

        def ours_analyze() -> pb.AnalyzeStorageResponse:
            return analyze(
                pb.AnalyzeStorageRequest(path=root, limits=limits),
                policy=policy,
                settings=settings,
                cancel=cancel,
                progress=None,
            )

        def ours_duplicates(cache: HashCache) -> pb.FindDuplicatesResponse:
            return find_duplicates(
                pb.FindDuplicatesRequest(path=root, limits=limits, max_groups=1000),
                policy=policy,
                settings=settings,
                cache=cache,
                cancel=cancel,
                progress=None,
            )

        expected_groups = (tree.duplicate_groups, tree.wasted_bytes)
        rounds = _Rounds()
        for _ in range(runs):
            analysis = rounds.time("analyze", ours_analyze)
            _check(not analysis.scan.truncated, "analyze stopped at a limit")
            _check(
                (analysis.total_files, analysis.total_bytes) == (tree.files, tree.bytes),
                "analyze counted other files or bytes",
            )
            du_out = rounds.time("du", lambda: _command(["du", "-sb", root]))
            find_out = rounds.time(
                "find", lambda: _command(["find", root, "-type", "f", "-printf", "%s\\n"])
            )
            sizes = [int(line) for line in find_out.split()]
            _check((len(sizes), sum(sizes)) == (tree.files, tree.bytes), "find")
            walked = rounds.time("walk", lambda: _python_walk(tree.root))
            _check(walked == (tree.files, tree.bytes), "os.walk")
            # Each round's cold search fills the cache its warm search then uses.
            cache = HashCache(files)
            cold = rounds.time("cold", functools.partial(ours_duplicates, cache))
            warm = rounds.time("warm", functools.partial(ours_duplicates, cache))
            for name, found in (("cold", cold), ("warm", warm)):
                _check(not found.scan.truncated, f"find_duplicates ({name}) stopped at a limit")
                _check(
                    (found.total_groups, found.total_wasted_bytes) == expected_groups,
                    f"find_duplicates ({name}) found other groups",
                )
            baseline = rounds.time("baseline", lambda: fdupes_style(tree.root))
            _check(baseline[:2] == expected_groups, "the fdupes-style baseline found other groups")
            if tool is not None:
                rounds.time(tool[0], lambda: _command(tool[1]))
        hashed_bytes = _hashed_bytes(tree.root)
        duplicates = [
            rounds.row(
                "cold",
                files,
                name="sutazai find_duplicates, cold cache",
                files_hashed=cold.files_hashed,
                hashed_mib_per_second=round(
                    hashed_bytes / 2**20 / statistics.median(rounds.seconds["cold"])
                ),
            ),
            rounds.row(
                "warm",
                files,
                name="sutazai find_duplicates, warm cache",
                files_hashed=warm.files_hashed,
                cache_hits=warm.cache_hits,
            ),
            rounds.row(
                "baseline",
                files,
                name="fdupes-style baseline (Python: size groups, then whole-file SHA-256)",
                files_hashed=baseline[2],
            ),
        ]
        if tool is not None:
            duplicates.append(rounds.row(tool[0], files, name=tool[0]))
        return {
            "benchmark": "hardware-storage",
            "tree": {
                "files": tree.files,
                "directories": tree.directories,
                "bytes": tree.bytes,
                "duplicate_files": tree.duplicate_files,
                "duplicate_groups": tree.duplicate_groups,
                "wasted_bytes": tree.wasted_bytes,
                "candidate_bytes": hashed_bytes,
                "seed": seed,
                "file_system": disk_of(tree.root).fstype,
                "generate_seconds": tree.seconds,
            },
            "runs": runs,
            "analysis": [
                rounds.row("analyze", files, name="sutazai analyze"),
                rounds.row("du", files, name="du -sb", bytes=int(du_out.split()[0])),
                rounds.row("find", files, name="find -type f -printf '%s\\n'"),
                rounds.row("walk", files, name="python os.walk + lstat"),
            ],
            "duplicates": duplicates,
            "duplicate_tools_installed": tool[0] if tool is not None else None,
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }


def _settings_for(root: Path) -> HardwareSettings:
    """Settings allowing ``root``: the default protected paths, less those holding it.

    ``/dev`` is protected by default, and ``/dev/shm`` is where the tree goes by default.
    """
    defaults = HardwareSettings().protected_paths
    kept = [p for p in defaults if p != root and p not in root.resolve().parents]
    return HardwareSettings(allowed_roots=[root], protected_paths=kept)


def _hashed_bytes(root: Path) -> int:
    """Bytes in files that share their size with another (what a size-first search reads)."""
    by_size: dict[int, int] = {}
    for directory, _, names in os.walk(root):
        for name in names:
            size = os.lstat(os.path.join(directory, name)).st_size
            if size:
                by_size[size] = by_size.get(size, 0) + 1
    return sum(size * n for size, n in by_size.items() if n > 1)
