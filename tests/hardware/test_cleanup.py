"""The clean-ups: plan first, dry run by default and truly harmless, real runs through the
quarantine with one error per failed change."""

from __future__ import annotations

import errno
import gzip
import os
import stat
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.services.hardware import cleanup
from sutazai.services.hardware.cleanup import (
    clean_files,
    compress_logs,
    deduplicate,
    is_log,
    rotate_logs,
)
from sutazai.services.hardware.duplicates import HashCache
from sutazai.services.hardware.errors import (
    Cancelled,
    InvalidArgumentError,
    InvalidPathError,
    PathRefusedError,
)
from sutazai.services.hardware.quarantine import Quarantine
from tests.hardware.conftest import DAY_NS, Site, Untouched, write
from tests.hardware.snapshots import snapshot

Run = Callable[..., pb.ChangeReport]


class Ops:
    """The four operations over one site, each with its own quarantine and cancel token."""

    def __init__(self, site: Site, quarantine_class: type[Quarantine] = Quarantine) -> None:
        self.site = site
        self.policy = site.policy()
        self.settings = site.settings()
        self.quarantine = quarantine_class(
            site.state / "hardware" / "quarantine",
            retention=timedelta(days=7),
            policy=self.policy,
        )
        self.cache = HashCache(1000)
        self.cancel = threading.Event()

    def _common(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "settings": self.settings,
            "quarantine": self.quarantine,
            "actor": "operator1",
            "cancel": self.cancel,
            "progress": None,
        }

    def clean(self, **fields: Any) -> pb.ChangeReport:
        return clean_files(pb.CleanFilesRequest(**fields), **self._common())

    def dedupe(self, **fields: Any) -> pb.ChangeReport:
        return deduplicate(pb.DeduplicateRequest(**fields), cache=self.cache, **self._common())

    def compress(self, **fields: Any) -> pb.ChangeReport:
        return compress_logs(pb.CompressLogsRequest(**fields), **self._common())

    def rotate(self, **fields: Any) -> pb.ChangeReport:
        return rotate_logs(pb.RotateLogsRequest(**fields), **self._common())

    def held(self) -> list[pb.QuarantinedFile]:
        return list(self.quarantine.list(1000, "").files)


def aged(path: Path, data: bytes, days: float, mode: int = 0o644) -> Path:
    write(path, data)
    os.chmod(path, mode)
    os.utime(path, ns=(path.lstat().st_atime_ns, path.lstat().st_mtime_ns - int(days * DAY_NS)))
    return path


def targets(report: pb.ChangeReport, root: Path) -> set[str]:
    return {str(Path(c.target).relative_to(root)) for c in report.changes}


def files_of(snap: dict[str, tuple[str, int, int, str]]) -> dict[str, tuple[str, int, int, str]]:
    return {k: v for k, v in snap.items() if v[0] == "file"}


@pytest.fixture
def ops(site: Site) -> Ops:
    return Ops(site)


# -- CleanFiles ---------------------------------------------------------------------------------


def _clean_tree(site: Site) -> None:
    aged(site.root / "a.tmp", b"a" * 10, days=10)
    aged(site.root / "sub" / "b.tmp", b"b" * 20, days=4, mode=0o600)
    aged(site.root / "sub" / "young.tmp", b"y", days=1)
    aged(site.root / "sub" / "keep.txt", b"k" * 5, days=30)
    aged(site.root / ".hidden" / "h.tmp", b"h", days=30)
    aged(site.outside / "far.tmp", b"far", days=30)
    (site.root / "link.tmp").symlink_to(site.outside / "far.tmp")
    (site.root / "dirlink").symlink_to(site.outside)


def test_a_clean_is_a_dry_run_by_default_and_changes_nothing(ops: Ops, site: Site) -> None:
    _clean_tree(site)
    before = snapshot(site.root)
    outside = Untouched.capture(site.outside)

    report = ops.clean(patterns=["*.tmp"])

    assert report.dry_run
    assert targets(report, site.root) == {"a.tmp", "sub/b.tmp"}
    assert {c.action for c in report.changes} == {"quarantine"}
    assert all(c.quarantine_id == "" and c.error == "" for c in report.changes)
    assert "matches '*.tmp'" in report.changes[0].reason
    assert report.changed == 2
    assert report.bytes_freed == 30
    assert report.failed == 0
    assert report.scan.resolved_path == str(site.root)
    assert snapshot(site.root) == before
    outside.check()
    assert ops.held() == []


