"""The quarantine: files in with a manifest, back byte for byte, purged only after retention,
and nothing lost whatever step a crash interrupts."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sutazai.services.hardware import quarantine as quarantine_module
from sutazai.services.hardware.errors import (
    InvalidArgumentError,
    InvalidPathError,
    PathRefusedError,
    QuarantineEntryNotFoundError,
)
from sutazai.services.hardware.quarantine import DATA, MANIFEST, MOVING, Manifest, Quarantine
from tests.hardware.conftest import Site, Untouched, write
from tests.hardware.snapshots import snapshot

START = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """A settable clock for retention."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def make(site: Site, clock: Clock | None = None, **policy: Any) -> Quarantine:
    return Quarantine(
        site.state / "hardware" / "quarantine",
        retention=timedelta(days=7),
        policy=site.policy(**policy),
        clock=clock or Clock(),
    )


def old_file(path: Path, data: bytes, mode: int = 0o640) -> Path:
    write(path, data, age_days=10)
    os.chmod(path, mode)
    mtime = path.lstat().st_mtime_ns
    os.utime(path, ns=(mtime, mtime))
    return path


def identity(path: Path) -> tuple[bytes, int, int]:
    st = path.lstat()
    return path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime_ns


def manifest_of(q: Quarantine, entry_id: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((q.directory / entry_id / MANIFEST).read_text())
    return loaded


# -- put ----------------------------------------------------------------------------------------


def test_put_moves_the_file_into_a_private_entry_with_a_complete_manifest(site: Site) -> None:
    clock = Clock()
    q = make(site, clock)
    path = old_file(site.root / "tmp" / "a.tmp", b"hello quarantine", mode=0o640)
    before = identity(path)

    held = q.put(path, operation="CleanFiles", actor="alice")

    assert not os.path.lexists(path)
    assert stat.S_IMODE(q.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((site.state / "hardware").stat().st_mode) == 0o700
    entry = q.directory / held.entry_id
    assert stat.S_IMODE(entry.stat().st_mode) == 0o700
    assert sorted(os.listdir(entry)) == [DATA, MANIFEST]
    assert (entry / DATA).read_bytes() == before[0]
    assert held.original_path == str(path)
    assert held.size_bytes == len(before[0])
    assert held.sha256 == hashlib.sha256(before[0]).hexdigest()
    assert held.mode == 0o640
    assert held.modified_at.ToNanoseconds() == before[2]
    assert held.operation == "CleanFiles"
    assert held.actor == "alice"
    assert held.quarantined_at.ToDatetime(UTC) == START
    assert held.purgeable_at.ToDatetime(UTC) == START + timedelta(days=7)
    recorded = manifest_of(q, held.entry_id)
    assert recorded["state"] == "held"
    assert recorded["uid"] == os.geteuid()
    assert recorded["sha256"] == held.sha256
    assert recorded["original_path"] == str(path)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_put_refuses_anything_but_a_regular_file_and_changes_nothing(site: Site, kind: str) -> None:
    q = make(site)
    target = site.root / "thing"
    if kind == "symlink":
        target.symlink_to(site.outside / "secret.txt")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    before = snapshot(site.root)
    outside = Untouched.capture(site.outside)

    with pytest.raises(PathRefusedError):
        q.put(target, operation="CleanFiles", actor="alice")

    assert snapshot(site.root) == before
    outside.check()
    assert os.listdir(q.directory) == []


def test_put_refuses_files_outside_the_roots_or_protected(site: Site) -> None:
    q = make(site)
    protected = write(site.root / "Documents" / "x.txt", b"mine")
    outside = Untouched.capture(site.outside)
    for path in (site.outside / "secret.txt", protected, site.state / "secrets" / "key"):
        with pytest.raises(PathRefusedError):
            q.put(path, operation="CleanFiles", actor="alice")
    outside.check()
    assert protected.read_bytes() == b"mine"
    assert (site.state / "secrets" / "key").read_bytes() == b"private\n"
    assert os.listdir(q.directory) == []


def test_put_of_a_missing_file_is_an_invalid_path_and_leaves_no_entry(site: Site) -> None:
    q = make(site)
    with pytest.raises(InvalidPathError):
        q.put(site.root / "nope", operation="CleanFiles", actor="alice")
    assert os.listdir(q.directory) == []


def test_a_file_replaced_by_a_symlink_after_it_was_planned_is_refused(site: Site) -> None:
    # The walk saw a regular file; by the time of the change it points outside the root.
    q = make(site)
    path = write(site.root / "victim.log", b"x")
    path.unlink()
    path.symlink_to(site.outside / "secret.txt")
    outside = Untouched.capture(site.outside)
    with pytest.raises(PathRefusedError):
        q.put(path, operation="CleanFiles", actor="alice")
    outside.check()
    assert path.is_symlink()


def test_a_file_on_another_file_system_is_copied_verified_and_then_unlinked(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = make(site)
    path = old_file(site.root / "far.bin", os.urandom(3 * 1024 * 1024 + 17), mode=0o604)
    before = identity(path)
    real_rename = os.rename

    def cross_device(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(src) == path:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(quarantine_module.os, "rename", cross_device)
    held = q.put(path, operation="CleanFiles", actor="alice")
    monkeypatch.undo()

    assert not os.path.lexists(path)
    data = q.directory / held.entry_id / DATA
    assert data.read_bytes() == before[0]
    assert data.lstat().st_mtime_ns == before[2]
    assert held.sha256 == hashlib.sha256(before[0]).hexdigest()
    assert sorted(os.listdir(data.parent)) == [DATA, MANIFEST]

    [result] = q.restore([held.entry_id])
    assert result.restored, result.error
    assert identity(path) == before


def test_a_real_second_file_system_round_trips_when_the_host_has_one(site: Site) -> None:
    shm = Path("/dev/shm")  # noqa: S108 (its tmpfs is the second file system wanted here)
    if not shm.is_dir() or shm.stat().st_dev == site.tmp.stat().st_dev:
        pytest.skip("no second file system (tmpfs /dev/shm) beside the temp directory")
    root = shm / f"sutazai-test-{uuid.uuid4().hex}"
    root.mkdir(mode=0o700)
    try:
        # /dev is protected by default; this test only needs its tmpfs as a second device.
        q = make(site, allowed_roots=[root], protected_paths=[])
        path = old_file(root / "sub" / "file.txt", b"over there", mode=0o600)
        before = identity(path)
        held = q.put(path, operation="CleanFiles", actor="alice")
        assert not os.path.lexists(path)
        (root / "sub").rmdir()
        [result] = q.restore([held.entry_id])
        assert result.restored, result.error
        assert identity(path) == before
    finally:
        for directory, _, files in os.walk(root, topdown=False):
            for name in files:
                os.unlink(Path(directory) / name)
            os.rmdir(directory)


# -- restore ------------------------------------------------------------------------------------


def test_restore_brings_the_file_back_byte_identical_with_mode_and_mtime(site: Site) -> None:
    q = make(site)
    path = old_file(site.root / "d" / "e" / "f.dat", os.urandom(100_000), mode=0o751)
    before = identity(path)
    held = q.put(path, operation="Deduplicate", actor="bob")

    [result] = q.restore([held.entry_id])

    assert result.restored
    assert result.error == ""
    assert result.entry_id == held.entry_id
    assert result.original_path == str(path)
    assert identity(path) == before
    assert os.listdir(q.directory) == []
    assert q.list(0, "").total_files == 0


def test_restore_recreates_missing_parent_directories_inside_the_root(site: Site) -> None:
    q = make(site)
    path = old_file(site.root / "gone" / "deeper" / "f.txt", b"content")
    before = identity(path)
    held = q.put(path, operation="CleanFiles", actor="alice")
    (site.root / "gone" / "deeper").rmdir()
    (site.root / "gone").rmdir()

    [result] = q.restore([held.entry_id])

    assert result.restored, result.error
    assert identity(path) == before
    assert stat.S_IMODE((site.root / "gone").stat().st_mode) == 0o700


def test_restore_never_overwrites_a_file_that_took_the_place(site: Site) -> None:
    q = make(site)
    path = old_file(site.root / "f.txt", b"original")
    held = q.put(path, operation="CleanFiles", actor="alice")
    path.write_bytes(b"newcomer")

    [result] = q.restore([held.entry_id])

    assert not result.restored
    assert "already exists" in result.error
    assert path.read_bytes() == b"newcomer"
    assert q.list(0, "").files[0].entry_id == held.entry_id


def test_restore_refuses_a_parent_that_became_a_symlink_out_of_the_root(site: Site) -> None:
    q = make(site)
    path = old_file(site.root / "sub" / "f.txt", b"original")
    held = q.put(path, operation="CleanFiles", actor="alice")
    (site.root / "sub").rmdir()
    (site.root / "sub").symlink_to(site.outside)
    outside = Untouched.capture(site.outside)

    [result] = q.restore([held.entry_id])

    assert not result.restored
    assert "symlink" in result.error
    outside.check()
    assert q.list(0, "").total_files == 1


def test_restore_refuses_a_place_no_longer_under_a_root_or_now_protected(site: Site) -> None:
    q = make(site)
    first = q.put(old_file(site.root / "a.txt", b"a"), operation="CleanFiles", actor="x")
    second = q.put(old_file(site.root / "p" / "b.txt", b"b"), operation="CleanFiles", actor="x")

    elsewhere = site.tmp / "elsewhere"
    elsewhere.mkdir()
    moved_roots = make(site, allowed_roots=[elsewhere])
    [result] = moved_roots.restore([first.entry_id])
    assert not result.restored
    assert "no longer under an allowed root" in result.error

    protected = make(site, protected_paths=[site.root / "p"])
    [result] = protected.restore([second.entry_id])
    assert not result.restored
    assert "protected" in result.error
    assert not (site.root / "a.txt").exists()
    assert not (site.root / "p" / "b.txt").exists()
    assert q.list(0, "").total_files == 2


def test_restore_refuses_data_that_no_longer_matches_its_hash(site: Site) -> None:
    q = make(site)
    path = old_file(site.root / "f.txt", b"original")
    held = q.put(path, operation="CleanFiles", actor="alice")
    (q.directory / held.entry_id / DATA).write_bytes(b"tampered")

    [result] = q.restore([held.entry_id])

    assert not result.restored
    assert "SHA-256" in result.error
    assert not path.exists()


def test_restore_validates_ids_before_restoring_anything(site: Site) -> None:
    q = make(site)
    path = old_file(site.root / "f.txt", b"x")
    held = q.put(path, operation="CleanFiles", actor="alice")

    with pytest.raises(InvalidArgumentError) as bad:
        q.restore([held.entry_id, "../../etc/passwd"])
    assert bad.value.field == "entry_ids[1]"
    with pytest.raises(QuarantineEntryNotFoundError):
        q.restore([held.entry_id, str(uuid.uuid4())])
    with pytest.raises(InvalidArgumentError):
        q.restore([])
    with pytest.raises(InvalidArgumentError):
        q.restore([held.entry_id] * 1001)
    assert not path.exists()

    # Upper case, repeated: the same entry, restored once.
    results = q.restore([held.entry_id.upper(), held.entry_id])
    assert [r.restored for r in results] == [True]


def test_restore_finishes_a_restore_interrupted_after_the_link(site: Site) -> None:
    q = make(site)
    path = old_file(site.root / "f.txt", b"twice")
    before = identity(path)
    held = q.put(path, operation="CleanFiles", actor="alice")
    os.link(q.directory / held.entry_id / DATA, path)  # the crash: linked, entry not removed

    [result] = q.restore([held.entry_id])

    assert result.restored, result.error
    assert identity(path) == before
    assert os.listdir(q.directory) == []


def test_a_busy_entry_is_not_restored(site: Site) -> None:
    q = make(site)
    held = q.put(old_file(site.root / "f.txt", b"x"), operation="CleanFiles", actor="alice")
    fd = os.open(q.directory / held.entry_id, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        [result] = q.restore([held.entry_id])
    finally:
        os.close(fd)
    assert not result.restored
    assert "busy" in result.error
    assert not (site.root / "f.txt").exists()


# -- list ---------------------------------------------------------------------------------------


def test_list_pages_newest_first_with_an_opaque_token(site: Site) -> None:
    clock = Clock()
    q = make(site, clock)
    ids = []
    for i in range(5):
        clock.now = START + timedelta(minutes=i)
        ids.append(q.put(old_file(site.root / f"f{i}", b"x" * (i + 1)), operation="C", actor="a"))

    first = q.list(2, "")
    assert [f.entry_id for f in first.files] == [ids[4].entry_id, ids[3].entry_id]
    assert first.total_files == 5
    assert first.total_bytes == 1 + 2 + 3 + 4 + 5
    assert first.next_page_token
    assert ids[4].entry_id not in first.next_page_token

    # A file added meanwhile does not shift the pages already handed out.
    clock.now = START + timedelta(hours=1)
    newest = q.put(old_file(site.root / "late", b"late"), operation="C", actor="a")
    second = q.list(2, first.next_page_token)
    assert [f.entry_id for f in second.files] == [ids[2].entry_id, ids[1].entry_id]
    third = q.list(2, second.next_page_token)
    assert [f.entry_id for f in third.files] == [ids[0].entry_id]
    assert third.next_page_token == ""
    assert q.list(0, "").files[0].entry_id == newest.entry_id


@pytest.mark.parametrize("token", ["garbage", "x" * 200, "MTIzL25vdC1hLXV1aWQ", "////"])
def test_list_refuses_a_token_it_did_not_make(site: Site, token: str) -> None:
    q = make(site)
    with pytest.raises(InvalidArgumentError) as refused:
        q.list(10, token)
    assert refused.value.field == "page_token"


def test_list_refuses_an_oversized_page(site: Site) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        make(site).list(1001, "")
    assert refused.value.field == "page_size"


# -- purge --------------------------------------------------------------------------------------


def test_purge_is_a_dry_run_until_asked_and_only_takes_expired_entries(site: Site) -> None:
    clock = Clock()
    q = make(site, clock)
    old = q.put(old_file(site.root / "old", b"old!"), operation="C", actor="a")
    clock.now = START + timedelta(days=5)
    young = q.put(old_file(site.root / "young", b"young"), operation="C", actor="a")
    clock.now = START + timedelta(days=8)

    dry = q.purge([], dry_run=True)
    assert dry.dry_run
    assert [f.entry_id for f in dry.purged] == [old.entry_id]
    assert dry.bytes_freed == 4
    assert q.list(0, "").total_files == 2

    real = q.purge([], dry_run=False)
    assert not real.dry_run
    assert [f.entry_id for f in real.purged] == [old.entry_id]
    assert real.bytes_freed == 4
    assert [f.entry_id for f in q.list(0, "").files] == [young.entry_id]
    assert sorted(os.listdir(q.directory)) == [young.entry_id]


def test_purge_of_named_entries_takes_only_those_past_retention(site: Site) -> None:
    clock = Clock()
    q = make(site, clock)
    a = q.put(old_file(site.root / "a", b"a"), operation="C", actor="x")
    b = q.put(old_file(site.root / "b", b"b"), operation="C", actor="x")
    clock.now = START + timedelta(days=3)
    c = q.put(old_file(site.root / "c", b"c"), operation="C", actor="x")
    clock.now = START + timedelta(days=7, seconds=1)

    response = q.purge([a.entry_id, c.entry_id], dry_run=False)

    assert [f.entry_id for f in response.purged] == [a.entry_id]
    assert {f.entry_id for f in q.list(0, "").files} == {b.entry_id, c.entry_id}
    with pytest.raises(QuarantineEntryNotFoundError):
        q.purge([a.entry_id], dry_run=False)
    with pytest.raises(InvalidArgumentError):
        q.purge(["not-a-uuid"], dry_run=True)


# -- crash safety ---------------------------------------------------------------------------


def _interrupted(q: Quarantine, path: Path, *, move: str) -> str:
    """An entry as a put leaves it when it dies in state ``moving``; its id."""
    st = path.lstat()
    data = path.read_bytes()
    entry_id = str(uuid.uuid4())
    manifest = Manifest(
        entry_id=entry_id,
        state=MOVING,
        original_path=str(path),
        size=st.st_size,
        sha256=hashlib.sha256(data).hexdigest(),
        mode=stat.S_IMODE(st.st_mode),
        mtime_ns=st.st_mtime_ns,
        uid=st.st_uid,
        gid=st.st_gid,
        dev=st.st_dev,
        ino=st.st_ino,
        quarantined_at_ns=0,
        purgeable_at_ns=0,
        operation="C",
        actor="a",
    )
    entry = q.directory / entry_id
    entry.mkdir(mode=0o700)
    (entry / MANIFEST).write_text(manifest.to_json())
    if move == "renamed":
        os.rename(path, entry / DATA)
    elif move == "copied":  # the copy is complete; the original is not unlinked yet
        (entry / DATA).write_bytes(data)
    elif move == "copied_and_unlinked":
        (entry / DATA).write_bytes(data)
        path.unlink()
    return entry_id


def test_a_crash_before_the_move_leaves_the_file_in_place_and_the_entry_is_undone(
    site: Site,
) -> None:
    q = make(site)
    path = old_file(site.root / "f.txt", b"stay")
    before = identity(path)
    _interrupted(q, path, move="none")

    reopened = make(site)

    assert identity(path) == before
    assert os.listdir(reopened.directory) == []
    assert reopened.anomalies == ()


def test_a_crash_after_a_copy_but_before_the_unlink_keeps_the_original(site: Site) -> None:
    q = make(site)
    path = old_file(site.root / "f.txt", b"copied")
    before = identity(path)
    _interrupted(q, path, move="copied")

    reopened = make(site)

    assert identity(path) == before
    assert os.listdir(reopened.directory) == []


@pytest.mark.parametrize("move", ["renamed", "copied_and_unlinked"])
def test_a_crash_after_the_move_completes_the_entry_which_restores(site: Site, move: str) -> None:
    q = make(site)
    path = old_file(site.root / "f.txt", b"moved before the crash")
    before = identity(path)
    entry_id = _interrupted(q, path, move=move)

    listed = q.list(0, "")  # a listing settles it as well as a restart

    assert [f.entry_id for f in listed.files] == [entry_id]
    assert manifest_of(q, entry_id)["state"] == "held"
    [result] = q.restore([entry_id])
    assert result.restored, result.error
    assert identity(path)[0] == before[0]


def test_entries_it_cannot_account_for_are_reported_and_kept(site: Site) -> None:
    q = make(site)
    lost = q.put(old_file(site.root / "lost", b"lost"), operation="C", actor="a")
    (q.directory / lost.entry_id / DATA).unlink()  # data without manifest, below
    orphan = q.directory / str(uuid.uuid4())
    orphan.mkdir()
    (orphan / DATA).write_bytes(b"who am I")
    garbled = q.put(old_file(site.root / "garbled", b"g"), operation="C", actor="a")
    (q.directory / garbled.entry_id / MANIFEST).write_text("{not json")
    (q.directory / "stray.txt").write_bytes(b"?")

    reopened = make(site)

    kinds = {(a.entry, a.kind) for a in reopened.anomalies}
    assert kinds == {
        (lost.entry_id, "no_data"),
        (orphan.name, "no_manifest"),
        (garbled.entry_id, "bad_manifest"),
        ("stray.txt", "unexpected"),
    }
    assert reopened.list(0, "").total_files == 0
    assert (orphan / DATA).read_bytes() == b"who am I"
    assert (q.directory / garbled.entry_id / DATA).read_bytes() == b"g"


def test_a_real_purge_removes_an_expired_entry_that_holds_no_data(site: Site) -> None:
    clock = Clock()
    q = make(site, clock)
    lost = q.put(old_file(site.root / "lost", b"lost"), operation="C", actor="a")
    (q.directory / lost.entry_id / DATA).unlink()
    clock.now = START + timedelta(days=8)

    assert [f.entry_id for f in q.purge([], dry_run=True).purged] == [lost.entry_id]
    assert (q.directory / lost.entry_id).exists()
    response = q.purge([], dry_run=False)
    assert [f.entry_id for f in response.purged] == [lost.entry_id]
    assert response.bytes_freed == 0
    assert os.listdir(q.directory) == []


def test_a_purge_interrupted_after_the_rename_is_finished_on_the_next_open(site: Site) -> None:
    q = make(site)
    held = q.put(old_file(site.root / "f", b"f"), operation="C", actor="a")
    entry = q.directory / held.entry_id
    os.rename(entry, entry.with_name(entry.name + ".purging"))

    reopened = make(site)

    assert os.listdir(reopened.directory) == []
    assert reopened.anomalies == ()


def test_an_entry_being_moved_by_another_process_is_left_alone(site: Site) -> None:
    q = make(site)
    path = old_file(site.root / "f.txt", b"in flight")
    entry_id = _interrupted(q, path, move="renamed")
    fd = os.open(q.directory / entry_id, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        reopened = make(site)
        assert reopened.list(0, "").total_files == 0
        assert manifest_of(reopened, entry_id)["state"] == "moving"
    finally:
        os.close(fd)
    assert make(site).list(0, "").total_files == 1


def test_a_failed_move_leaves_the_file_in_place_and_no_entry(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = make(site)
    path = old_file(site.root / "f.txt", b"stays")
    before = identity(path)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(quarantine_module.os, "rename", refuse)
    with pytest.raises(PermissionError):
        q.put(path, operation="C", actor="a")
    monkeypatch.undo()

    assert identity(path) == before
    assert os.listdir(q.directory) == []


def test_the_quarantine_directory_is_made_private(site: Site) -> None:
    directory = site.state / "hardware" / "quarantine"
    directory.mkdir(parents=True)
    os.chmod(directory, 0o755)  # noqa: S103 (too wide on purpose: opening must narrow it)
    make(site)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_name_that_is_not_utf8_is_kept_exactly_and_shown_escaped(site: Site) -> None:
    q = make(site)
    path = Path(os.fsdecode(bytes(site.root) + b"/caf\xe9.tmp"))
    before = identity(old_file(path, b"latin-1 name"))

    held = q.put(path, operation="CleanFiles", actor="alice")

    assert held.original_path == str(site.root) + "/caf\\xe9.tmp"
    assert q.list(0, "").files[0].original_path == held.original_path
    [result] = q.restore([held.entry_id])
    assert result.restored, result.error
    assert identity(path) == before


def test_a_put_failing_after_the_move_leaves_an_entry_the_next_listing_settles(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = make(site)
    path = old_file(site.root / "f.txt", b"moved, then the disk filled")
    before = identity(path)
    real_replace = quarantine_module.replace_file
    calls = []

    def full_on_second(target: Path, text: str, **kwargs: Any) -> None:
        calls.append(target)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(target, text, **kwargs)

    monkeypatch.setattr(quarantine_module, "replace_file", full_on_second)
    with pytest.raises(OSError, match="No space"):
        q.put(path, operation="C", actor="a")
    monkeypatch.undo()

    assert not path.exists()
    [held] = q.list(0, "").files
    [result] = q.restore([held.entry_id])
    assert result.restored, result.error
    assert identity(path) == before


def test_one_unreadable_entry_does_not_hide_the_others(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = make(site)
    good = q.put(old_file(site.root / "good", b"g"), operation="C", actor="a")
    bad = q.put(old_file(site.root / "bad", b"b"), operation="C", actor="a")
    real = Quarantine._cached_manifest

    def unreadable(self: Quarantine, entry: Path) -> Any:
        if entry.name == bad.entry_id:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(self, entry)

    monkeypatch.setattr(Quarantine, "_cached_manifest", unreadable)

    assert [f.entry_id for f in q.list(0, "").files] == [good.entry_id]
    assert [(a.entry, a.kind) for a in q.anomalies] == [(bad.entry_id, "unreadable")]
