"""ReniceProcesses' rules (whose processes, how many, how far) and the ReclaimMemory report."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import psutil
import pytest

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.reclaim import ReclaimResult, parse_request, parse_result, reclaim
from sutazai.runtime.settings import HardwareSettings
from sutazai.services.hardware.errors import InvalidArgumentError, PreconditionError
from sutazai.services.hardware.host import ProcessSample
from sutazai.services.hardware.processes import apply_nice, reclaim_report, renice

ME = 1000


def proc(pid: int, **fields: object) -> ProcessSample:
    base = ProcessSample(
        pid=pid,
        ppid=100,
        uid=ME,
        username="me",
        name=f"p{pid}",
        create_time=1.0,
        cpu_percent=80.0,
        rss_bytes=1,
        memory_percent=0.1,
        nice=0,
        kernel_thread=False,
        mesh=False,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_only_the_users_own_non_mesh_non_system_hogs_are_chosen() -> None:
    processes = [
        proc(10, cpu_percent=90),
        proc(11, uid=0),
        proc(12, uid=1001),
        proc(13, mesh=True),
        proc(14, kernel_thread=True),
        proc(15, name="systemd"),
        proc(16, cpu_percent=5),
        proc(17, nice=15),
        proc(1),
        proc(18, cpu_percent=70),
    ]
    applied: list[tuple[int, int]] = []

    report = renice(
        pb.ReniceProcessesRequest(dry_run=False),
        settings=HardwareSettings(),
        processes=lambda: processes,
        own_uid=ME,
        apply=lambda p, nice: applied.append((p.pid, nice)),
    )

    assert applied == [(10, 10), (18, 10)]
    assert [c.target for c in report.changes] == ["pid 10 p10", "pid 18 p18"]
    assert (report.dry_run, report.changed, report.failed) == (False, 2, 0)


def test_a_dry_run_is_the_default_and_changes_nothing() -> None:
    applied: list[int] = []

    report = renice(
        pb.ReniceProcessesRequest(),
        settings=HardwareSettings(),
        processes=lambda: [proc(10)],
        own_uid=ME,
        apply=lambda p, nice: applied.append(p.pid),
    )

    assert report.dry_run
    assert applied == []
    assert report.changed == 1


def test_limits_and_niceness_are_taken_from_the_request() -> None:
    applied: list[tuple[int, int]] = []
    report = renice(
        pb.ReniceProcessesRequest(min_cpu_percent=50, max_processes=1, nice=5, dry_run=False),
        settings=HardwareSettings(),
        processes=lambda: [
            proc(10, cpu_percent=60),
            proc(11, cpu_percent=99),
            proc(12, cpu_percent=40),
        ],
        own_uid=ME,
        apply=lambda p, nice: applied.append((p.pid, nice)),
    )
    assert applied == [(11, 5)]
    assert "niceness 0 -> 5" in report.changes[0].reason


def test_a_failed_change_is_reported_not_raised() -> None:
    def refuse(process: ProcessSample, nice: int) -> None:
        raise psutil.NoSuchProcess(process.pid)

    report = renice(
        pb.ReniceProcessesRequest(dry_run=False),
        settings=HardwareSettings(),
        processes=lambda: [proc(10)],
        own_uid=ME,
        apply=refuse,
    )
    assert (report.changed, report.failed) == (0, 1)
    assert report.changes[0].error == "the process ended"


def test_as_root_nothing_is_reniced() -> None:
    with pytest.raises(PreconditionError):
        renice(
            pb.ReniceProcessesRequest(),
            settings=HardwareSettings(),
            processes=lambda: [proc(10, uid=0)],
            own_uid=0,
        )


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ReniceProcessesRequest(nice=20), "nice"),
        (pb.ReniceProcessesRequest(nice=-5), "nice"),
        (pb.ReniceProcessesRequest(max_processes=21), "max_processes"),
        (pb.ReniceProcessesRequest(min_cpu_percent=-1), "min_cpu_percent"),
        (pb.ReniceProcessesRequest(min_cpu_percent=float("nan")), "min_cpu_percent"),
    ],
)
def test_out_of_range_fields_are_refused(request_: pb.ReniceProcessesRequest, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        renice(request_, settings=HardwareSettings(), processes=list, own_uid=ME)
    assert refused.value.field == field


@pytest.mark.integration  # starts a process of its own
def test_apply_nice_really_lowers_a_child_s_priority_and_checks_it_first() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ps = psutil.Process(child.pid)
        sample = proc(child.pid, uid=ps.uids().real, create_time=ps.create_time(), nice=ps.nice())
        apply_nice(sample, 12)
        assert ps.nice() == 12
        with pytest.raises(PreconditionError):
            apply_nice(sample, 12)  # already there: never raised again
        with pytest.raises(PreconditionError):
            apply_nice(replace(sample, create_time=1.0), 15)  # the pid names another process
    finally:
        child.kill()
        child.wait()


def test_reclaim_collects_once_per_interval_and_a_dry_run_never() -> None:
    clock = [1_000_000.0]
    dry = reclaim("svc", dry_run=True, clock=lambda: clock[0])
    assert dry.skipped == "dry run"
    assert dry.pid == os.getpid()

    done = reclaim("svc", dry_run=False, clock=lambda: clock[0])
    again = reclaim("svc", dry_run=False, clock=lambda: clock[0] + 1)
    assert not done.skipped
    assert done.rss_after_bytes > 0
    assert again.skipped.startswith("ran less than")


def test_reclaim_requests_and_answers_are_parsed_strictly() -> None:
    answer = (
        b'{"request_id": "r1", "service": "x", "pid": 5, "rss_before_bytes": 10, '
        b'"rss_after_bytes": 4}'
    )
    assert parse_result(answer, "r1") == ReclaimResult("x", 5, 10, 4)
    assert parse_result(answer, "r2") is None  # another asker's
    assert parse_result(b"[]", "r1") is None
    assert parse_result(b'{"request_id": "r1", "pid": "x"}', "r1") is None
    assert parse_result(b"x" * 5000, "r1") is None
    assert parse_request(b'{"request_id": "r1", "dry_run": false}') == ("r1", False)
    assert parse_request(b'{"request_id": "r1"}') == ("r1", True)
    assert parse_request(b'{"request_id": "r1", "dry_run": "no"}') == ("r1", True)
    assert parse_request(b'{"dry_run": false}') is None
    assert parse_request(b"not json") is None


def test_the_reclaim_report_sums_each_process() -> None:
    results = [
        ReclaimResult("chat", 10, 100, 60, collected=5, trimmed=True),
        ReclaimResult("auth", 11, 50, 50, skipped="ran less than 5 s ago"),
    ]

    reply = reclaim_report(results, dry_run=False)

    assert (reply.rss_before_bytes, reply.rss_after_bytes) == (150, 110)
    assert reply.report.bytes_freed == 40
    assert [c.target for c in reply.report.changes] == ["pid 10 chat", "pid 11 auth"]
    assert "malloc_trim" in reply.report.changes[0].reason
    dry = reclaim_report(results, dry_run=True)
    assert dry.rss_after_bytes == dry.rss_before_bytes
    assert dry.report.bytes_freed == 0