def test_a_real_clean_moves_the_files_to_the_quarantine_and_restore_undoes_it(
    ops: Ops, site: Site
) -> None:
    _clean_tree(site)
    before = files_of(snapshot(site.root))
    outside = Untouched.capture(site.outside)

    report = ops.clean(patterns=["*.tmp"], dry_run=False)

    assert not report.dry_run
    assert targets(report, site.root) == {"a.tmp", "sub/b.tmp"}
    assert report.changed == 2
    assert report.bytes_freed == 30
    assert not (site.root / "a.tmp").exists()
    assert not (site.root / "sub" / "b.tmp").exists()
    assert (site.root / "sub" / "young.tmp").exists()
    outside.check()
    held = {f.entry_id: f for f in ops.held()}
    assert set(held) == {c.quarantine_id for c in report.changes}
    assert {f.operation for f in held.values()} == {"CleanFiles"}
    assert {f.actor for f in held.values()} == {"operator1"}

    results = ops.quarantine.restore(list(held))
    assert all(r.restored for r in results)
    assert files_of(snapshot(site.root)) == before


def test_without_patterns_every_old_file_is_taken_and_hidden_ones_only_when_asked(
    ops: Ops, site: Site
) -> None:
    _clean_tree(site)
    assert targets(ops.clean(), site.root) == {"a.tmp", "sub/b.tmp", "sub/keep.txt"}
    assert targets(ops.clean(older_than_days=5), site.root) == {"a.tmp", "sub/keep.txt"}
    hidden = ops.clean(limits=pb.ScanLimits(include_hidden=True))
    assert ".hidden/h.tmp" in targets(hidden, site.root)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"older_than_days": 3651}, "older_than_days"),
        ({"patterns": ["*"] * 33}, "patterns"),
        ({"patterns": ["a/*.tmp"]}, "patterns[0]"),
        ({"patterns": ["*.tmp", ""]}, "patterns[1]"),
        ({"patterns": ["x" * 256]}, "patterns[0]"),
        ({"limits": pb.ScanLimits(max_depth=10_000)}, "limits.max_depth"),
    ],
)
def test_a_malformed_clean_request_names_its_field_and_changes_nothing(
    ops: Ops, site: Site, fields: dict[str, Any], field: str
) -> None:
    _clean_tree(site)
    before = snapshot(site.root)
    with pytest.raises(InvalidArgumentError) as refused:
        ops.clean(dry_run=False, **fields)
    assert refused.value.field == field
    assert snapshot(site.root) == before


# -- every operation refuses every traversal, touching nothing ------------------------------------


ATTACKS: list[tuple[str, type[Exception]]] = [
    ("../outside", PathRefusedError),
    ("{outside}", PathRefusedError),
    ("dirlink", PathRefusedError),
    ("%2e%2e/outside", InvalidPathError),
    ("\uff0e\uff0e/outside", InvalidPathError),
    ("logs\x00", InvalidPathError),
    ("Documents", PathRefusedError),
    ("/etc", PathRefusedError),
]


@pytest.mark.parametrize("operation", ["clean", "dedupe", "compress", "rotate"])
@pytest.mark.parametrize(("raw", "error"), ATTACKS)
def test_every_operation_refuses_paths_outside_the_roots_and_touches_nothing(
    ops: Ops, site: Site, operation: str, raw: str, error: type[Exception]
) -> None:
    _clean_tree(site)
    aged(site.root / "Documents" / "old.log", b"x" * 5000, days=40)
    aged(site.outside / "old.log", b"y" * 50_000, days=40)
    aged(site.outside / "copy.log", b"y" * 50_000, days=40)
    before = snapshot(site.root)
    outside = Untouched.capture(site.outside)
    run: Run = getattr(ops, operation)

    with pytest.raises(error):
        run(path=raw.format(outside=site.outside), dry_run=False)

    assert snapshot(site.root) == before
    outside.check()
    assert ops.held() == []


# -- errors per change, cancellation, bounds ------------------------------------------------


