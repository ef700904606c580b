"""FindLargeFiles: the largest files at or above a size, kept in a bounded heap while walking."""

from __future__ import annotations

import heapq
import threading

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.settings import HardwareSettings
from sutazai.services.hardware.errors import InvalidArgumentError
from sutazai.services.hardware.paths import PathPolicy
from sutazai.services.hardware.walk import FileInfo, Progress, limits_from, walk

DEFAULT_MIN_SIZE = 100 * 1024 * 1024
DEFAULT_MAX_FILES = 50
MAX_FILES = 1000


class Largest:
    """The ``keep`` largest files of at least ``min_size`` bytes, and the totals of all of them.

    Ties in size go to the path that sorts first, so the answer does not depend on the order
    the file system lists entries in.
    """

    def __init__(self, *, min_size: int, keep: int) -> None:
        self.min_size = min_size
        self.keep = keep
        self.files = 0
        self.bytes = 0
        # A min-heap on (size, reversed path order): its top is the first to give way.
        self._heap: list[tuple[int, _Reversed, FileInfo]] = []

    def add(self, info: FileInfo) -> None:
        """Consider one file."""
        if info.size < self.min_size:
            return
        self.files += 1
        self.bytes += info.size
        item = (info.size, _Reversed(str(info.path)), info)
        if len(self._heap) < self.keep:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def largest(self) -> list[FileInfo]:
        """The files kept, largest first."""
        return [info for _, _, info in sorted(self._heap, key=lambda x: x[:2], reverse=True)]


class _Reversed:
    """A string ordered backwards: in the min-heap, the later path is the smaller one."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __lt__(self, other: _Reversed) -> bool:
        return self.text > other.text

    def __gt__(self, other: _Reversed) -> bool:
        return self.text < other.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.text == other.text

    def __hash__(self) -> int:
        return hash(self.text)


def find_large_files(
    req: pb.FindLargeFilesRequest,
    *,
    policy: PathPolicy,
    settings: HardwareSettings,
    cancel: threading.Event,
    progress: Progress | None,
) -> pb.FindLargeFilesResponse:
    """The largest files at or above a size under ``req.path``, largest first.

    ``req.min_size_bytes`` defaults to 100 MiB; at most ``req.max_files`` files are listed
    (default 50, at most 1000), the totals counting all.

    Raises :class:`InvalidArgumentError`,
    :class:`~sutazai.services.hardware.errors.PathRefusedError` and
    :class:`~sutazai.services.hardware.errors.Cancelled`.
    """
    root = policy.resolve_dir(req.path)
    limits = limits_from(req.limits if req.HasField("limits") else None, settings)
    if req.max_files > MAX_FILES:
        raise InvalidArgumentError("max_files", f"at most {MAX_FILES}")
    largest = Largest(
        min_size=req.min_size_bytes or DEFAULT_MIN_SIZE, keep=req.max_files or DEFAULT_MAX_FILES
    )
    with walk(root, limits, cancel=cancel, progress=progress, policy=policy) as scan:
        for info in scan:
            largest.add(info)
    return pb.FindLargeFilesResponse(
        scan=scan.summary(),
        files=[info.entry() for info in largest.largest()],
        total_files=largest.files,
        total_bytes=largest.bytes,
    )
