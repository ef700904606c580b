"""The quarantine: where every file a clean-up removes goes, to be restored or purged later.

Layout, in ``<state dir>/hardware/quarantine`` (mode 0700, like everything in it)::

    quarantine/
        <entry id>/          one directory per file, named by a random UUID
            manifest.json    what the file was (JSON, replaced atomically: temp, fsync, rename)
            data             the file itself (its inode, when it could be renamed in)

**Putting a file in** (:meth:`Quarantine.put`): the file is re-checked
(:meth:`PathPolicy.check_file <sutazai.services.hardware.paths.PathPolicy.check_file>`:
a regular file, not a symlink, still under a root), opened with ``O_NOFOLLOW`` and hashed
(SHA-256); the entry directory is created and locked (``flock``), and the manifest is written
in state ``moving`` *before* any byte moves. The file is then renamed into the entry when it
is on the quarantine's file system; otherwise it is copied to ``data.partial``, fsynced,
hashed again and compared, renamed to ``data``, and only then is the original unlinked. The
manifest is rewritten in state ``held`` at the end.

**Crash safety.** Every step is ordered so that a crash leaves the file either at its original
place or in the entry, never nowhere. An entry left ``moving`` (its writer died: the lock is
free) is settled when the quarantine is next opened or listed:

* data present, and the original still at its place unchanged (a copy whose original was not
  yet unlinked): the copy is dropped, the entry removed: the file never left;
* data present, original gone: the move completed; the data is hashed again and the entry
  becomes ``held``;
* no data, original at its place: nothing moved; the entry is removed;
* no data, original changed or gone: nothing the quarantine holds; reported (below).

Entries the quarantine cannot account for are **reported, never dropped silently**: logged as
``hardware.quarantine.anomaly`` (once per process), kept in :attr:`Quarantine.anomalies` and
left on disk. They are: a manifest without data (``no_data``); data without a readable
manifest (``no_manifest``, ``bad_manifest``: never deleted by the service, only a person can
tell what it is); data that is not a regular file (``not_regular``); an entry the service
cannot read (``unreadable``); a name that is no entry (``unexpected``). None is listed, since
none can be restored. A ``no_data`` entry holds nothing, so a real purge of every expired
entry deletes it once its retention has passed (and logs that).

**Restore** (:meth:`Quarantine.restore`) re-validates the original path (under an allowed
root, not protected), opens its parent directories one by one from the root with
``O_NOFOLLOW`` (so no symlink is followed; missing ones are created, mode 0700, inside the
root only), verifies the data's SHA-256, sets the recorded mode and modification time, and
links the data into place, which fails rather than replace an existing file (across file
systems: a verified copy to a temporary name, linked the same way). A file already at the
original path is a per-entry error, unless it is this very file (a restore interrupted after
the link: the same inode, or a copy with the recorded content, mode and mtime): then the
restore just finishes.

**Purge** (:meth:`Quarantine.purge`) deletes entries past their retention only; a dry run
unless asked otherwise. An entry is first renamed to ``<id>.purging`` (atomic), so a crash
mid-purge leaves nothing half-listed; the rest of its deletion is finished on the next start.

Several processes (the service and the hardware agent) share the directory: each entry is
locked with ``flock`` while it is moved, restored or purged, and a busy entry is left alone.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.files import replace_file
from sutazai.services.hardware.errors import (
    Cancelled,
    FileChangedError,
    HardwareError,
    InvalidArgumentError,
    PathRefusedError,
    QuarantineEntryBusyError,
    QuarantineEntryNotFoundError,
    RestoreRefusedError,
)
from sutazai.services.hardware.paths import PathPolicy
from sutazai.services.hardware.walk import shown

log = structlog.get_logger(__name__)

MANIFEST = "manifest.json"
DATA = "data"
PARTIAL = "data.partial"
PURGING = ".purging"
"""Suffix of an entry directory being deleted (renamed first, so the deletion is atomic)."""

MOVING = "moving"
HELD = "held"
FORMAT = 1

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_ENTRY_IDS = 1000
"""Most entry ids one restore or purge names."""
MAX_PURGED = 1000
MAX_PURGE_REPORT_BYTES = 2 * 1024 * 1024
"""A purge of every expired entry deletes at most this many, oldest first, and stops earlier
once its response would exceed this size (the mesh's messages are 4 MiB at most); the caller
calls again until nothing is left."""
MAX_MANIFEST_BYTES = 64 * 1024
MAX_LABEL_CHARS = 256
"""Longest ``operation`` or ``actor`` recorded (longer ones are cut)."""

CHUNK = 1024 * 1024
_EMPTY_GRACE_SECONDS = 60.0
_TAKEN = "a file already exists at the original path; nothing was overwritten"
_CHANGED = "the quarantined data changed while it was copied back"
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# link() failures after which a restore copies instead: another file system, or hard links
# refused for this file (protected_hardlinks) or by this file system.
_COPY_INSTEAD = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP})


# ---------------------------------------------------------------------------------------------
# Small file-system helpers, shared with :mod:`.cleanup`


def sha256_fd(fd: int, *, cancel: threading.Event | None = None) -> str:
    """The hex SHA-256 of an open file's content, read from its start."""
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, CHUNK):
        digest.update(chunk)
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled while reading a file")
    return digest.hexdigest()


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (``os.write`` may write fewer than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(directory: Path | int) -> None:
    """Make the directory's entries (a rename, a new or removed name) durable."""
    if isinstance(directory, int):
        os.fsync(directory)
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_regular(path: Path) -> tuple[int, os.stat_result]:
    """Open a regular file for reading without following a symlink; its fd and ``fstat``.

    ``O_NONBLOCK`` so that a FIFO swapped in for the file cannot hang the caller; anything but
    a regular file is refused (:class:`PathRefusedError`).
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PathRefusedError("the path is a symlink") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise PathRefusedError("the path is not a regular file")
    return fd, st


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Same inode, size and modification time: the file was not replaced or written."""
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (
        b.st_dev,
        b.st_ino,
        b.st_size,
        b.st_mtime_ns,
    )


def os_reason(exc: OSError) -> str:
    """An OS error in words safe to report (no path: the caller knows which file it was)."""
    return exc.strerror or type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Manifests


def _timestamp(ns: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


@dataclass(frozen=True, slots=True)
class Manifest:
    """What one quarantine entry holds: the file's identity before it moved, and its record."""

    entry_id: str
    state: str
    original_path: str
    size: int
    sha256: str
    mode: int
    mtime_ns: int
    uid: int
    gid: int
    dev: int
    ino: int
    quarantined_at_ns: int
    purgeable_at_ns: int
    operation: str
    actor: str

    def to_json(self) -> str:
        """The manifest file's text."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.dumps({"format": FORMAT, **values}, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse and validate a manifest (``ValueError`` when it is not one)."""
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError("not a manifest of a known format")
        values: dict[str, Any] = {}
        for field in fields(cls):
            name = field.name
            value = raw.get(name)
            if field.type == "int":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError(f"{name} is not an integer")
            elif not isinstance(value, str):
                raise ValueError(f"{name} is not a string")
            values[name] = value
        manifest = cls(**values)
        path = manifest.original_path
        if (
            not path.startswith("/")
            or "\x00" in path
            or os.path.normpath(path) != path
            or len(os.fsencode(path)) > 4096
        ):
            raise ValueError("original_path is not a normalised absolute path")
        if manifest.state not in (MOVING, HELD):
            raise ValueError("unknown state")
        if len(manifest.sha256) != 64 or any(c not in "0123456789abcdef" for c in manifest.sha256):
            raise ValueError("sha256 is not a hex SHA-256")
        if min(manifest.size, manifest.mode, manifest.mtime_ns, manifest.quarantined_at_ns) < 0:
            raise ValueError("negative value")
        return manifest

    def to_proto(self) -> pb.QuarantinedFile:
        """The entry as the API reports it."""
        return pb.QuarantinedFile(
            entry_id=self.entry_id,
            original_path=shown(self.original_path),
            size_bytes=self.size,
            sha256=self.sha256,
            quarantined_at=_timestamp(self.quarantined_at_ns),
            operation=self.operation,
            actor=self.actor,
            purgeable_at=_timestamp(self.purgeable_at_ns),
            mode=self.mode,
            modified_at=_timestamp(self.mtime_ns),
        )

    def key(self) -> tuple[int, str]:
        """Listing order: newest first, ties by id."""
        return (self.quarantined_at_ns, self.entry_id)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """An entry the quarantine cannot account for, reported rather than dropped."""

    entry: str
    """The directory entry's name in the quarantine directory."""
    kind: str
    """``no_data``, ``no_manifest``, ``bad_manifest``, ``not_regular``, ``unreadable`` or
    ``unexpected``."""
    detail: str


def canonical_entry_id(raw: str, *, field: str) -> str:
    """The canonical form of an entry id, or :class:`InvalidArgumentError` naming ``field``."""
    if len(raw) > 64:
        raise InvalidArgumentError(field, "not a UUID")
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise InvalidArgumentError(field, "not a UUID") from None


def _is_entry_name(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False


@contextlib.contextmanager
def _entry_lock(entry: Path, *, wait: bool) -> Iterator[int]:
    """Hold the entry directory's ``flock``; :class:`QuarantineEntryBusyError` if it is taken.

    ``FileNotFoundError`` when the entry is gone (restored or purged by someone else).
    """
    fd = os.open(entry, _DIR_FLAGS)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise QuarantineEntryBusyError from None
        yield fd
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# The quarantine


class Quarantine:
    """Files moved aside with a manifest, restorable byte for byte until purged.

    ``directory`` is the quarantine directory (created mode 0700, with its parent);
    ``retention`` how long an entry is kept before :meth:`purge` may delete it; ``policy``
    decides which files may be taken and where they may return; ``clock`` gives the time
    (timezone-aware). Opening the quarantine settles what a crash left behind (see the module
    docstring). Thread-safe; several processes may share the directory.
    """

    def __init__(
        self,
        directory: Path,
        *,
        retention: timedelta,
        policy: PathPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._dir = directory
        self._retention_ns = int(retention.total_seconds() * 1e9)
        self._policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int, int], Manifest]] = {}
        self._anomalies: tuple[Anomaly, ...] = ()
        self._reported: set[tuple[str, str]] = set()
        self._make_directory()
        self._scan(recover=True)

    @property
    def directory(self) -> Path:
        """The quarantine directory."""
        return self._dir

    @property
    def anomalies(self) -> tuple[Anomaly, ...]:
        """What the latest open or listing could not account for (see the module docstring)."""
        return self._anomalies

    def _now_ns(self) -> int:
        return int(self._clock().timestamp() * 1e9)

    def _make_directory(self) -> None:
        for directory in (self._dir.parent, self._dir):
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=0o700)
        st = self._dir.lstat()
        if not stat.S_ISDIR(st.st_mode):
            raise HardwareError(f"the quarantine {self._dir} is not a directory")
        if st.st_uid != os.geteuid():
            raise HardwareError(f"the quarantine {self._dir} belongs to another user")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(self._dir, 0o700)

    # -- put -------------------------------------------------------------------------------

    def put(self, path: Path, *, operation: str, actor: str) -> pb.QuarantinedFile:
        """Move one regular file into the quarantine; what it holds now.

        Raises :class:`PathRefusedError` or :class:`InvalidPathError` when the policy refuses
        the file (or it is gone), :class:`FileChangedError` when it was replaced or written
        while it moved (it is then left where it was), and ``OSError`` when the file system
        refuses (nothing is lost either way).
        """
        self._policy.check_file(path)
        # Kept exactly (JSON escapes the bytes of a name that is not UTF-8); only the API's
        # view of it is escaped (``shown``).
        original = str(path)
        fd, st = open_regular(path)
        try:
            digest = sha256_fd(fd)
            if not same_file(st, os.fstat(fd)):
                raise FileChangedError("the file was written while it was being hashed")
            now = self._now_ns()
            manifest = Manifest(
                entry_id=str(uuid.uuid4()),
                state=MOVING,
                original_path=original,
                size=st.st_size,
                sha256=digest,
                mode=stat.S_IMODE(st.st_mode),
                mtime_ns=st.st_mtime_ns,
                uid=st.st_uid,
                gid=st.st_gid,
                dev=st.st_dev,
                ino=st.st_ino,
                quarantined_at_ns=now,
                purgeable_at_ns=now + self._retention_ns,
                operation=operation[:MAX_LABEL_CHARS],
                actor=actor[:MAX_LABEL_CHARS],
            )
            entry = self._dir / manifest.entry_id
            os.mkdir(entry, 0o700)
            with _entry_lock(entry, wait=True):
                try:
                    # The manifest reaches the disk before a byte moves: a crash from here
                    # on leaves an entry that says where the file came from.
                    replace_file(entry / MANIFEST, manifest.to_json())
                    fsync_dir(self._dir)
                    held = self._move_in(path, fd, st, entry, manifest)
                    replace_file(entry / MANIFEST, held.to_json())
                except BaseException:
                    # Without its data the entry goes; with it, it stays "moving" and the
                    # next listing settles it.
                    self._abandon(entry)
                    raise
        finally:
            os.close(fd)
        log.info(
            "hardware.quarantine.put",
            entry_id=held.entry_id,
            path=shown(held.original_path),
            size=held.size,
            operation=held.operation,
            actor=held.actor,
        )
        return held.to_proto()

    def _move_in(
        self, path: Path, fd: int, st: os.stat_result, entry: Path, manifest: Manifest
    ) -> Manifest:
        data = entry / DATA
        # Hashing may have taken a while: check again right before the move.
        self._policy.check_file(path)
        try:
            os.rename(path, data)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            return self._copy_in(path, fd, st, entry, manifest)
        fsync_dir(entry)
        fsync_dir(path.parent)
        moved = os.lstat(data)
        if (moved.st_dev, moved.st_ino) != (st.st_dev, st.st_ino):
            # Something else was swapped in at the path between the check and the rename.
            self._put_back(data, path)
            raise FileChangedError("the file was replaced while it was being quarantined")
        if same_file(moved, st):
            return replace(manifest, state=HELD)
        # Written between the hash and the rename: describe what is held now.
        return self._describe(data, replace(manifest, state=HELD))

    def _copy_in(
        self, path: Path, fd: int, st: os.stat_result, entry: Path, manifest: Manifest
    ) -> Manifest:
        partial = entry / PARTIAL
        out = os.open(partial, _NEW_FILE_FLAGS, 0o600)
        try:
            digest = hashlib.sha256()
            os.lseek(fd, 0, os.SEEK_SET)
            while chunk := os.read(fd, CHUNK):
                digest.update(chunk)
                write_all(out, chunk)
            os.fsync(out)
        finally:
            os.close(out)
        if digest.hexdigest() != manifest.sha256 or not same_file(os.fstat(fd), st):
            os.unlink(partial)
            raise FileChangedError("the file was written while it was being quarantined")
        os.utime(partial, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(partial, entry / DATA)
        fsync_dir(entry)
        # The copy is durable; only now may the original go, if it is still the file copied.
        if not same_file(os.lstat(path), st):
            os.unlink(entry / DATA)
            raise FileChangedError("the file was replaced while it was being quarantined")
        os.unlink(path)
        fsync_dir(path.parent)
        return replace(manifest, state=HELD)

    @staticmethod
    def _put_back(data: Path, path: Path) -> None:
        try:
            # link() never replaces: if the original place was taken meanwhile, the entry
            # keeps what was moved (reported as an interrupted move, nothing lost).
            os.link(data, path, follow_symlinks=False)
        except OSError:
            log.error("hardware.quarantine.put_back_failed", entry=data.parent.name)
            return
        os.unlink(data)

    def _abandon(self, entry: Path) -> None:
        """Remove an entry whose move failed, unless it already holds the data."""
        if os.path.lexists(entry / DATA):
            log.error("hardware.quarantine.move_interrupted", entry_id=entry.name)
            return
        for name in (PARTIAL, MANIFEST):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry / name)
        with contextlib.suppress(OSError):
            os.rmdir(entry)

    @staticmethod
    def _describe(data: Path, manifest: Manifest) -> Manifest:
        """The manifest updated to the data's own content and metadata."""
        fd, st = open_regular(data)
        try:
            digest = sha256_fd(fd)
        finally:
            os.close(fd)
        return replace(
            manifest,
            size=st.st_size,
            sha256=digest,
            mode=stat.S_IMODE(st.st_mode),
            mtime_ns=st.st_mtime_ns,
        )

    # -- listing and recovery --------------------------------------------------------------

    def list(self, page_size: int, page_token: str) -> pb.ListQuarantineResponse:
        """One page of the held files, newest first.

        ``page_size`` 0 means 100 (at most 1000); ``page_token`` is empty or a previous
        response's ``next_page_token``. The page is keyed on the last entry, so entries added
        or removed meanwhile neither repeat nor skip others.
        """
        if page_size > MAX_PAGE_SIZE:
            raise InvalidArgumentError("page_size", f"at most {MAX_PAGE_SIZE}")
        size = page_size or DEFAULT_PAGE_SIZE
        after = _decode_token(page_token) if page_token else None
        held = sorted(self._scan(recover=True), key=Manifest.key, reverse=True)
        held_after = held if after is None else [m for m in held if m.key() < after]
        page = held_after[:size]
        more = len(held_after) > size
        return pb.ListQuarantineResponse(
            files=[m.to_proto() for m in page],
            next_page_token=_encode_token(page[-1].key()) if more else "",
            total_files=len(held),
            total_bytes=sum(m.size for m in held),
        )

    def _scan(self, *, recover: bool) -> builtins.list[Manifest]:
        """Every held entry; settles unlocked interrupted moves and reports anomalies."""
        held: builtins.list[Manifest] = []
        anomalies: builtins.list[Anomaly] = []
        seen: set[str] = set()
        with os.scandir(self._dir) as entries:
            names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
        for name, is_dir in names:
            if name.endswith(PURGING) and is_dir and _is_entry_name(name[: -len(PURGING)]):
                if recover:
                    self._finish_purge(self._dir / name)
                continue
            if not is_dir or not _is_entry_name(name):
                anomalies.append(Anomaly(name, "unexpected", "not a quarantine entry"))
                continue
            seen.add(name)
            try:
                found = self._look_at(self._dir / name, recover=recover)
            except OSError as exc:
                # One unreadable entry must not hide the others.
                found = Anomaly(name, "unreadable", os_reason(exc))
            if isinstance(found, Anomaly):
                anomalies.append(found)
            elif found is not None:
                held.append(found)
        with self._lock:
            for gone in set(self._cache) - seen:
                del self._cache[gone]
            self._anomalies = tuple(anomalies)
            fresh = [a for a in anomalies if (a.entry, a.kind) not in self._reported]
            self._reported.update((a.entry, a.kind) for a in fresh)
        for anomaly in fresh:
            log.warning(
                "hardware.quarantine.anomaly",
                entry=anomaly.entry,
                kind=anomaly.kind,
                detail=anomaly.detail,
            )
        return held

    def _look_at(self, entry: Path, *, recover: bool) -> Manifest | Anomaly | None:
        """One entry directory: held, an anomaly, or nothing to list (settled or in flight)."""
        name = entry.name
        manifest = self._cached_manifest(entry)
        has_data = os.path.lexists(entry / DATA)
        if manifest is None:
            if has_data:
                return Anomaly(name, "no_manifest", "data without a manifest")
            if recover:
                self._drop_empty(entry)
            return None
        if isinstance(manifest, str):
            return Anomaly(name, "bad_manifest", manifest)
        if manifest.state == MOVING:
            return self._settle(entry) if recover else None
        if not has_data:
            where = shown(manifest.original_path)
            return Anomaly(name, "no_data", f"manifest of {where} without data")
        return manifest

    def _cached_manifest(self, entry: Path) -> Manifest | str | None:
        """The entry's manifest; a string saying why it is unreadable; ``None`` when absent.

        Parsed manifests are remembered by the file's inode, size and modification time, so
        a listing re-reads only what changed.
        """
        try:
            st = os.lstat(entry / MANIFEST)
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            cached = self._cache.get(entry.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        manifest = self._read_manifest(entry)
        if isinstance(manifest, Manifest):
            with self._lock:
                self._cache[entry.name] = (key, manifest)
        return manifest

    @staticmethod
    def _read_manifest(entry: Path) -> Manifest | str | None:
        try:
            fd, _ = open_regular(entry / MANIFEST)
        except FileNotFoundError:
            return None
        except (OSError, HardwareError):
            return "the manifest cannot be opened"
        try:
            text = os.read(fd, MAX_MANIFEST_BYTES + 1)
        except OSError:
            return "the manifest cannot be read"
        finally:
            os.close(fd)
        if len(text) > MAX_MANIFEST_BYTES:
            return "the manifest is too large"
        try:
            manifest = Manifest.from_json(text)
        except ValueError as exc:
            return f"the manifest is malformed: {exc}"
        if manifest.entry_id != entry.name:
            return "the manifest names another entry"
        return manifest

    def _settle(self, entry: Path) -> Manifest | Anomaly | None:
        """Finish or undo a move its writer never finished (see the module docstring)."""
        try:
            with _entry_lock(entry, wait=False):
                manifest = self._read_manifest(entry)
                if not isinstance(manifest, Manifest) or manifest.state != MOVING:
                    return None  # settled meanwhile; the next listing sees it
                return self._settle_locked(entry, manifest)
        except (QuarantineEntryBusyError, FileNotFoundError):
            return None  # being moved right now, or gone

    def _settle_locked(self, entry: Path, manifest: Manifest) -> Manifest | Anomaly | None:
        data = entry / DATA
        try:
            original = os.lstat(manifest.original_path)
        except OSError:
            original = None
        in_place = (
            original is not None
            and stat.S_ISREG(original.st_mode)
            and (original.st_dev, original.st_ino, original.st_size, original.st_mtime_ns)
            == (manifest.dev, manifest.ino, manifest.size, manifest.mtime_ns)
        )
        if in_place:
            # The original never left (or a copy of it was not yet unlinked): undo.
            for name in (DATA, PARTIAL, MANIFEST):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry / name)
            self._remove_dir(entry)
            log.warning(
                "hardware.quarantine.move_undone",
                entry_id=manifest.entry_id,
                path=shown(manifest.original_path),
            )
            return None
        if not os.path.lexists(data):
            where = shown(manifest.original_path)
            return Anomaly(entry.name, "no_data", f"interrupted move of {where}: no data")
        try:
            held = self._describe(data, replace(manifest, state=HELD))
        except (OSError, HardwareError):
            return Anomaly(entry.name, "not_regular", "the data is not a regular file")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry / PARTIAL)
        replace_file(entry / MANIFEST, held.to_json())
        log.warning(
            "hardware.quarantine.move_completed",
            entry_id=held.entry_id,
            path=shown(held.original_path),
        )
        return held

    def _drop_empty(self, entry: Path) -> None:
        """Remove an entry that holds neither manifest nor data (a put that died early).

        Only once it is a minute old: a put creates the directory, then locks it, and must
        not find it gone in between.
        """
        with contextlib.suppress(OSError):
            if time.time() - entry.lstat().st_mtime < _EMPTY_GRACE_SECONDS:
                return
        try:
            with _entry_lock(entry, wait=False):
                if os.path.lexists(entry / MANIFEST) or os.path.lexists(entry / DATA):
                    return
                self._remove_dir(entry)
        except (QuarantineEntryBusyError, FileNotFoundError):
            return

    def _remove_dir(self, entry: Path) -> None:
        """Remove an entry directory's leftovers (temp manifests, partial copies) and itself."""
        with os.scandir(entry) as leftovers:
            names = [e.name for e in leftovers]
        for name in names:
            if name in (PARTIAL, MANIFEST, DATA) or (
                name.startswith(f".{MANIFEST}.") and name.endswith(".tmp")
            ):
                os.unlink(entry / name)
        os.rmdir(entry)
        fsync_dir(self._dir)

    def _finish_purge(self, doomed: Path) -> None:
        try:
            with _entry_lock(doomed, wait=False):
                self._remove_dir(doomed)
        except (QuarantineEntryBusyError, FileNotFoundError):
            return
        except OSError as exc:
            log.error("hardware.quarantine.purge_failed", entry=doomed.name, error=os_reason(exc))

    # -- restore ---------------------------------------------------------------------------

    def restore(self, entry_ids: Sequence[str]) -> builtins.list[pb.RestoreResult]:
        """Move entries back to their original paths, byte for byte, with mode and mtime.

        ``entry_ids``: 1 to 1000 UUIDs (a malformed one is :class:`InvalidArgumentError`; one
        not in the quarantine :class:`QuarantineEntryNotFoundError`, before anything is
        restored). Each entry's outcome is its own result: a file already at the original
        path, a path no longer allowed, or data that no longer matches its hash leave the
        entry where it is, with the reason.
        """
        ids = self._checked_ids(entry_ids, required=True)
        return [self._restore_one(entry_id) for entry_id in ids]

    def _checked_ids(self, entry_ids: Sequence[str], *, required: bool) -> builtins.list[str]:
        if required and not entry_ids:
            raise InvalidArgumentError("entry_ids", "name at least one entry")
        if len(entry_ids) > MAX_ENTRY_IDS:
            raise InvalidArgumentError("entry_ids", f"at most {MAX_ENTRY_IDS}")
        ids = list(
            dict.fromkeys(
                canonical_entry_id(raw, field=f"entry_ids[{i}]") for i, raw in enumerate(entry_ids)
            )
        )
        for entry_id in ids:
            if not stat.S_ISDIR(_lstat_mode(self._dir / entry_id)):
                raise QuarantineEntryNotFoundError(entry_id)
        return ids

    def _restore_one(self, entry_id: str) -> pb.RestoreResult:
        entry = self._dir / entry_id
        result = pb.RestoreResult(entry_id=entry_id)
        try:
            with _entry_lock(entry, wait=False):
                manifest = self._read_manifest(entry)
                if not isinstance(manifest, Manifest):
                    result.error = "the entry has no readable manifest"
                    return result
                result.original_path = shown(manifest.original_path)
                if manifest.state != HELD:
                    result.error = "the entry's move was interrupted; it is settled on listing"
                    return result
                try:
                    self._restore_file(entry, manifest)
                except RestoreRefusedError as exc:
                    result.error = str(exc)
                    return result
                except OSError as exc:
                    result.error = f"could not restore: {os_reason(exc)}"
                    return result
                result.restored = True
                log.info(
                    "hardware.quarantine.restored",
                    entry_id=entry_id,
                    path=shown(manifest.original_path),
                )
                try:
                    self._discard(entry)
                except OSError as exc:
                    # The file is back; what is left of the entry is retried on the next start.
                    log.error(
                        "hardware.quarantine.discard_failed",
                        entry_id=entry_id,
                        error=os_reason(exc),
                    )
        except QuarantineEntryBusyError:
            result.error = "the entry is busy (being moved, restored or purged)"
        except FileNotFoundError:
            result.error = "the entry is gone (restored or purged meanwhile)"
        return result

    def _restore_file(self, entry: Path, manifest: Manifest) -> None:
        target = Path(manifest.original_path)
        root = self._root_of(target)
        if root is None or target == root:
            raise RestoreRefusedError("the original path is no longer under an allowed root")
        reason = self._policy.refusal(target)
        if reason is not None:
            raise RestoreRefusedError(f"refused: {reason}")
        data = entry / DATA
        try:
            dfd, dst = open_regular(data)
        except FileNotFoundError:
            raise RestoreRefusedError("the entry's data is missing") from None
        except PathRefusedError:
            raise RestoreRefusedError("the entry's data is not a regular file") from None
        try:
            if dst.st_size != manifest.size or sha256_fd(dfd) != manifest.sha256:
                raise RestoreRefusedError("the quarantined data no longer matches its SHA-256")
            parent = self._open_parent(root, target)
            try:
                self._place(dfd, dst, data, parent, target.name, manifest)
            finally:
                os.close(parent)
        finally:
            os.close(dfd)

    def _place(
        self,
        dfd: int,
        dst: os.stat_result,
        data: Path,
        parent: int,
        name: str,
        manifest: Manifest,
    ) -> None:
        existing = _lstat_at(parent, name)
        if existing is not None:
            if self._is_restored_copy(existing, dst, parent, name, manifest):
                return  # an interrupted restore of this very file: finish it
            raise RestoreRefusedError(_TAKEN)
        _set_identity(dfd, manifest)
        try:
            os.link(data, name, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            raise RestoreRefusedError(_TAKEN) from None
        except OSError as exc:
            if exc.errno not in _COPY_INSTEAD:
                raise
            self._copy_out(dfd, parent, name, manifest)
        os.fsync(parent)

    @staticmethod
    def _copy_out(dfd: int, parent: int, name: str, manifest: Manifest) -> None:
        temp = f".{name[:200]}.{uuid.uuid4().hex[:12]}.restoring"
        out = os.open(temp, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            try:
                digest = hashlib.sha256()
                os.lseek(dfd, 0, os.SEEK_SET)
                while chunk := os.read(dfd, CHUNK):
                    digest.update(chunk)
                    write_all(out, chunk)
                if digest.hexdigest() != manifest.sha256:
                    raise RestoreRefusedError(
                        "the quarantined data changed while it was copied back"
                    )
                _set_identity(out, manifest)
                os.fsync(out)
            finally:
                os.close(out)
            try:
                os.link(temp, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
            except FileExistsError:
                raise RestoreRefusedError(_TAKEN) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=parent)

    @staticmethod
    def _is_restored_copy(
        existing: os.stat_result, dst: os.stat_result, parent: int, name: str, m: Manifest
    ) -> bool:
        """Whether the file at the original path is this entry's, already put back."""
        if (existing.st_dev, existing.st_ino) == (dst.st_dev, dst.st_ino):
            return True
        if not stat.S_ISREG(existing.st_mode) or (
            existing.st_size,
            existing.st_mtime_ns,
            stat.S_IMODE(existing.st_mode),
        ) != (m.size, m.mtime_ns, m.mode):
            return False
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=parent)
        except OSError:
            return False
        try:
            return sha256_fd(fd) == m.sha256
        finally:
            os.close(fd)

    def _root_of(self, target: Path) -> Path | None:
        holders = [r for r in self._policy.roots if target == r or r in target.parents]
        return max(holders, key=lambda r: len(r.parts)) if holders else None

    @staticmethod
    def _open_parent(root: Path, target: Path) -> int:
        """The target's parent directory, opened from the root one component at a time.

        ``O_NOFOLLOW`` at every step: a component that is (or became) a symlink is refused,
        never followed. A missing component is created, mode 0700 (the quarantine does not
        know the modes the directories had; an operator widens them if needed).
        """
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in target.parent.relative_to(root).parts:
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o700, dir_fd=fd)
                        os.fsync(fd)
                    child = _open_dir_at(fd, part)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise RestoreRefusedError(
                            "a parent of the original path is a symlink or not a directory"
                        ) from None
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _discard(self, entry: Path) -> None:
        """Delete an entry for good: renamed aside first, so it vanishes from lists at once."""
        doomed = entry.with_name(entry.name + PURGING)
        os.rename(entry, doomed)
        fsync_dir(self._dir)
        self._remove_dir(doomed)
        with self._lock:
            self._cache.pop(entry.name, None)

    # -- purge -----------------------------------------------------------------------------

    def purge(self, entry_ids: Sequence[str], *, dry_run: bool) -> pb.PurgeQuarantineResponse:
        """Delete entries past their retention: the named ones, or every one (oldest first).

        A named entry not yet past its retention is left alone and not reported as purged;
        a malformed id is :class:`InvalidArgumentError`, an unknown one
        :class:`QuarantineEntryNotFoundError`. Without names, at most :data:`MAX_PURGED`
        entries go per call (fewer if the response would grow past
        :data:`MAX_PURGE_REPORT_BYTES`); call again until ``purged`` is empty. A dry run
        reports and deletes nothing.
        """
        ids = self._checked_ids(entry_ids, required=False)
        now = self._now_ns()
        candidates: builtins.list[Manifest] = []
        if ids:
            for entry_id in ids:
                manifest = self._read_manifest(self._dir / entry_id)
                if isinstance(manifest, Manifest) and manifest.state == HELD:
                    candidates.append(manifest)
        else:
            candidates = self._scan(recover=True)
            candidates += self._expired_without_data(now, dry_run=dry_run)
        expired = sorted((m for m in candidates if m.purgeable_at_ns <= now), key=Manifest.key)
        response = pb.PurgeQuarantineResponse(dry_run=dry_run)
        budget = MAX_PURGE_REPORT_BYTES
        for manifest in expired[:MAX_PURGED]:
            record = manifest.to_proto()
            budget -= record.ByteSize() + 8
            if budget < 0:
                break
            entry = self._dir / manifest.entry_id
            if dry_run:
                freed: int | None = _data_size(entry)
            else:
                try:
                    freed = self._purge_one(entry, now)
                except (QuarantineEntryBusyError, FileNotFoundError):
                    freed = None  # being restored or purged by someone else
                except OSError as exc:
                    log.error(
                        "hardware.quarantine.purge_failed",
                        entry_id=manifest.entry_id,
                        error=os_reason(exc),
                    )
                    freed = None
            if freed is None:
                continue
            response.purged.append(record)
            response.bytes_freed += freed
        if not dry_run and response.purged:
            log.info(
                "hardware.quarantine.purged",
                entries=len(response.purged),
                bytes=response.bytes_freed,
            )
        return response

    def _expired_without_data(self, now: int, *, dry_run: bool) -> builtins.list[Manifest]:
        """Expired ``no_data`` entries: nothing held, so a purge of all removes them too."""
        found: builtins.list[Manifest] = []
        for anomaly in self._anomalies:
            if anomaly.kind != "no_data":
                continue
            manifest = self._read_manifest(self._dir / anomaly.entry)
            if isinstance(manifest, Manifest) and manifest.purgeable_at_ns <= now:
                found.append(manifest)
                if not dry_run:
                    log.warning(
                        "hardware.quarantine.purge_without_data",
                        entry_id=manifest.entry_id,
                        path=shown(manifest.original_path),
                    )
        return found

    def _purge_one(self, entry: Path, now: int) -> int | None:
        """Delete one entry under its lock; the bytes freed, ``None`` if it must stay."""
        with _entry_lock(entry, wait=False):
            current = self._read_manifest(entry)
            if not isinstance(current, Manifest) or current.purgeable_at_ns > now:
                return None
            if current.state != HELD and os.path.lexists(entry / DATA):
                return None  # an interrupted move: settled by the next listing
            freed = _data_size(entry)
            self._discard(entry)
        return freed


