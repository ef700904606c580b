"""The walk: regular files only, never through a symlink, bounded and cancellable."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.services.hardware.errors import Cancelled, InvalidArgumentError
from sutazai.services.hardware.walk import Walk, limits_from, walk
from tests.hardware.conftest import Site, Untouched, limits, never, write


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _names(scan: Walk) -> set[str]:
    return {str(info.path.relative_to(scan.root)) for info in scan}


def test_the_walk_yields_regular_files_and_counts_what_it_passed_over(site: Site) -> None:
    write(site.root / "a.txt", b"a")
    write(site.root / ".hidden-file", b"h")
    write(site.root / "d1" / "b.log", b"bb")
    write(site.root / "d1" / "d2" / "c.bin", b"ccc")
    write(site.root / ".cache" / "hidden.bin", b"x")
    write(site.root / "Documents" / "private.txt", b"x")
    (site.root / "file-link").symlink_to(site.outside / "secret.txt")
    (site.root / "dir-link").symlink_to(site.outside)
    (site.root / "inner-link").symlink_to(site.root / "a.txt")
    os.mkfifo(site.root / "d1" / "pipe")
    untouched = Untouched.capture(site.outside)

    with walk(site.root, limits(), cancel=never(), progress=None, policy=site.policy()) as scan:
        found = {str(i.path.relative_to(site.root)): i.size for i in scan}
    assert found == {"a.txt": 1, ".hidden-file": 1, "d1/b.log": 2, "d1/d2/c.bin": 3}
    summary = scan.summary()
    assert summary.resolved_path == str(site.root)
    assert summary.files_scanned == 4
    assert summary.directories_scanned == 3  # root, d1, d1/d2
    # Three symlinks, the fifo, the hidden directory and the protected one.
    assert summary.entries_skipped == 6
    assert not summary.truncated
    assert summary.truncated_by == ""
    untouched.check()


def test_hidden_directories_are_walked_when_asked(site: Site) -> None:
    write(site.root / ".cache" / "hidden.bin", b"x")
    write(site.root / "plain.txt", b"x")
    scan = walk(
        site.root, limits(include_hidden=True), cancel=never(), progress=None, policy=site.policy()
    )
    assert _names(scan) == {".cache/hidden.bin", "plain.txt"}
    assert scan.skipped == 0


def test_the_state_directory_under_a_root_is_passed_over(site: Site) -> None:
    write(site.tmp / "mine.txt", b"x")
    policy = site.policy(allowed_roots=[site.tmp])
    scan = walk(site.tmp, limits(), cancel=never(), progress=None, policy=policy)
    names = _names(scan)
    assert "mine.txt" in names
    assert not any(name.startswith("state/") for name in names)


def test_depth_bounds_what_is_visited_without_truncating(site: Site) -> None:
    write(site.root / "0.txt", b"x")
    write(site.root / "a" / "1.txt", b"x")
    write(site.root / "a" / "b" / "2.txt", b"x")
    write(site.root / "a" / "b" / "c" / "3.txt", b"x")
    policy = site.policy()
    scan = walk(site.root, limits(max_depth=1), cancel=never(), progress=None, policy=policy)
    assert _names(scan) == {"0.txt", "a/1.txt"}
    assert not scan.truncated
    assert scan.directories == 2
    scan = walk(site.root, limits(max_depth=2), cancel=never(), progress=None, policy=policy)
    assert _names(scan) == {"0.txt", "a/1.txt", "a/b/2.txt"}


def test_max_files_truncates_only_when_more_files_exist(site: Site) -> None:
    for i in range(5):
        write(site.root / f"d{i % 2}" / f"{i}.txt", b"x")
    policy = site.policy()
    exact = walk(site.root, limits(max_files=5), cancel=never(), progress=None, policy=policy)
    assert len(list(exact)) == 5
    assert not exact.truncated
    short = walk(site.root, limits(max_files=3), cancel=never(), progress=None, policy=policy)
    assert len(list(short)) == 3
    summary = short.summary()
    assert (summary.truncated, summary.truncated_by, summary.files_scanned) == (
        True,
        "max_files",
        3,
    )


def test_max_duration_truncates_the_walk(site: Site) -> None:
    write(site.root / "a.txt", b"x")
    scan = walk(
        site.root, limits(max_seconds=0.0), cancel=never(), progress=None, policy=site.policy()
    )
    assert list(scan) == []
    assert (scan.summary().truncated, scan.summary().truncated_by) == (True, "max_duration")


def test_a_set_token_cancels_before_anything_is_read(site: Site) -> None:
    write(site.root / "a.txt", b"x")
    cancel = threading.Event()
    cancel.set()
    before = _open_fds()
    scan = walk(site.root, limits(), cancel=cancel, progress=None, policy=site.policy())
    with pytest.raises(Cancelled):
        next(scan)
    assert scan.files == 0
    assert _open_fds() == before


def test_cancelling_mid_walk_stops_it_and_releases_its_directories(site: Site) -> None:
    for d in range(20):
        for f in range(3):
            write(site.root / f"d{d:02}" / "deeper" / f"{f}.txt", b"x")
    cancel = threading.Event()
    before = _open_fds()
    scan = walk(site.root, limits(), cancel=cancel, progress=None, policy=site.policy())
    seen = 0

    def consume() -> None:
        nonlocal seen
        for _ in scan:
            seen += 1
            if seen == 4:
                cancel.set()

    with pytest.raises(Cancelled):
        consume()
    assert 4 <= seen < 60
    assert _open_fds() == before


def test_leaving_a_walk_early_closes_its_directories(site: Site) -> None:
    for d in range(5):
        write(site.root / f"d{d}" / "x" / "y" / "f.txt", b"x")
    before = _open_fds()
    with walk(site.root, limits(), cancel=never(), progress=None, policy=site.policy()) as scan:
        next(scan)
        assert _open_fds() > before
    assert _open_fds() == before


def test_progress_is_reported_at_the_end(site: Site) -> None:
    write(site.root / "a" / "b.txt", b"x")
    reports: list[tuple[int, str]] = []
    scan = walk(
        site.root,
        limits(),
        cancel=never(),
        progress=lambda n, m: reports.append((n, m)),
        policy=site.policy(),
    )
    list(scan)
    assert reports[-1] == (1, "walked 1 files in 2 directories")


def test_a_directory_swapped_for_a_symlink_during_the_walk_is_not_followed(site: Site) -> None:
    write(site.root / "first.txt", b"x")
    write(site.root / "sub" / "mine.txt", b"x")
    untouched = Untouched.capture(site.outside)
    scan = walk(site.root, limits(), cancel=never(), progress=None, policy=site.policy())
    assert next(scan).path == site.root / "first.txt"
    # The root's listing may or may not have reached "sub" yet: either way it is not followed.
    (site.root / "sub").rename(site.root.parent / "moved")
    (site.root / "sub").symlink_to(site.outside)
    assert list(scan) == []
    assert scan.skipped == 1
    untouched.check()


# -- limits_from -----------------------------------------------------------------------------


def test_unset_limits_take_the_configured_defaults(site: Site) -> None:
    settings = site.settings(default_max_depth=7, default_max_files=99, default_max_seconds=5.0)
    assert limits_from(None, settings) == limits(
        max_depth=7, max_files=99, max_seconds=5.0, include_hidden=False
    )
    asked = pb.ScanLimits(
        max_depth=3, max_files=10, max_duration=Duration(seconds=2, nanos=500_000_000)
    )
    asked.include_hidden = True
    assert limits_from(asked, settings) == limits(
        max_depth=3, max_files=10, max_seconds=2.5, include_hidden=True
    )


@pytest.mark.parametrize(
    ("asked", "field"),
    [
        (pb.ScanLimits(max_depth=65), "limits.max_depth"),
        (pb.ScanLimits(max_files=2_000_001), "limits.max_files"),
        (pb.ScanLimits(max_duration=Duration(seconds=601)), "limits.max_duration"),
        (pb.ScanLimits(max_duration=Duration(seconds=-1)), "limits.max_duration"),
    ],
)
def test_limits_above_the_maxima_are_invalid_arguments(
    site: Site, asked: pb.ScanLimits, field: str
) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        limits_from(asked, site.settings())
    assert refused.value.field == field


def test_walking_a_path_that_is_no_longer_a_directory_fails_cleanly(site: Site) -> None:
    target = write(site.root / "file", b"x")
    scan = walk(target, limits(), cancel=never(), progress=None, policy=site.policy())
    with pytest.raises(InvalidArgumentError, match="cannot be opened as a directory"):
        next(scan)


def test_file_info_becomes_an_api_file_entry(site: Site) -> None:
    path = write(site.root / "f.bin", b"12345", age_days=2)
    (info,) = walk(site.root, limits(), cancel=never(), progress=None, policy=site.policy())
    entry = info.entry()
    assert entry.path == str(path)
    assert entry.size_bytes == 5
    assert entry.modified_at.ToNanoseconds() == path.stat().st_mtime_ns


def test_entries_are_absolute_paths_under_the_walked_root(site: Site) -> None:
    write(site.root / "x" / "y.txt", b"x")
    (info,) = walk(site.root, limits(), cancel=never(), progress=None, policy=site.policy())
    assert info.path == Path(site.root, "x", "y.txt")
    assert info.path.is_absolute()