class FlakyQuarantine(Quarantine):
    """Refuses one file, and removes another just before the first move."""

    refuse: Path | None = None
    vanish: Path | None = None
    after_first: Callable[[], None] | None = None

    def put(self, path: Path, *, operation: str, actor: str) -> pb.QuarantinedFile:
        if self.vanish is not None:
            self.vanish.unlink()
            self.vanish = None
        if path == self.refuse:
            raise PermissionError(errno.EACCES, "Permission denied")
        held = super().put(path, operation=operation, actor=actor)
        if self.after_first is not None:
            self.after_first()
            self.after_first = None
        return held


def test_a_failed_change_gets_its_error_and_the_others_are_still_made(site: Site) -> None:
    ops = Ops(site, FlakyQuarantine)
    for name in ("1.tmp", "2.tmp", "3.tmp", "4.tmp"):
        aged(site.root / name, b"x", days=10)
    assert isinstance(ops.quarantine, FlakyQuarantine)
    ops.quarantine.refuse = site.root / "2.tmp"
    planned = [Path(c.target) for c in ops.clean().changes]
    ops.quarantine.vanish = planned[-1]

    report = ops.clean(dry_run=False)

    errors = {Path(c.target).name: c.error for c in report.changes}
    assert errors["2.tmp"] == "Permission denied"
    assert errors[planned[-1].name] == "the file is gone since it was planned"
    assert report.changed == 2
    assert report.failed == 2
    assert (site.root / "2.tmp").exists()
    assert len(ops.held()) == 2


def test_cancelling_stops_the_run_and_keeps_what_was_made(site: Site) -> None:
    ops = Ops(site, FlakyQuarantine)
    for name in ("1.tmp", "2.tmp", "3.tmp"):
        aged(site.root / name, b"x", days=10)
    assert isinstance(ops.quarantine, FlakyQuarantine)
    ops.quarantine.after_first = ops.cancel.set

    with pytest.raises(Cancelled):
        ops.clean(dry_run=False)

    assert len(ops.held()) == 1
    assert len(list(site.root.iterdir())) == 2


def test_a_cancelled_walk_changes_nothing(ops: Ops, site: Site) -> None:
    _clean_tree(site)
    before = snapshot(site.root)
    ops.cancel.set()
    with pytest.raises(Cancelled):
        ops.clean(dry_run=False)
    assert snapshot(site.root) == before


