"""AnalyzeStorage: what a directory is made of, by extension, size and age.

The buckets are the original optimizer's (ORIGINAL_SYSTEM.md §3.1), with exact binary bounds:
sizes below 1 KiB, below 1 MiB, below 100 MiB and above; ages (by modification time) below 7,
30 and 365 days and above. A file modified in the future counts as new.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.settings import HardwareSettings
from sutazai.services.hardware.paths import PathPolicy
from sutazai.services.hardware.walk import FileInfo, Progress, limits_from, shown, walk

KIB = 1024
MIB = 1024 * KIB
DAY_NS = 86_400 * 1_000_000_000

SIZE_BUCKETS: tuple[tuple[str, int], ...] = (
    ("<1KiB", KIB),
    ("1KiB-1MiB", MIB),
    ("1MiB-100MiB", 100 * MIB),
    (">=100MiB", 2**64),
)
"""Label and exclusive upper bound in bytes, in the order the response lists them."""
AGE_BUCKETS: tuple[tuple[str, int], ...] = (
    ("<7d", 7 * DAY_NS),
    ("7d-30d", 30 * DAY_NS),
    ("30d-365d", 365 * DAY_NS),
    (">=365d", 2**80),
)
"""Label and exclusive upper bound of the age in nanoseconds."""

MAX_EXTENSIONS = 200
"""Extensions listed at most (the largest by bytes): a tree of random names could otherwise
make a response larger than a gRPC message may be."""
MAX_EXTENSION_CHARS = 32
"""A longer "extension" is a name with a dot in it, not a file type: counted under ``""``."""


@dataclass(slots=True)
class Tally:
    """Running totals of one directory's files; fed one :class:`FileInfo` at a time."""

    now_ns: int
    files: int = 0
    bytes: int = 0
    extensions: dict[str, list[int]] = field(default_factory=dict)
    sizes: list[list[int]] = field(default_factory=lambda: [[0, 0] for _ in SIZE_BUCKETS])
    ages: list[list[int]] = field(default_factory=lambda: [[0, 0] for _ in AGE_BUCKETS])

    def add(self, info: FileInfo) -> None:
        """Count one file."""
        size = info.size
        self.files += 1
        self.bytes += size
        extension = extension_of(info)
        per_extension = self.extensions.get(extension)
        if per_extension is None:
            self.extensions[extension] = [1, size]
        else:
            per_extension[0] += 1
            per_extension[1] += size
        for bucket, (_, bound) in zip(self.sizes, SIZE_BUCKETS, strict=True):
            if size < bound:
                bucket[0] += 1
                bucket[1] += size
                break
        age = self.now_ns - info.mtime_ns
        for bucket, (_, bound) in zip(self.ages, AGE_BUCKETS, strict=True):
            if age < bound:
                bucket[0] += 1
                bucket[1] += size
                break

    def response(self, scan: pb.ScanSummary) -> pb.AnalyzeStorageResponse:
        """The totals as the API reports them."""
        ranked = sorted(self.extensions.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))
        return pb.AnalyzeStorageResponse(
            scan=scan,
            total_files=self.files,
            total_bytes=self.bytes,
            by_extension=[
                pb.ExtensionUsage(extension=shown(ext), files=n, bytes=b)
                for ext, (n, b) in ranked[:MAX_EXTENSIONS]
            ],
            by_size=[
                pb.Bucket(label=label, files=n, bytes=b)
                for (label, _), (n, b) in zip(SIZE_BUCKETS, self.sizes, strict=True)
            ],
            by_age=[
                pb.Bucket(label=label, files=n, bytes=b)
                for (label, _), (n, b) in zip(AGE_BUCKETS, self.ages, strict=True)
            ],
        )


def extension_of(info: FileInfo) -> str:
    """Lower-case with the dot (``".log"``); ``""`` without one (``".bashrc"`` has none)."""
    suffix = info.path.suffix
    return suffix.lower() if len(suffix) <= MAX_EXTENSION_CHARS else ""


def analyze(
    req: pb.AnalyzeStorageRequest,
    *,
    policy: PathPolicy,
    settings: HardwareSettings,
    cancel: threading.Event,
    progress: Progress | None,
    clock: Callable[[], int] = time.time_ns,
) -> pb.AnalyzeStorageResponse:
    """Totals, extensions and buckets of the directory ``req.path`` names.

    Raises :class:`~sutazai.services.hardware.errors.InvalidArgumentError` (malformed path or
    limits), :class:`~sutazai.services.hardware.errors.PathRefusedError` and
    :class:`~sutazai.services.hardware.errors.Cancelled`. ``clock`` (nanoseconds since the
    epoch) dates the ages.
    """
    root = policy.resolve_dir(req.path)
    limits = limits_from(req.limits if req.HasField("limits") else None, settings)
    tally = Tally(now_ns=clock())
    with walk(root, limits, cancel=cancel, progress=progress, policy=policy) as scan:
        for info in scan:
            tally.add(info)
    return tally.response(scan.summary())
