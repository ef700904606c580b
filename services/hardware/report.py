"""GetStorageReport: every allowed root in one call, each walked once.

One walk per root feeds the analysis, the duplicate candidates and the largest files together
(the original walked each path once per question). Each root gets the configured default
limits of its own; the duplicates found share that root's time budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from google.protobuf.timestamp_pb2 import Timestamp

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.settings import HardwareSettings
from sutazai.services.hardware.analysis import Tally
from sutazai.services.hardware.duplicates import Candidates, HashCache, hash_candidates
from sutazai.services.hardware.errors import InvalidPathError
from sutazai.services.hardware.large_files import Largest
from sutazai.services.hardware.paths import PathPolicy
from sutazai.services.hardware.walk import (
    TRUNCATED_BY_DURATION,
    Progress,
    limits_from,
    shown,
    walk,
)

TOP_DUPLICATES = 5
LARGEST_FILES = 10


def disk_of(path: Path) -> pb.DiskStatus:
    """The file system holding ``path``: its mount, device, type and usage (no I/O rates)."""
    usage = psutil.disk_usage(str(path))
    holding = [
        partition
        for partition in psutil.disk_partitions(all=True)
        if Path(partition.mountpoint) == path or Path(partition.mountpoint) in path.parents
    ]
    # The deepest mount holding the path is the one it lives on.
    mount = max(holding, key=lambda p: len(p.mountpoint), default=None)
    return pb.DiskStatus(
        mountpoint=mount.mountpoint if mount is not None else shown(path),
        device=mount.device if mount is not None else "",
        fstype=mount.fstype if mount is not None else "",
        total_bytes=usage.total,
        used_bytes=usage.used,
        free_bytes=usage.free,
        percent=usage.percent,
    )


def root_report(
    root: Path,
    *,
    policy: PathPolicy,
    settings: HardwareSettings,
    cache: HashCache,
    cancel: threading.Event,
    progress: Progress | None,
    clock: Callable[[], int] = time.time_ns,
) -> pb.RootReport:
    """One root: its disk, its analysis, its 5 largest duplicate groups and 10 largest files."""
    limits = limits_from(None, settings)
    tally = Tally(now_ns=clock())
    candidates = Candidates(1)
    largest = Largest(min_size=1, keep=LARGEST_FILES)
    with walk(root, limits, cancel=cancel, progress=progress, policy=policy) as scan:
        for info in scan:
            tally.add(info)
            candidates.add(info)
            largest.add(info)
    groups, _, _, out_of_time = hash_candidates(
        candidates, cache=cache, cancel=cancel, progress=progress, deadline=scan.deadline
    )
    summary = scan.summary()
    if out_of_time and not summary.truncated:
        summary.truncated = True
        summary.truncated_by = TRUNCATED_BY_DURATION
    return pb.RootReport(
        root=shown(root),
        disk=disk_of(root),
        analysis=tally.response(summary),
        top_duplicates=[group.message() for group in groups[:TOP_DUPLICATES]],
        largest_files=[info.entry() for info in largest.largest()],
    )


class _Prefixed:
    """Progress of one root, told as part of the whole report's."""

    def __init__(self, progress: Progress | None, prefix: str) -> None:
        self._progress = progress
        self._prefix = prefix

    def __call__(self, files_done: int, message: str) -> None:
        if self._progress is not None:
            self._progress(files_done, f"{self._prefix}: {message}")


def storage_report(
    *,
    policy: PathPolicy,
    settings: HardwareSettings,
    cache: HashCache,
    cancel: threading.Event,
    progress: Progress | None,
    clock: Callable[[], int] = time.time_ns,
) -> pb.GetStorageReportResponse:
    """A report of every allowed root that exists, in the policy's order.

    A root that vanished since the service started is left out. Raises
    :class:`~sutazai.services.hardware.errors.Cancelled`.
    """
    generated = Timestamp()
    generated.FromNanoseconds(clock())
    reports = []
    for index, root in enumerate(policy.roots):
        if not root.is_dir():
            continue
        try:
            reports.append(
                root_report(
                    root,
                    policy=policy,
                    settings=settings,
                    cache=cache,
                    cancel=cancel,
                    progress=_Prefixed(progress, f"root {index + 1} of {len(policy.roots)}"),
                    clock=clock,
                )
            )
        except InvalidPathError:
            continue  # replaced by something that is not a directory meanwhile
    return pb.GetStorageReportResponse(generated_at=generated, roots=reports)