def test_a_plan_stops_at_the_report_bound_and_says_so(
    ops: Ops, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        aged(site.root / f"{i}.tmp", b"x", days=10)
    monkeypatch.setattr(cleanup, "MAX_CHANGES", 3)
    report = ops.clean()
    assert len(report.changes) == 3
    assert report.scan.truncated
    assert report.scan.truncated_by == "max_changes"


# -- Deduplicate --------------------------------------------------------------------------------


def _dupe_tree(site: Site) -> None:
    aged(site.root / "a" / "oldest.bin", b"A" * 1000, days=30)
    aged(site.root / "b" / "middle.bin", b"A" * 1000, days=20)
    aged(site.root / "c" / "newest.bin", b"A" * 1000, days=10)
    aged(site.root / "one.txt", b"B" * 300, days=5)
    aged(site.root / "two.txt", b"B" * 300, days=6)
    aged(site.root / "unique.bin", b"C" * 1000, days=5)
    os.link(site.root / "c" / "newest.bin", site.root / "hardlink.bin")


def test_a_dry_run_dedupe_keeps_the_newest_of_each_group_and_changes_nothing(
    ops: Ops, site: Site
) -> None:
    _dupe_tree(site)
    before = snapshot(site.root)

    report = ops.dedupe()

    assert report.dry_run
    assert targets(report, site.root) == {"a/oldest.bin", "b/middle.bin", "two.txt"}
    assert report.bytes_freed == 2300
    kept = {c.target: c.reason for c in report.changes}
    assert "newest.bin" in kept[str(site.root / "a" / "oldest.bin")]
    assert "one.txt" in kept[str(site.root / "two.txt")]
    assert snapshot(site.root) == before


def test_a_real_dedupe_quarantines_the_older_copies_and_they_restore(ops: Ops, site: Site) -> None:
    _dupe_tree(site)
    before = files_of(snapshot(site.root))

    report = ops.dedupe(dry_run=False)

    assert report.changed == 3
    assert report.failed == 0
    assert (site.root / "c" / "newest.bin").exists()
    assert (site.root / "one.txt").exists()
    assert not (site.root / "a" / "oldest.bin").exists()
    assert not (site.root / "two.txt").exists()
    assert {f.operation for f in ops.held()} == {"Deduplicate"}
    results = ops.quarantine.restore([c.quarantine_id for c in report.changes])
    assert all(r.restored for r in results)
    assert files_of(snapshot(site.root)) == before


def test_dedupe_keeps_the_copies_when_the_kept_file_changed_after_the_scan(
    ops: Ops, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dupe_tree(site)
    real_search = cleanup.search_duplicates

    def search_then_edit(*args: Any, **kwargs: Any) -> Any:
        found = real_search(*args, **kwargs)
        (site.root / "one.txt").write_bytes(b"edited after the scan")
        return found

    monkeypatch.setattr(cleanup, "search_duplicates", search_then_edit)

    report = ops.dedupe(dry_run=False)

    errors = {Path(c.target).name: c.error for c in report.changes}
    assert errors["two.txt"] == "the kept copy changed since the scan"
    assert (site.root / "two.txt").read_bytes() == b"B" * 300
    assert errors["oldest.bin"] == errors["middle.bin"] == ""
    assert report.failed == 1


# -- CompressLogs -------------------------------------------------------------------------------


def test_log_names() -> None:
    for name in ("app.log", "APP.LOG", "app.log.3", "gc-log.txt", "audit_logs.json", "x.log.jsonl"):
        assert is_log(name), name
    for name in ("data.json", "catalog.txt", "blog.xml", "app.log.gz", "app.log.x", "logs"):
        assert not is_log(name), name


def _log_tree(site: Site) -> dict[str, bytes]:
    text = b"".join(b"2026-01-01 INFO request %d served\n" % i for i in range(5000))
    contents = {
        "app.log": text,
        "sub/app.log.2": text[:50_000],
        "gc-log.txt": text[:20_000],
        "noise.log": os.urandom(5000),
        "young.log": text,
        "data.json": text,
        "other.log": text,
        "other.log.gz": b"an older archive",
    }
    for name, data in contents.items():
        aged(site.root / name, data, days=2 if name == "young.log" else 30, mode=0o640)
    return contents


def test_a_dry_run_compress_reports_exact_savings_and_changes_nothing(ops: Ops, site: Site) -> None:
    _log_tree(site)
    before = snapshot(site.root)

    report = ops.compress()

    assert report.dry_run
    by_name = {str(Path(c.target).relative_to(site.root)): c for c in report.changes}
    assert set(by_name) == {"app.log", "sub/app.log.2", "gc-log.txt", "noise.log", "other.log"}
    assert by_name["noise.log"].error.startswith("not smaller compressed")
    assert by_name["other.log"].error == "other.log.gz already exists"
    assert all(by_name[n].bytes > 0 for n in ("app.log", "sub/app.log.2", "gc-log.txt"))
    assert report.failed == 2
    assert snapshot(site.root) == before


def test_a_real_compress_keeps_a_smaller_verified_gz_and_quarantines_the_log(
    ops: Ops, site: Site
) -> None:
    contents = _log_tree(site)
    dry = {c.target: c.bytes for c in ops.compress().changes}
    original = (site.root / "app.log").lstat()

    report = ops.compress(dry_run=False)

    made = {str(Path(c.target).relative_to(site.root)): c for c in report.changes}
    assert {n for n, c in made.items() if not c.error} == {"app.log", "sub/app.log.2", "gc-log.txt"}
    assert {c.target: c.bytes for c in report.changes} == dry
    gz = site.root / "app.log.gz"
    assert gzip.decompress(gz.read_bytes()) == contents["app.log"]
    assert gz.lstat().st_mtime_ns == original.st_mtime_ns
    assert stat.S_IMODE(gz.lstat().st_mode) == 0o640
    assert made["app.log"].bytes == original.st_size - gz.lstat().st_size
    assert not (site.root / "app.log").exists()
    assert (site.root / "noise.log").read_bytes() == contents["noise.log"]
    assert not (site.root / "noise.log.gz").exists()
    assert (site.root / "other.log.gz").read_bytes() == b"an older archive"
    assert (site.root / "other.log").exists()
    assert not list(site.root.rglob(".sutazai-gz-*"))
    held = {f.original_path: f for f in ops.held()}
    assert set(held) == {str(site.root / n) for n in ("app.log", "sub/app.log.2", "gc-log.txt")}
    assert {f.operation for f in held.values()} == {"CompressLogs"}

    [back] = ops.quarantine.restore([made["app.log"].quarantine_id])
    assert back.restored
    assert (site.root / "app.log").read_bytes() == contents["app.log"]


# -- RotateLogs ---------------------------------------------------------------------------------


def _rotation_tree(site: Site) -> None:
    aged(site.root / "app.log", b"current\n" * 300, days=0, mode=0o640)
    aged(site.root / "app.log.1", b"first\n", days=1)
    aged(site.root / "app.log.2.gz", b"second", days=2)
    aged(site.root / "app.log.3", b"third\n", days=3)
    aged(site.root / "app.log.7", b"seventh\n", days=7)
    aged(site.root / "small.log", b"tiny\n", days=0)


def test_a_dry_run_rotation_lists_every_step_and_changes_nothing(ops: Ops, site: Site) -> None:
    _rotation_tree(site)
    before = snapshot(site.root)

    report = ops.rotate(min_size_bytes=1000, keep=3)

    assert report.dry_run
    steps = [(c.action, Path(c.target).name) for c in report.changes]
    assert steps == [
        ("quarantine", "app.log.7"),
        ("quarantine", "app.log.3"),
        ("rotate", "app.log.2.gz"),
        ("rotate", "app.log.1"),
        ("rotate", "app.log"),
    ]
    assert report.changes[2].reason == "renamed to app.log.3.gz"
    assert report.bytes_freed == len(b"seventh\n") + len(b"third\n")
    assert snapshot(site.root) == before


def test_a_real_rotation_shifts_generations_and_makes_a_new_empty_log(ops: Ops, site: Site) -> None:
    _rotation_tree(site)

    report = ops.rotate(min_size_bytes=1000, keep=3, dry_run=False)

    assert report.failed == 0
    assert (site.root / "app.log").read_bytes() == b""
    assert stat.S_IMODE((site.root / "app.log").lstat().st_mode) == 0o640
    assert (site.root / "app.log.1").read_bytes() == b"current\n" * 300
    assert (site.root / "app.log.2").read_bytes() == b"first\n"
    assert (site.root / "app.log.3.gz").read_bytes() == b"second"
    assert not (site.root / "app.log.7").exists()
    assert not (site.root / "app.log.4").exists()
    assert (site.root / "small.log").read_bytes() == b"tiny\n"
    assert {Path(f.original_path).name for f in ops.held()} == {"app.log.3", "app.log.7"}


def test_a_log_whose_generation_is_not_a_regular_file_is_not_rotated(ops: Ops, site: Site) -> None:
    aged(site.root / "app.log", b"x" * 2000, days=0)
    (site.root / "app.log.1").symlink_to(site.outside / "secret.txt")
    before = snapshot(site.root)

    report = ops.rotate(min_size_bytes=1000, dry_run=False)

    [change] = report.changes
    assert change.error == "app.log.1 is not a regular file"
    assert report.failed == 1
    assert snapshot(site.root) == before


def test_a_rotation_stops_at_its_first_failed_step(ops: Ops, site: Site) -> None:
    aged(site.root / "app.log", b"x" * 2000, days=0)
    aged(site.root / "app.log.1", b"one", days=1)
    real = cleanup._rename_no_replace

    def taken(directory: Path, old: str, new: str) -> None:
        if old == "app.log.1":
            (directory / new).write_bytes(b"appeared")
        real(directory, old, new)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cleanup, "_rename_no_replace", taken)
        report = ops.rotate(min_size_bytes=1000, dry_run=False)

    errors = [(Path(c.target).name, c.error) for c in report.changes]
    assert errors == [
        ("app.log.1", "app.log.2 exists; nothing was replaced"),
        ("app.log", "not done: an earlier change to the same log failed"),
    ]
    assert (site.root / "app.log").read_bytes() == b"x" * 2000
    assert (site.root / "app.log.1").read_bytes() == b"one"
    assert (site.root / "app.log.2").read_bytes() == b"appeared"


def test_rotate_refuses_too_many_generations(ops: Ops) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        ops.rotate(keep=51)
    assert refused.value.field == "keep"
