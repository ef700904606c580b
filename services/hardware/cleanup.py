"""The clean-ups: CleanFiles, Deduplicate, CompressLogs and RotateLogs.

Each one first builds its whole plan (a :class:`pb.ChangeReport` with every
:class:`pb.PlannedChange`), from a bounded walk of a directory the
:class:`~sutazai.services.hardware.paths.PathPolicy` allows. A dry run (the default: a
request must say ``"dry_run": false``) returns the plan and changes nothing at all. A real run
then applies the changes one by one: each file is checked again right before it changes (still
the file that was planned, still a regular file under a root), and a change that fails gets
its error while the others go on; nothing is ever deleted, only moved into the
:class:`~sutazai.services.hardware.quarantine.Quarantine`.

* **clean_files**: regular files modified more than ``older_than_days`` ago (default 3) whose
  name matches one of ``patterns`` (``fnmatch``, case-sensitive; none means every file) go to
  the quarantine.
* **deduplicate**: in each group of identical files (:mod:`.duplicates`: same SHA-256, hard
  links counted once) the newest is kept and the others go to the quarantine, but only while
  the kept file is still the one hashed (device, inode, size, mtime and ctime unchanged); a
  file whose content changed after all is put back at once.
* **compress_logs**: logs modified more than ``older_than_days`` ago (default 7) are gzipped
  beside themselves (``name.gz``, with the log's mode and modification time). Logs are
  ``*.log`` and rotated ``*.log.N``, and ``.txt .csv .json .jsonl .xml`` files whose name
  has "log" or "logs" as a word of its own (``gc-log.txt``, ``audit_logs.json``): a data file
  that merely ends in ``.json`` is not a log. The ``.gz`` is kept only when smaller; it is
  decompressed and compared with the log before the log goes to the quarantine. A dry run
  compresses into nothing to report the exact bytes saved.
* **rotate_logs**: a ``name.log`` of at least ``min_size_bytes`` (default 10 MiB) becomes
  ``name.log.1`` after the older generations shift up (``.1`` to ``.2``, ``.1.gz`` to
  ``.2.gz``, ...); generations that would pass ``keep`` (default 5) go to the quarantine first,
  and a new empty ``name.log`` with the old one's mode (and owner, as root) takes its place.
  The writer keeps writing to ``name.log.1`` until it reopens its log (no copy-and-truncate,
  which loses lines). One log's steps stop at its first failure.

Renames never replace anything (``link`` then ``unlink``), so a name that appears meanwhile is
an error, not a loss. A report holds at most :data:`MAX_CHANGES` changes (and about
:data:`MAX_REPORT_BYTES`): a larger clean-up stops planning there, says
``truncated_by="max_changes"``, and is finished by calling again. Cancelling (the token)
stops at once; changes already made stay made (their files are in the quarantine) and are
logged.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import gzip
import hashlib
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.settings import HardwareSettings
from sutazai.services.hardware.duplicates import HashCache, search_duplicates
from sutazai.services.hardware.errors import (
    Cancelled,
    FileChangedError,
    HardwareError,
    InvalidArgumentError,
    PathRefusedError,
)
from sutazai.services.hardware.paths import PathPolicy
from sutazai.services.hardware.quarantine import (
    CHUNK,
    Quarantine,
    open_regular,
    os_reason,
    same_file,
    write_all,
)
from sutazai.services.hardware.walk import FileInfo, Progress, limits_from, shown, walk

log = structlog.get_logger(__name__)

DAY_NS = 86_400 * 10**9
MAX_DAYS = 3650
DEFAULT_CLEAN_DAYS = 3
DEFAULT_COMPRESS_DAYS = 7
MAX_PATTERNS = 32
MAX_PATTERN_CHARS = 255
DEFAULT_ROTATE_BYTES = 10 * 1024 * 1024
DEFAULT_KEEP = 5
MAX_KEEP = 50
GZIP_LEVEL = 6
"""gzip's own default: most of level 9's saving for a fraction of its time."""

MAX_CHANGES = 5000
MAX_REPORT_BYTES = 2 * 1024 * 1024
"""Bounds of one report (the mesh's messages are at most 4 MiB)."""
TRUNCATED_BY_CHANGES = "max_changes"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PROGRESS_SECONDS = 0.5
_LOG_NAME = re.compile(r"\.log(\.[1-9][0-9]{0,3})?$", re.IGNORECASE)
_LOG_LIKE = frozenset({".txt", ".csv", ".json", ".jsonl", ".xml"})
_LOG_WORD = re.compile(r"(^|[._-])logs?([._-]|$)", re.IGNORECASE)
_NOT_DONE = "not done: an earlier change to the same log failed"


# ---------------------------------------------------------------------------------------------
# The plan


Apply = Callable[[pb.PlannedChange], None]
"""Makes one change, filling in its ``quarantine_id`` and ``bytes``; raises on failure."""


@dataclass(slots=True)
class _Step:
    change: pb.PlannedChange
    apply: Apply | None
    """``None`` for a change already known to fail (its ``error`` is set)."""
    group: int
    """Steps of one group (one log's rotation) stop at the first that fails."""


@dataclass(slots=True)
class _Plan:
    steps: list[_Step] = field(default_factory=list)
    full: bool = False
    """More changes were found than one report holds."""
    _bytes: int = 0
    _groups: int = 0

    def add(self, items: Sequence[tuple[pb.PlannedChange, Apply | None]]) -> bool:
        """Add one group of changes, all or none; false (and :attr:`full`) when they do not fit.

        Room is kept for what applying adds (a quarantine id).
        """
        size = sum(change.ByteSize() + 64 for change, _ in items)
        if len(self.steps) + len(items) > MAX_CHANGES or self._bytes + size > MAX_REPORT_BYTES:
            self.full = True
            return False
        self._bytes += size
        self._groups += 1
        self.steps.extend(_Step(change, apply, self._groups) for change, apply in items)
        return True


_Request = (
    pb.CleanFilesRequest | pb.DeduplicateRequest | pb.CompressLogsRequest | pb.RotateLogsRequest
)


def _dry_run(req: _Request) -> bool:
    # proto3 ``optional``: unset means a dry run; only an explicit false changes anything.
    return req.dry_run if req.HasField("dry_run") else True


def _days(value: int, default: int, field: str) -> int:
    if value > MAX_DAYS:
        raise InvalidArgumentError(field, f"at most {MAX_DAYS}")
    return value or default


def _finish_scan(summary: pb.ScanSummary, plan: _Plan) -> pb.ScanSummary:
    if plan.full and not summary.truncated:
        summary.truncated = True
        summary.truncated_by = TRUNCATED_BY_CHANGES
    return summary


def _apply(
    plan: _Plan,
    *,
    operation: str,
    actor: str,
    cancel: threading.Event,
    progress: Progress | None,
) -> None:
    """Make every planned change in order; each failure becomes that change's error."""
    failed_groups: set[int] = set()
    last_report = time.monotonic()
    total = len(plan.steps)
    for done, step in enumerate(plan.steps):
        if cancel.is_set():
            _log_cancel(operation, actor, plan, done)
            raise Cancelled(f"{operation} was cancelled after {done} of {total} changes")
        if step.apply is None or step.change.error:
            failed_groups.add(step.group)
            continue
        if step.group in failed_groups:
            step.change.error = _NOT_DONE
            continue
        try:
            step.apply(step.change)
        except Cancelled:
            _log_cancel(operation, actor, plan, done)
            raise
        except (HardwareError, OSError) as exc:
            step.change.error = _reason(exc)
            failed_groups.add(step.group)
        now = time.monotonic()
        if progress is not None and now - last_report >= _PROGRESS_SECONDS:
            last_report = now
            progress(done + 1, f"{operation}: {done + 1} of {total} changes made")
    if progress is not None:
        progress(total, f"{operation}: {total} changes done")


def _log_cancel(operation: str, actor: str, plan: _Plan, done: int) -> None:
    made = sum(1 for s in plan.steps[:done] if s.apply is not None and not s.change.error)
    log.warning(
        "hardware.cleanup.cancelled",
        operation=operation,
        actor=actor,
        made=made,
        planned=len(plan.steps),
        quarantined=[s.change.quarantine_id for s in plan.steps[:done] if s.change.quarantine_id],
    )


def _report(
    plan: _Plan, *, dry_run: bool, scan: pb.ScanSummary, operation: str, actor: str
) -> pb.ChangeReport:
    changes = [step.change for step in plan.steps]
    made = [change for change in changes if not change.error]
    report = pb.ChangeReport(
        dry_run=dry_run,
        scan=scan,
        changes=changes,
        changed=len(made),
        bytes_freed=sum(change.bytes for change in made),
        failed=len(changes) - len(made),
    )
    if not dry_run:
        log.info(
            "hardware.cleanup.applied",
            operation=operation,
            actor=actor,
            changed=report.changed,
            failed=report.failed,
            bytes_freed=report.bytes_freed,
        )
    return report


def _reason(exc: BaseException) -> str:
    """A failure in words safe to report (the change names the file already)."""
    if isinstance(exc, InvalidArgumentError | PathRefusedError):
        return exc.reason
    if isinstance(exc, OSError):
        return os_reason(exc)
    return str(exc)


def _unchanged(path: Path, info: FileInfo) -> os.stat_result:
    """The file's ``lstat`` if it is still the file planned, else :class:`FileChangedError`."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise FileChangedError("the file is gone since it was planned") from None
    if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != (
        info.dev,
        info.ino,
        info.size,
        info.mtime_ns,
    ):
        raise FileChangedError("the file changed since it was planned")
    return st


def _quarantine_step(
    info: FileInfo, quarantine: Quarantine, *, operation: str, actor: str
) -> Apply:
    def apply(change: pb.PlannedChange) -> None:
        _unchanged(info.path, info)
        held = quarantine.put(info.path, operation=operation, actor=actor)
        change.quarantine_id = held.entry_id
        change.bytes = held.size_bytes

    return apply


def _age_days(mtime_ns: int, now_ns: int) -> str:
    return f"{(now_ns - mtime_ns) / DAY_NS:.1f}"


# ---------------------------------------------------------------------------------------------
# CleanFiles


def _patterns(raw: Sequence[str]) -> list[str]:
    if len(raw) > MAX_PATTERNS:
        raise InvalidArgumentError("patterns", f"at most {MAX_PATTERNS}")
    for i, pattern in enumerate(raw):
        where = f"patterns[{i}]"
        if not pattern or len(pattern) > MAX_PATTERN_CHARS:
            raise InvalidArgumentError(where, f"1 to {MAX_PATTERN_CHARS} characters")
        if "/" in pattern or "\x00" in pattern:
            raise InvalidArgumentError(where, "a pattern matches a file name: no '/' or NUL")
    return list(raw)


def clean_files(
    req: pb.CleanFilesRequest,
    *,
    policy: PathPolicy,
    settings: HardwareSettings,
    quarantine: Quarantine,
    actor: str,
    cancel: threading.Event,
    progress: Progress | None,
) -> pb.ChangeReport:
    """Move files older than ``older_than_days`` matching ``patterns`` into the quarantine.

    Raises :class:`InvalidArgumentError` (a malformed field),
    :class:`~sutazai.services.hardware.errors.PathRefusedError` (``path`` not allowed) and
    :class:`Cancelled`; a failure of one file is that change's error.
    """
    root = policy.resolve_dir(req.path)
    days = _days(req.older_than_days, DEFAULT_CLEAN_DAYS, "older_than_days")
    patterns = _patterns(req.patterns)
    limits = limits_from(req.limits if req.HasField("limits") else None, settings)
    dry_run = _dry_run(req)
    now_ns = time.time_ns()
    cutoff = now_ns - days * DAY_NS
    plan = _Plan()
    with walk(root, limits, cancel=cancel, progress=progress, policy=policy) as scan:
        for info in scan:
            if info.mtime_ns >= cutoff:
                continue
            matched = next((p for p in patterns if fnmatch.fnmatchcase(info.path.name, p)), None)
            if patterns and matched is None:
                continue
            reason = f"modified {_age_days(info.mtime_ns, now_ns)} days ago (more than {days})"
            if matched is not None:
                reason += f", name matches {matched!r}"
            change = pb.PlannedChange(
                action="quarantine", target=shown(info.path), bytes=info.size, reason=reason
            )
            step = _quarantine_step(info, quarantine, operation="CleanFiles", actor=actor)
            if not plan.add([(change, step)]):
                break
    summary = _finish_scan(scan.summary(), plan)
    if not dry_run:
        _apply(plan, operation="CleanFiles", actor=actor, cancel=cancel, progress=progress)
    return _report(plan, dry_run=dry_run, scan=summary, operation="CleanFiles", actor=actor)


# ---------------------------------------------------------------------------------------------
# Deduplicate


def deduplicate(
    req: pb.DeduplicateRequest,
    *,
    policy: PathPolicy,
    settings: HardwareSettings,
    cache: HashCache,
    quarantine: Quarantine,
    actor: str,
    cancel: threading.Event,
    progress: Progress | None,
) -> pb.ChangeReport:
    """Keep the newest file of each duplicate group; move the others into the quarantine.

    Groups are taken largest waste first. Raises as :func:`clean_files` does.
    """
    root = policy.resolve_dir(req.path)
    limits = limits_from(req.limits if req.HasField("limits") else None, settings)
    dry_run = _dry_run(req)
    search = search_duplicates(
        root,
        limits,
        min_size=req.min_size_bytes,
        policy=policy,
        cache=cache,
        cancel=cancel,
        progress=progress,
    )
    plan = _Plan()
    for group in search.groups:
        keep, *copies = group.files
        reason = (
            f"same content (SHA-256 {group.sha256[:16]}…) as {shown(keep.path)}, "
            "the newest copy, which is kept"
        )
        items: list[tuple[pb.PlannedChange, Apply | None]] = [
            (
                pb.PlannedChange(
                    action="quarantine", target=shown(copy.path), bytes=group.size, reason=reason
                ),
                _dedupe_step(copy, keep, group.sha256, quarantine, actor),
            )
            for copy in copies
        ]
        if not plan.add(items):
            break
    summary = _finish_scan(search.scan, plan)
    if not dry_run:
        _apply(plan, operation="Deduplicate", actor=actor, cancel=cancel, progress=progress)
    return _report(plan, dry_run=dry_run, scan=summary, operation="Deduplicate", actor=actor)


def _dedupe_step(
    copy: FileInfo, keep: FileInfo, sha256: str, quarantine: Quarantine, actor: str
) -> Apply:
    def apply(change: pb.PlannedChange) -> None:
        # The kept file must still be the one hashed: nobody can set a ctime back, so an
        # unchanged (dev, ino, size, mtime, ctime) means unchanged content.
        for info, which in ((keep, "the kept copy"), (copy, "the file")):
            try:
                st = os.lstat(info.path)
            except FileNotFoundError:
                raise FileChangedError(f"{which} is gone since the scan") from None
            if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) != (
                info.dev,
                info.ino,
                info.size,
                info.mtime_ns,
                info.ctime_ns,
            ):
                raise FileChangedError(f"{which} changed since the scan")
        held = quarantine.put(copy.path, operation="Deduplicate", actor=actor)
        if held.sha256 != sha256:
            # Rewritten between the check and the move: it is no duplicate; put it back.
            [back] = quarantine.restore([held.entry_id])
            if back.restored:
                raise FileChangedError("the file changed during the move; it was put back")
            change.quarantine_id = held.entry_id
            raise FileChangedError(
                f"the file changed during the move and could not be put back ({back.error}); "
                "it is in the quarantine"
            )
        change.quarantine_id = held.entry_id
        change.bytes = held.size_bytes

    return apply


# ---------------------------------------------------------------------------------------------
# CompressLogs


def is_log(name: str) -> bool:
    """Whether CompressLogs treats a file name as a log (see the module docstring)."""
    if _LOG_NAME.search(name):
        return True
    stem, extension = os.path.splitext(name)
    return extension.lower() in _LOG_LIKE and _LOG_WORD.search(stem) is not None


class _Counter:
    """A sink that only counts what is written to it (a dry run's compressed size)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to flush."""


def _gzip_into(
    fd: int, sink: _Counter | _FdWriter, name: str, mtime_ns: int, cancel: threading.Event
) -> str:
    """Gzip a file's content into ``sink``; the hex SHA-256 of what was read."""
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    with gzip.GzipFile(
        filename=name, mode="wb", fileobj=sink, compresslevel=GZIP_LEVEL, mtime=mtime_ns // 10**9
    ) as zipped:
        while chunk := os.read(fd, CHUNK):
            if cancel.is_set():
                raise Cancelled("CompressLogs was cancelled")
            digest.update(chunk)
            zipped.write(chunk)
    return digest.hexdigest()


class _FdWriter:
    """A writable file object over a raw descriptor (not closed with it)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> int:
        write_all(self.fd, data)
        return len(data)

    def flush(self) -> None:
        """Writes go straight to the descriptor."""


def compress_logs(
    req: pb.CompressLogsRequest,
    *,
    policy: PathPolicy,
    settings: HardwareSettings,
    quarantine: Quarantine,
    actor: str,
    cancel: threading.Event,
    progress: Progress | None,
) -> pb.ChangeReport:
    """Gzip logs older than ``older_than_days``, keeping the ``.gz`` only when smaller.

    The log itself goes to the quarantine. Raises as :func:`clean_files` does.
    """
    root = policy.resolve_dir(req.path)
    days = _days(req.older_than_days, DEFAULT_COMPRESS_DAYS, "older_than_days")
    limits = limits_from(req.limits if req.HasField("limits") else None, settings)
    dry_run = _dry_run(req)
    now_ns = time.time_ns()
    cutoff = now_ns - days * DAY_NS
    plan = _Plan()
    with walk(root, limits, cancel=cancel, progress=progress, policy=policy) as scan:
        for info in scan:
            if info.mtime_ns >= cutoff or info.size == 0 or not is_log(info.path.name):
                continue
            gz = info.path.with_name(info.path.name + ".gz")
            change = pb.PlannedChange(
                action="compress",
                target=shown(info.path),
                reason=(
                    f"a log modified {_age_days(info.mtime_ns, now_ns)} days ago "
                    f"(more than {days}): gzipped to {shown(gz.name)}, the log quarantined"
                ),
            )
            step: Apply | None = _compress_step(info, policy, quarantine, actor, cancel)
            if os.path.lexists(gz):
                change.error = f"{shown(gz.name)} already exists"
                step = None
            elif dry_run:
                _size_compressed(info, change, cancel)
            if not plan.add([(change, step)]):
                break
    summary = _finish_scan(scan.summary(), plan)
    if not dry_run:
        _apply(plan, operation="CompressLogs", actor=actor, cancel=cancel, progress=progress)
    return _report(plan, dry_run=dry_run, scan=summary, operation="CompressLogs", actor=actor)


def _not_smaller(compressed: int, size: int) -> str:
    return f"not smaller compressed ({compressed} bytes against {size}): left as it is"


def _size_compressed(info: FileInfo, change: pb.PlannedChange, cancel: threading.Event) -> None:
    """A dry run's exact saving: the log compressed into nothing but a byte count."""
    try:
        fd, st = open_regular(info.path)
    except (OSError, HardwareError) as exc:
        change.error = _reason(exc)
        return
    try:
        counter = _Counter()
        _gzip_into(fd, counter, info.path.name, st.st_mtime_ns, cancel)
    except OSError as exc:
        change.error = _reason(exc)
        return
    finally:
        os.close(fd)
    if counter.size >= st.st_size:
        change.error = _not_smaller(counter.size, st.st_size)
    else:
        change.bytes = st.st_size - counter.size


def _compress_step(
    info: FileInfo,
    policy: PathPolicy,
    quarantine: Quarantine,
    actor: str,
    cancel: threading.Event,
) -> Apply:
    def apply(change: pb.PlannedChange) -> None:
        path = info.path
        policy.check_file(path)
        parent = os.open(path.parent, _DIR_FLAGS)
        try:
            fd, st = open_regular(path)
            try:
                if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != (
                    info.dev,
                    info.ino,
                    info.size,
                    info.mtime_ns,
                ):
                    raise FileChangedError("the file changed since it was planned")
                not_smaller = _compress_locked(path, fd, st, parent, change, cancel)
            finally:
                os.close(fd)
            if not_smaller:
                change.error = not_smaller
                return
            gz_name = path.name + ".gz"
            try:
                held = quarantine.put(path, operation="CompressLogs", actor=actor)
            except BaseException:
                # The log stays where it was, so the .gz made for it goes.
                with contextlib.suppress(OSError):
                    os.unlink(gz_name, dir_fd=parent)
                raise
            change.quarantine_id = held.entry_id
        finally:
            os.close(parent)

    return apply


def _compress_locked(
    path: Path,
    fd: int,
    st: os.stat_result,
    parent: int,
    change: pb.PlannedChange,
    cancel: threading.Event,
) -> str:
    """Write ``name.gz`` beside the log (verified, with its mode and mtime), or raise.

    Returns why the ``.gz`` was not kept (not smaller), or ``""`` when it was.
    """
    # The directory opened must be the log's own: the .gz goes next to the very file.
    here = os.stat(path.name, dir_fd=parent, follow_symlinks=False)
    if (here.st_dev, here.st_ino) != (st.st_dev, st.st_ino):
        raise FileChangedError("the file changed since it was planned")
    gz_name = path.name + ".gz"
    temp = f".sutazai-gz-{uuid.uuid4().hex[:12]}.tmp"
    out = os.open(temp, _TEMP_FLAGS, 0o600, dir_fd=parent)
    try:
        try:
            read_digest = _gzip_into(fd, _FdWriter(out), path.name, st.st_mtime_ns, cancel)
            os.fsync(out)
            compressed = os.fstat(out).st_size
            if compressed >= st.st_size:
                return _not_smaller(compressed, st.st_size)
            if _gunzip_digest(out, cancel) != read_digest or not same_file(os.fstat(fd), st):
                raise FileChangedError("the log changed while it was compressed")
            if os.geteuid() == 0:
                os.fchown(out, st.st_uid, st.st_gid)
            os.fchmod(out, stat.S_IMODE(st.st_mode))
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.fsync(out)
            try:
                os.link(temp, gz_name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
            except FileExistsError:
                raise FileChangedError(f"{shown(gz_name)} appeared meanwhile") from None
            linked = os.stat(gz_name, dir_fd=parent, follow_symlinks=False)
            if (linked.st_dev, linked.st_ino) != (os.fstat(out).st_dev, os.fstat(out).st_ino):
                # The temporary name was swapped before the link: drop what was linked.
                os.unlink(gz_name, dir_fd=parent)
                raise FileChangedError("the compressed file was replaced before it was kept")
            change.bytes = st.st_size - compressed
            return ""
        finally:
            os.close(out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=parent)
        os.fsync(parent)


def _gunzip_digest(fd: int, cancel: threading.Event) -> str:
    """SHA-256 of what a gzip file (open for reading at ``fd``) decompresses to."""
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    with (
        os.fdopen(os.dup(fd), "rb") as raw,
        gzip.GzipFile(fileobj=raw, mode="rb") as unzipped,
    ):
        while chunk := unzipped.read(CHUNK):
            if cancel.is_set():
                raise Cancelled("CompressLogs was cancelled")
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# RotateLogs


@dataclass(frozen=True, slots=True)
class _Generation:
    number: int
    name: str
    dev: int
    ino: int
    size: int


def _generations(directory: Path, log_name: str) -> list[_Generation] | str:
    """The rotated generations of ``log_name`` (``.N`` and ``.N.gz``), or why not rotatable."""
    pattern = re.compile(re.escape(log_name) + r"\.([1-9][0-9]{0,3})(\.gz)?")
    found: list[_Generation] = []
    fd = os.open(directory, _DIR_FLAGS)
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                match = pattern.fullmatch(entry.name)
                if match is None:
                    continue
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    return f"{shown(entry.name)} is not a regular file"
                found.append(
                    _Generation(int(match[1]), entry.name, st.st_dev, st.st_ino, st.st_size)
                )
    finally:
        os.close(fd)
    return sorted(found, key=lambda g: (-g.number, g.name))


def _shifted(log_name: str, generation: _Generation) -> str:
    suffix = generation.name[len(log_name) + 1 :]
    rest = suffix[len(str(generation.number)) :]
    return f"{log_name}.{generation.number + 1}{rest}"


def rotate_logs(
    req: pb.RotateLogsRequest,
    *,
    policy: PathPolicy,
    settings: HardwareSettings,
    quarantine: Quarantine,
    actor: str,
    cancel: threading.Event,
    progress: Progress | None,
) -> pb.ChangeReport:
    """Rotate ``*.log`` files of at least ``min_size_bytes``, keeping ``keep`` generations.

    Raises as :func:`clean_files` does.
    """
    root = policy.resolve_dir(req.path)
    if req.keep > MAX_KEEP:
        raise InvalidArgumentError("keep", f"at most {MAX_KEEP}")
    keep = req.keep or DEFAULT_KEEP
    min_size = req.min_size_bytes or DEFAULT_ROTATE_BYTES
    limits = limits_from(req.limits if req.HasField("limits") else None, settings)
    dry_run = _dry_run(req)
    plan = _Plan()
    with walk(root, limits, cancel=cancel, progress=progress, policy=policy) as scan:
        for info in scan:
            name = info.path.name
            if not name.lower().endswith(".log") or info.size < min_size:
                continue
            items = _rotation(info, keep, min_size, quarantine, actor)
            if not plan.add(items):
                break
    summary = _finish_scan(scan.summary(), plan)
    if not dry_run:
        _apply(plan, operation="RotateLogs", actor=actor, cancel=cancel, progress=progress)
    return _report(plan, dry_run=dry_run, scan=summary, operation="RotateLogs", actor=actor)


def _rotation(
    info: FileInfo, keep: int, min_size: int, quarantine: Quarantine, actor: str
) -> list[tuple[pb.PlannedChange, Apply | None]]:
    """The steps rotating one log: older generations out or up, then the log itself."""
    directory, log_name = info.path.parent, info.path.name
    first = log_name + ".1"
    rotate = pb.PlannedChange(
        action="rotate",
        target=shown(info.path),
        reason=(
            f"{info.size} bytes (at least {min_size}): renamed to {shown(first)}, "
            f"a new empty {shown(log_name)} made with mode {stat.S_IMODE(info.mode):o}"
        ),
    )
    try:
        generations = _generations(directory, log_name)
    except OSError as exc:
        generations = f"its directory cannot be read: {os_reason(exc)}"
    if isinstance(generations, str):
        rotate.error = generations
        return [(rotate, None)]
    items: list[tuple[pb.PlannedChange, Apply | None]] = []
    for generation in generations:  # highest first, so every rename has a free name
        path = directory / generation.name
        if generation.number >= keep:
            change = pb.PlannedChange(
                action="quarantine",
                target=shown(path),
                bytes=generation.size,
                reason=f"generation {generation.number + 1} of {shown(log_name)} would pass "
                f"keep={keep}",
            )
            items.append((change, _generation_out(path, generation, quarantine, actor)))
        else:
            new_name = _shifted(log_name, generation)
            change = pb.PlannedChange(
                action="rotate", target=shown(path), reason=f"renamed to {shown(new_name)}"
            )
            items.append((change, _generation_up(path, generation, new_name)))
    items.append((rotate, _rotate_step(info)))
    return items


def _same_generation(path: Path, generation: _Generation) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise FileChangedError("the file is gone since it was planned") from None
    if (st.st_dev, st.st_ino) != (generation.dev, generation.ino) or not stat.S_ISREG(st.st_mode):
        raise FileChangedError("the file changed since it was planned")


def _generation_out(
    path: Path, generation: _Generation, quarantine: Quarantine, actor: str
) -> Apply:
    def apply(change: pb.PlannedChange) -> None:
        _same_generation(path, generation)
        held = quarantine.put(path, operation="RotateLogs", actor=actor)
        change.quarantine_id = held.entry_id
        change.bytes = held.size_bytes

    return apply


def _generation_up(path: Path, generation: _Generation, new_name: str) -> Apply:
    def apply(change: pb.PlannedChange) -> None:
        _same_generation(path, generation)
        _rename_no_replace(path.parent, path.name, new_name)

    return apply


def _rotate_step(info: FileInfo) -> Apply:
    def apply(change: pb.PlannedChange) -> None:
        st = _same_log(info)
        directory, log_name = info.path.parent, info.path.name
        _rename_no_replace(directory, log_name, log_name + ".1")
        parent = os.open(directory, _DIR_FLAGS)
        try:
            try:
                fd = os.open(log_name, _NEW_LOG_FLAGS, 0o600, dir_fd=parent)
            except FileExistsError:
                return  # its writer made a new one already
            try:
                if os.geteuid() == 0:
                    os.fchown(fd, st.st_uid, st.st_gid)
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
            finally:
                os.close(fd)
            os.fsync(parent)
        finally:
            os.close(parent)

    return apply


def _same_log(info: FileInfo) -> os.stat_result:
    """The active log is written to: same inode is enough (its size and mtime move on)."""
    try:
        st = os.lstat(info.path)
    except FileNotFoundError:
        raise FileChangedError("the log is gone since it was planned") from None
    if (st.st_dev, st.st_ino) != (info.dev, info.ino) or not stat.S_ISREG(st.st_mode):
        raise FileChangedError("the log was replaced since it was planned")
    return st


def _rename_no_replace(directory: Path, old: str, new: str) -> None:
    """Rename within one directory, failing rather than replacing an existing ``new``."""
    parent = os.open(directory, _DIR_FLAGS)
    try:
        try:
            os.link(old, new, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            raise FileChangedError(f"{shown(new)} exists; nothing was replaced") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP):
                raise
            # No hard link allowed here (another user's file, or the file system): a plain
            # rename, after checking the name is free (a rename would replace it).
            if _exists_at(parent, new):
                raise FileChangedError(f"{shown(new)} exists; nothing was replaced") from None
            os.rename(old, new, src_dir_fd=parent, dst_dir_fd=parent)
        else:
            os.unlink(old, dir_fd=parent)
        os.fsync(parent)
    finally:
        os.close(parent)


def _exists_at(parent: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