# ---------------------------------------------------------------------------------------------
# Helpers


def _data_size(entry: Path) -> int:
    try:
        return os.lstat(entry / DATA).st_size
    except FileNotFoundError:
        return 0


def _lstat_mode(path: Path) -> int:
    try:
        return path.lstat().st_mode
    except OSError:
        return 0


def _lstat_at(parent: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_dir_at(parent: int, name: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise RestoreRefusedError(
                "a parent of the original path is a symlink or not a directory"
            ) from None
        raise


def _set_identity(fd: int, manifest: Manifest) -> None:
    """Give an open file the recorded mode, modification time and (as root) owner."""
    if os.geteuid() == 0:
        os.fchown(fd, manifest.uid, manifest.gid)
    os.fchmod(fd, manifest.mode & 0o7777)
    os.utime(fd, ns=(manifest.mtime_ns, manifest.mtime_ns))


def _encode_token(key: tuple[int, str]) -> str:
    raw = f"{key[0]}/{key[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[int, str]:
    bad = InvalidArgumentError("page_token", "not a token from a previous response")
    if len(token) > 128:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        stamp, entry_id = raw.split("/")
        if not _is_entry_name(entry_id) or not stamp.isdigit():
            raise bad
        return int(stamp), entry_id
    except (ValueError, UnicodeDecodeError):
        raise bad from None
