"""FindDuplicates: files of identical content, found cheaply and remembered.

Files are grouped by size first (a file of a unique size has no duplicate and is never read),
hard links to one inode count once (they share their storage: removing one frees nothing),
then only same-size candidates are hashed: SHA-256 over the whole content, read in chunks
through a descriptor opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked (``fstat``) to be
the very inode the walk saw, so a file swapped for a symlink, a FIFO or another file after the
walk is not read.

Digests are remembered in a :class:`HashCache` keyed by device, inode, size, modification
time and inode change time (the last one because anyone who can write a file can put its
modification time back, but nobody can set its change time), so a second search over an
unchanged tree reads nothing.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.duration_pb2 import Duration

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.settings import HardwareSettings
from sutazai.services.hardware.errors import Cancelled, InvalidArgumentError
from sutazai.services.hardware.paths import PathPolicy
from sutazai.services.hardware.walk import (
    TRUNCATED_BY_DURATION,
    FileInfo,
    Progress,
    WalkLimits,
    limits_from,
    walk,
)

CHUNK_BYTES = 1024 * 1024
"""Bytes read (and hashed, with the GIL released) at a time."""
DEFAULT_MAX_GROUPS = 100
MAX_GROUPS = 1000
MAX_FILES_PER_GROUP = 1000
"""Files listed per group in a response (a group's waste counts them all): a tree of many
identical files must not make a response larger than a gRPC message may be."""
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_PROGRESS_SECONDS = 0.5

CacheKey = tuple[int, int, int, int, int]
"""Device, inode, size, modification time and change time (ns) of a file."""


def cache_key(info: FileInfo) -> CacheKey:
    """The key under which a file's digest is remembered."""
    return (info.dev, info.ino, info.size, info.mtime_ns, info.ctime_ns)


class HashCache:
    """Content digests by :data:`CacheKey`, thread-safe.

    At most ``max_entries`` are kept, the least recently used going first; 0 keeps none.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._digests: OrderedDict[CacheKey, bytes] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: HardwareSettings) -> HashCache:
        """A cache of ``settings.hash_cache_entries`` entries."""
        return cls(settings.hash_cache_entries)

    def get(self, key: CacheKey) -> bytes | None:
        """The remembered digest, or ``None``."""
        with self._lock:
            digest = self._digests.get(key)
            if digest is not None:
                self._digests.move_to_end(key)
            return digest

    def put(self, key: CacheKey, digest: bytes) -> None:
        """Remember a digest, forgetting the least recently used beyond the bound."""
        if self.max_entries <= 0:
            return
        with self._lock:
            self._digests[key] = digest
            self._digests.move_to_end(key)
            while len(self._digests) > self.max_entries:
                self._digests.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._digests)


def hash_file(info: FileInfo, *, cancel: threading.Event) -> bytes | None:
    """SHA-256 of a walked file, or ``None`` when it is no longer the file the walk saw.

    ``None`` covers gone, unreadable, swapped (for a symlink, another inode or a special
    file) and changed while being read. Raises :class:`Cancelled` between chunks.
    """
    try:
        fd = os.open(info.path, _FILE_FLAGS)
    except OSError:
        return None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode) or _key_of(before) != cache_key(info):
            return None
        digest = hashlib.sha256()
        remaining = before.st_size
        while remaining > 0:
            chunk = os.read(fd, min(CHUNK_BYTES, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
            if remaining and cancel.is_set():
                raise Cancelled("the duplicate search was cancelled")
        if _key_of(os.fstat(fd)) != cache_key(info):
            return None  # written to while it was read: the digest is of neither version
        return digest.digest()
    except OSError:
        return None
    finally:
        os.close(fd)


def _key_of(st: os.stat_result) -> CacheKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Files of one content, newest modification first (the one deduplication keeps)."""

    sha256: str
    size: int
    files: tuple[FileInfo, ...]

    @property
    def wasted_bytes(self) -> int:
        """Bytes the copies beyond the first take."""
        return self.size * (len(self.files) - 1)

    def message(self, max_files: int = MAX_FILES_PER_GROUP) -> pb.DuplicateGroup:
        """The group as the API reports it, listing at most ``max_files`` files."""
        return pb.DuplicateGroup(
            sha256=self.sha256,
            size_bytes=self.size,
            files=[info.entry() for info in self.files[:max_files]],
            wasted_bytes=self.wasted_bytes,
        )


class Candidates:
    """Files that might have a duplicate, by size; fed by a walk, one file at a time."""

    def __init__(self, min_size: int) -> None:
        # Empty files are never grouped: they waste no bytes and all "match".
        self.min_size = max(min_size, 1)
        self._by_size: dict[int, list[FileInfo]] = {}

    def add(self, info: FileInfo) -> None:
        """Consider one file."""
        if info.size >= self.min_size:
            self._by_size.setdefault(info.size, []).append(info)

    def same_size(self) -> list[list[FileInfo]]:
        """Groups of two or more distinct inodes of one size, largest size first.

        A file with several hard links counts once, under its first path in sorted order.
        """
        found = []
        for size in sorted(self._by_size, reverse=True):
            files = self._by_size[size]
            if len(files) < 2:
                continue
            inodes: dict[tuple[int, int], FileInfo] = {}
            for info in sorted(files, key=lambda i: i.path):
                inodes.setdefault((info.dev, info.ino), info)
            if len(inodes) > 1:
                found.append(list(inodes.values()))
        return found


@dataclass(slots=True)
class DuplicateSearch:
    """Every duplicate group under a directory, largest waste first, and what it cost."""

    scan: pb.ScanSummary
    groups: list[DuplicateGroup]
    files_hashed: int
    cache_hits: int

    def response(self, max_groups: int) -> pb.FindDuplicatesResponse:
        """The first ``max_groups`` groups as the API reports them, with the totals of all."""
        return pb.FindDuplicatesResponse(
            scan=self.scan,
            groups=[group.message() for group in self.groups[:max_groups]],
            total_groups=len(self.groups),
            total_wasted_bytes=sum(group.wasted_bytes for group in self.groups),
            files_hashed=self.files_hashed,
            cache_hits=self.cache_hits,
        )


def hash_candidates(
    candidates: Candidates,
    *,
    cache: HashCache,
    cancel: threading.Event,
    progress: Progress | None,
    deadline: float,
) -> tuple[list[DuplicateGroup], int, int, bool]:
    """Hash the same-size candidates (cache first) and group them by digest.

    Returns the groups (largest waste first), files hashed, cache hits, and whether
    ``deadline`` (``time.monotonic``) passed before every candidate was looked at.
    """
    same_size = candidates.same_size()
    total = sum(len(files) for files in same_size)
    groups: list[DuplicateGroup] = []
    hashed = hits = done = 0
    last_report = time.monotonic()
    out_of_time = False
    for files in same_size:
        by_digest: dict[bytes, list[FileInfo]] = {}
        for info in files:
            if cancel.is_set():
                raise Cancelled("the duplicate search was cancelled")
            now = time.monotonic()
            if now >= deadline:
                out_of_time = True
                break
            if progress is not None and now - last_report >= _PROGRESS_SECONDS:
                last_report = now
                progress(done, f"hashing: {done} of {total} candidate files")
            done += 1
            key = cache_key(info)
            digest = cache.get(key)
            if digest is not None:
                hits += 1
            else:
                digest = hash_file(info, cancel=cancel)
                if digest is None:
                    continue
                hashed += 1
                cache.put(key, digest)
            by_digest.setdefault(digest, []).append(info)
        for digest, same in by_digest.items():
            if len(same) > 1:
                newest_first = sorted(same, key=lambda i: (-i.mtime_ns, i.path))
                groups.append(DuplicateGroup(digest.hex(), same[0].size, tuple(newest_first)))
        if out_of_time:
            break
    groups.sort(key=lambda g: (-g.wasted_bytes, -g.size, g.sha256))
    if progress is not None:
        progress(done, f"hashed {hashed} files, {hits} from the cache")
    return groups, hashed, hits, out_of_time


def search_duplicates(
    root: Path,
    limits: WalkLimits,
    *,
    min_size: int,
    policy: PathPolicy,
    cache: HashCache,
    cancel: threading.Event,
    progress: Progress | None,
) -> DuplicateSearch:
    """Every duplicate group under ``root`` (resolved by the policy), largest waste first.

    The walk and the hashing share ``limits.max_seconds``: when it runs out the search stops
    where it is and the summary says ``truncated_by="max_duration"``.
    """
    started = time.monotonic()
    candidates = Candidates(min_size)
    with walk(root, limits, cancel=cancel, progress=progress, policy=policy) as scan:
        for info in scan:
            candidates.add(info)
    groups, hashed, hits, out_of_time = hash_candidates(
        candidates, cache=cache, cancel=cancel, progress=progress, deadline=scan.deadline
    )
    summary = scan.summary()
    if out_of_time and not summary.truncated:
        summary.truncated = True
        summary.truncated_by = TRUNCATED_BY_DURATION
    elapsed = Duration()
    elapsed.FromNanoseconds(int((time.monotonic() - started) * 1e9))
    summary.elapsed.CopyFrom(elapsed)
    return DuplicateSearch(summary, groups, hashed, hits)


def max_groups_of(asked: int) -> int:
    """A request's ``max_groups``: 0 means the default; above the maximum is invalid."""
    if asked > MAX_GROUPS:
        raise InvalidArgumentError("max_groups", f"at most {MAX_GROUPS}")
    return asked or DEFAULT_MAX_GROUPS


def find_duplicates(
    req: pb.FindDuplicatesRequest,
    *,
    policy: PathPolicy,
    settings: HardwareSettings,
    cache: HashCache,
    cancel: threading.Event,
    progress: Progress | None,
) -> pb.FindDuplicatesResponse:
    """The duplicate groups under ``req.path``, largest waste first.

    Raises :class:`InvalidArgumentError` (malformed path, limits or ``max_groups``),
    :class:`~sutazai.services.hardware.errors.PathRefusedError` and :class:`Cancelled`.
    """
    root = policy.resolve_dir(req.path)
    limits = limits_from(req.limits if req.HasField("limits") else None, settings)
    max_groups = max_groups_of(req.max_groups)
    search = search_duplicates(
        root,
        limits,
        min_size=req.min_size_bytes,
        policy=policy,
        cache=cache,
        cancel=cancel,
        progress=progress,
    )
    return search.response(max_groups)
