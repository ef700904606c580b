"""AnalyzeStorage, FindDuplicates, FindLargeFiles and GetStorageReport on a known tree."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.services.hardware.analysis import analyze
from sutazai.services.hardware.duplicates import (
    Candidates,
    HashCache,
    cache_key,
    find_duplicates,
    hash_candidates,
    hash_file,
)
from sutazai.services.hardware.errors import (
    Cancelled,
    InvalidArgumentError,
    InvalidPathError,
    PathRefusedError,
)
from sutazai.services.hardware.large_files import find_large_files
from sutazai.services.hardware.report import storage_report
from sutazai.services.hardware.walk import walk
from tests.hardware.conftest import Site, Untouched, limits, never, write

MIB = 1024 * 1024
NOW = time.time_ns()
A = b"a" * (2 * MIB)
B = b"b" * (2 * MIB)
NOTE = b"n" * 100


def clock() -> int:
    return NOW


def build_tree(root: Path, outside: Path) -> None:
    """The known tree: 12 files, two duplicate groups, one hidden directory and one symlink."""
    write(root / "logs" / "app.log", b"l" * 2000, age_days=10, now_ns=NOW)
    write(root / "logs" / "old.LOG", b"o" * 500, age_days=400, now_ns=NOW)
    write(root / "data" / "a.bin", A, age_days=1, now_ns=NOW)
    write(root / "data" / "copy-of-a.bin", A, age_days=3, now_ns=NOW)
    write(root / "data" / "b.bin", B, age_days=40, now_ns=NOW)
    write(root / "notes" / "readme", b"r" * 100, age_days=0.1, now_ns=NOW)
    write(root / "notes" / ".profile", b"p" * 10, age_days=0.1, now_ns=NOW)
    write(root / "notes" / "x.TXT", NOTE, age_days=0.5, now_ns=NOW)
    write(root / "notes" / "y.txt", NOTE, age_days=0.2, now_ns=NOW)
    write(root / "empty1.tmp", b"", age_days=2, now_ns=NOW)
    write(root / "empty2.tmp", b"", age_days=2, now_ns=NOW)
    big = write(root / "big.iso", b"", now_ns=NOW)
    os.truncate(big, 150 * MIB)  # sparse: no real disk use
    aged = NOW - 100 * 86_400 * 10**9
    os.utime(big, ns=(aged, aged))
    write(root / ".cache" / "hidden.bin", A)  # a hidden directory: not walked
    (root / "secret-link").symlink_to(outside / "secret.txt")


@pytest.fixture
def tree(site: Site) -> Site:
    build_tree(site.root, site.outside)
    return site


def _analyze(site: Site, path: str = "", **kwargs: Any) -> pb.AnalyzeStorageResponse:
    return analyze(
        pb.AnalyzeStorageRequest(path=path, **kwargs),
        policy=site.policy(),
        settings=site.settings(),
        cancel=never(),
        progress=None,
        clock=clock,
    )


def _duplicates(
    site: Site, cache: HashCache | None = None, **kwargs: Any
) -> pb.FindDuplicatesResponse:
    return find_duplicates(
        pb.FindDuplicatesRequest(**kwargs),
        policy=site.policy(),
        settings=site.settings(),
        cache=cache if cache is not None else HashCache(100),
        cancel=never(),
        progress=None,
    )


def _large(site: Site, **kwargs: Any) -> pb.FindLargeFilesResponse:
    return find_large_files(
        pb.FindLargeFilesRequest(**kwargs),
        policy=site.policy(),
        settings=site.settings(),
        cancel=never(),
        progress=None,
    )


def _usage(items: Any) -> list[tuple[str, int, int]]:
    return [
        (getattr(i, "extension", None) or getattr(i, "label", ""), i.files, i.bytes) for i in items
    ]


# -- AnalyzeStorage --------------------------------------------------------------------------


def test_analysis_of_the_known_tree_is_exact(tree: Site) -> None:
    untouched = Untouched.capture(tree.outside)
    result = _analyze(tree)
    assert result.total_files == 12
    assert result.total_bytes == 150 * MIB + 3 * 2 * MIB + 2000 + 500 + 100 + 10 + 100 + 100
    assert [(e.extension, e.files, e.bytes) for e in result.by_extension] == [
        (".iso", 1, 150 * MIB),
        (".bin", 3, 6 * MIB),
        (".log", 2, 2500),
        (".txt", 2, 200),
        ("", 2, 110),
        (".tmp", 2, 0),
    ]
    assert [(b.label, b.files, b.bytes) for b in result.by_size] == [
        ("<1KiB", 7, 810),
        ("1KiB-1MiB", 1, 2000),
        ("1MiB-100MiB", 3, 6 * MIB),
        (">=100MiB", 1, 150 * MIB),
    ]
    assert [(b.label, b.files, b.bytes) for b in result.by_age] == [
        ("<7d", 8, 4 * MIB + 310),
        ("7d-30d", 1, 2000),
        ("30d-365d", 2, 2 * MIB + 150 * MIB),
        (">=365d", 1, 500),
    ]
    assert result.scan.resolved_path == str(tree.root)
    assert (result.scan.files_scanned, result.scan.directories_scanned) == (12, 4)
    assert result.scan.entries_skipped == 2  # the hidden directory and the symlink
    assert not result.scan.truncated
    untouched.check()


def test_analysis_of_a_sub_directory_by_relative_path(tree: Site) -> None:
    result = _analyze(tree, "logs")
    assert result.scan.resolved_path == str(tree.root / "logs")
    assert [(e.extension, e.files, e.bytes) for e in result.by_extension] == [(".log", 2, 2500)]


def test_analysis_stops_at_max_files_and_says_so(tree: Site) -> None:
    result = _analyze(tree, limits=pb.ScanLimits(max_files=3))
    assert result.total_files == 3
    assert (result.scan.truncated, result.scan.truncated_by) == (True, "max_files")


def test_analysis_stops_at_max_duration_and_says_so(tree: Site) -> None:
    result = _analyze(tree, limits=pb.ScanLimits(max_duration=Duration(nanos=1)))
    assert (result.scan.truncated, result.scan.truncated_by) == (True, "max_duration")
    assert result.total_files < 12


def test_analysis_depth_limit(tree: Site) -> None:
    # Depth 1 would still reach every file of this tree; the hidden directory stays out.
    shallow = _analyze(tree, limits=pb.ScanLimits(max_depth=1, include_hidden=True))
    assert shallow.total_files == 13
    write(tree.root / "data" / "deep" / "deeper" / "f.bin", b"x")
    assert _analyze(tree, limits=pb.ScanLimits(max_depth=2)).total_files == 12
    assert _analyze(tree, limits=pb.ScanLimits(max_depth=3)).total_files == 13


def test_analysis_with_a_cancelled_token_raises(tree: Site) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        analyze(
            pb.AnalyzeStorageRequest(),
            policy=tree.policy(),
            settings=tree.settings(),
            cancel=cancel,
            progress=None,
        )


def test_a_file_name_that_is_not_utf8_is_counted_and_shown_escaped(site: Site) -> None:
    name = os.fsdecode(b"bad\xff.dat")
    write(site.root / name, b"12345")
    result = _analyze(site)
    assert result.total_files == 1
    large = _large(site, min_size_bytes=1)
    assert large.files[0].path == str(site.root) + "/bad\\xff.dat"


# -- FindDuplicates --------------------------------------------------------------------------


def test_duplicates_of_the_known_tree_are_exact(tree: Site) -> None:
    untouched = Untouched.capture(tree.outside)
    result = _duplicates(tree)
    groups = [
        (g.size_bytes, g.wasted_bytes, [Path(f.path).name for f in g.files]) for g in result.groups
    ]
    assert groups == [
        (2 * MIB, 2 * MIB, ["a.bin", "copy-of-a.bin"]),  # newest first
        (100, 100, ["y.txt", "x.TXT"]),
    ]
    assert result.groups[0].sha256 == hashlib.sha256(A).hexdigest()
    assert result.groups[1].sha256 == hashlib.sha256(NOTE).hexdigest()
    assert result.groups[0].files[0].modified_at.ToNanoseconds() == NOW - 86_400 * 10**9
    assert (result.total_groups, result.total_wasted_bytes) == (2, 2 * MIB + 100)
    # Only same-size files are read: the three 2 MiB files and the three 100-byte ones.
    assert (result.files_hashed, result.cache_hits) == (6, 0)
    assert result.scan.files_scanned == 12
    untouched.check()


def test_duplicates_bounded_by_max_groups_and_min_size(tree: Site) -> None:
    first = _duplicates(tree, max_groups=1)
    assert [g.size_bytes for g in first.groups] == [2 * MIB]
    assert (first.total_groups, first.total_wasted_bytes) == (2, 2 * MIB + 100)
    large_only = _duplicates(tree, min_size_bytes=1000)
    assert [g.size_bytes for g in large_only.groups] == [2 * MIB]
    assert large_only.files_hashed == 3
    with pytest.raises(InvalidArgumentError) as refused:
        _duplicates(tree, max_groups=1001)
    assert refused.value.field == "max_groups"


def test_the_hash_cache_hits_on_a_second_run_and_misses_after_a_change(tree: Site) -> None:
    cache = HashCache(100)
    assert _duplicates(tree, cache).files_hashed == 6
    again = _duplicates(tree, cache)
    assert (again.files_hashed, again.cache_hits) == (0, 6)
    assert len(again.groups) == 2
    # A new modification time is a miss for that file only.
    b = tree.root / "data" / "b.bin"
    os.utime(b, ns=(NOW, NOW))
    touched = _duplicates(tree, cache)
    assert (touched.files_hashed, touched.cache_hits) == (1, 5)


def test_a_rewrite_with_its_modification_time_put_back_is_a_miss(tree: Site) -> None:
    cache = HashCache(100)
    _duplicates(tree, cache)
    y = tree.root / "notes" / "y.txt"
    mtime = y.stat().st_mtime_ns
    y.write_bytes(b"Z" * 100)  # same size, other content
    os.utime(y, ns=(mtime, mtime))
    result = _duplicates(tree, cache)
    assert (result.files_hashed, result.cache_hits) == (1, 5)
    assert [g.size_bytes for g in result.groups] == [2 * MIB]


def test_hard_links_count_once(site: Site) -> None:
    original = write(site.root / "one.bin", A)
    os.link(original, site.root / "two.bin")
    alone = _duplicates(site)
    assert (alone.total_groups, alone.files_hashed) == (0, 0)
    write(site.root / "copy.bin", A)
    result = _duplicates(site)
    assert [Path(f.path).name for f in result.groups[0].files] == ["copy.bin", "one.bin"]
    assert result.groups[0].wasted_bytes == 2 * MIB


def test_the_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    cache = HashCache(2)
    cache.put((1, 1, 1, 1, 1), b"a")
    cache.put((2, 2, 2, 2, 2), b"b")
    assert cache.get((1, 1, 1, 1, 1)) == b"a"
    cache.put((3, 3, 3, 3, 3), b"c")
    assert cache.get((2, 2, 2, 2, 2)) is None
    assert cache.get((1, 1, 1, 1, 1)) == b"a"
    assert len(cache) == 2
    off = HashCache(0)
    off.put((1, 1, 1, 1, 1), b"a")
    assert len(off) == 0


def test_a_file_swapped_after_the_walk_is_not_hashed(site: Site) -> None:
    path = write(site.root / "f.bin", b"content")
    policy = site.policy()
    (info,) = walk(site.root, limits(), cancel=never(), progress=None, policy=policy)
    assert hash_file(info, cancel=never()) is not None
    untouched = Untouched.capture(site.outside)
    path.unlink()
    path.symlink_to(site.outside / "secret.txt")
    assert hash_file(info, cancel=never()) is None
    path.unlink()
    os.mkfifo(path)  # would block a plain open for reading
    assert hash_file(info, cancel=never()) is None
    path.unlink()
    path.write_bytes(b"content")  # the same bytes, another inode
    assert hash_file(info, cancel=never()) is None
    untouched.check()


def test_hashing_stops_when_cancelled_or_out_of_time(tree: Site) -> None:
    policy = tree.policy()
    candidates = Candidates(1)
    for info in walk(tree.root, limits(), cancel=never(), progress=None, policy=policy):
        candidates.add(info)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        hash_candidates(
            candidates, cache=HashCache(10), cancel=cancel, progress=None, deadline=1e18
        )
    groups, hashed, hits, out_of_time = hash_candidates(
        candidates, cache=HashCache(10), cancel=never(), progress=None, deadline=0.0
    )
    assert (groups, hashed, hits, out_of_time) == ([], 0, 0, True)


def test_a_search_out_of_time_while_hashing_is_truncated(tree: Site) -> None:
    # A one-nanosecond budget: the walk, or at the latest the hashing, runs out of it.
    result = _duplicates(tree, limits=pb.ScanLimits(max_duration=Duration(nanos=1)))
    assert (result.scan.truncated, result.scan.truncated_by) == (True, "max_duration")


def test_cache_keys_carry_device_inode_size_and_times(site: Site) -> None:
    path = write(site.root / "f", b"x")
    (info,) = walk(site.root, limits(), cancel=never(), progress=None, policy=site.policy())
    st = path.stat()
    assert cache_key(info) == (st.st_dev, st.st_ino, 1, st.st_mtime_ns, st.st_ctime_ns)


# -- FindLargeFiles --------------------------------------------------------------------------


def test_large_files_of_the_known_tree_are_exact(tree: Site) -> None:
    result = _large(tree, min_size_bytes=MIB, max_files=2)
    assert [(Path(f.path).name, f.size_bytes) for f in result.files] == [
        ("big.iso", 150 * MIB),
        ("a.bin", 2 * MIB),  # equal sizes: the path that sorts first
    ]
    assert (result.total_files, result.total_bytes) == (4, 150 * MIB + 6 * MIB)
    default = _large(tree)
    assert [Path(f.path).name for f in default.files] == ["big.iso"]
    assert default.files[0].path == str(tree.root / "big.iso")
    every = _large(tree, min_size_bytes=1, max_files=1000)
    sizes = [f.size_bytes for f in every.files]
    assert sizes == sorted(sizes, reverse=True)
    assert len(sizes) == every.total_files == 10
    with pytest.raises(InvalidArgumentError) as refused:
        _large(tree, max_files=1001)
    assert refused.value.field == "max_files"


# -- attacks through each operation ----------------------------------------------------------

OPERATIONS = ["analyze", "duplicates", "large"]


def _run(operation: str, site: Site, path: str) -> object:
    if operation == "analyze":
        return _analyze(site, path)
    if operation == "duplicates":
        return _duplicates(site, path=path)
    return _large(site, path=path, min_size_bytes=1)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_operation_refuses_paths_out_and_reads_nothing_outside(
    tree: Site, operation: str
) -> None:
    (tree.root / "dir-link").symlink_to(tree.outside)
    write(tree.outside / "a-copy.bin", A)  # would be a duplicate if it were read
    untouched = Untouched.capture(tree.outside)
    refused = [
        "..",
        "../outside",
        str(tree.outside),
        "dir-link",
        "secret-link",
        "/etc",
        str(tree.state),
        "data/../../outside",
    ]
    for raw in refused:
        with pytest.raises(PathRefusedError):
            _run(operation, tree, raw)
    for raw in ("%2e%2e/outside", "\uff0e\uff0e/outside", "data\x00", "..%2f..%2fetc"):
        with pytest.raises(InvalidPathError):
            _run(operation, tree, raw)
    with pytest.raises(InvalidPathError, match="not a directory"):
        _run(operation, tree, "data/a.bin")
    # The root itself, with links pointing out of it, reads nothing outside either.
    _run(operation, tree, "")
    untouched.check()


# -- GetStorageReport ------------------------------------------------------------------------


def test_the_storage_report_covers_each_root_with_one_walk(tree: Site) -> None:
    reports: list[str] = []
    result = storage_report(
        policy=tree.policy(),
        settings=tree.settings(),
        cache=HashCache(100),
        cancel=never(),
        progress=lambda _n, message: reports.append(message),
        clock=clock,
    )
    assert result.generated_at.ToNanoseconds() == NOW
    assert [r.root for r in result.roots] == [str(tree.root), str(tree.logs)]
    root = result.roots[0]
    expected = _analyze(tree)
    root.analysis.scan.ClearField("elapsed")
    expected.scan.ClearField("elapsed")
    assert root.analysis == expected
    assert [g.size_bytes for g in root.top_duplicates] == [2 * MIB, 100]
    assert [Path(f.path).name for f in root.largest_files][:2] == ["big.iso", "a.bin"]
    assert len(root.largest_files) == 10
    assert root.disk.total_bytes > 0
    assert root.disk.mountpoint
    assert Path(root.disk.mountpoint) in [tree.root, *tree.root.parents]
    logs = result.roots[1]
    assert logs.analysis.total_files == 1
    assert any(m.startswith("root 1 of 2: ") for m in reports)
    assert any(m.startswith("root 2 of 2: ") for m in reports)
