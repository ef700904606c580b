"""The hardware service and agent on the real mesh, through Envoy (gRPC and REST).

Storage tests make their own tree under the test mesh's one allowed root
(:func:`tests.harness.mesh.hardware_root`) and a directory outside it that must never change.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil
import pytest
from google.protobuf import json_format, struct_pb2

from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.auth.v1.auth_service_pb2_grpc import AuthServiceStub
from sutazai.client import FileTokenStore, SessionTokens
from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.hardware.v1.hardware_service_pb2_grpc import HardwareServiceStub
from sutazai.runtime.settings import MeshSettings
from sutazai.tasks.v1 import task_service_pb2 as tasks_pb
from sutazai.tasks.v1.task_service_pb2_grpc import TaskServiceStub
from tests.auth.helpers import bearer, error_info, failure
from tests.harness.cli import run_cli
from tests.harness.mesh import hardware_root
from tests.harness.waiting import wait_for

TIMEOUT = 14.0
"""Under Envoy's 15 s unary limit."""
DAY = 86_400
SERVICE = "/sutazai.hardware.v1.HardwareService"


@pytest.fixture
async def channel(mesh_services: MeshSettings) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh_services.envoy.port}") as opened:
        yield opened


@pytest.fixture
def hardware(channel: grpc.aio.Channel) -> HardwareServiceStub:
    return HardwareServiceStub(channel)


@pytest.fixture
async def rest(mesh_services: MeshSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{mesh_services.envoy.port}", timeout=TIMEOUT
    ) as client:
        yield client


@pytest.fixture
def tree(mesh_services: MeshSettings) -> Iterator[Path]:
    """A fresh tree of known files under the allowed root (see :func:`make_tree`)."""
    base = hardware_root(mesh_services.state_dir) / f"t{uuid.uuid4().hex[:8]}"
    make_tree(base)
    yield base.resolve()  # as the service reports it
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside every allowed root, with an old file a cleanup would pick."""
    base = Path(tempfile.mkdtemp(prefix="sutazai-outside-"))
    write(base / "secret.log", b"do not touch", age_days=400)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def write(path: Path, data: bytes, *, age_days: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))


SAME_LOG = b"L" * 1000
SAME_DAT = b"D" * 5000


def make_tree(base: Path) -> None:
    """7 files: two duplicate pairs, one large file, logs and temp files of known ages."""
    write(base / "a.log", SAME_LOG, age_days=40)
    write(base / "b.txt", b"B" * 2000, age_days=1)
    write(base / "sub" / "c.log", SAME_LOG, age_days=2)
    write(base / "sub" / "d.bin", os.urandom(2 * 2**20), age_days=0)
    write(base / "sub" / "deeper" / "e.tmp", b"E" * 10, age_days=10)
    write(base / "dup1.dat", SAME_DAT, age_days=5)
    write(base / "sub" / "dup2.dat", SAME_DAT, age_days=3)


def snapshot(base: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry under ``base`` (symlinks not followed): content hash, mode, file mtime."""
    found = {}
    for directory, dirs, files in os.walk(base, followlinks=False):
        for name in [*files, *dirs]:
            path = Path(directory) / name
            stat = path.lstat()
            digest = ""
            if path.is_file() and not path.is_symlink():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_symlink():
                digest = f"-> {os.readlink(path)}"
            # A directory's own mtime changes whenever an entry moves in or out: not compared.
            mtime = 0 if path.is_dir() and not path.is_symlink() else stat.st_mtime_ns
            found[str(path.relative_to(base))] = (digest, stat.st_mode, mtime)
    return found


async def who(channel: grpc.aio.Channel, token: str) -> str:
    reply = await AuthServiceStub(channel).GetMe(
        auth_pb.GetMeRequest(), metadata=bearer(token), timeout=TIMEOUT
    )
    return str(reply.user.username)


# Measurements -----------------------------------------------------------------------------


def assert_matches_psutil(sample: dict[str, object]) -> None:
    """A sample (proto JSON) against psutil, read now: what cannot change, exactly."""
    memory = psutil.virtual_memory()
    cpu = sample["cpu"]
    mem = sample["memory"]
    assert isinstance(cpu, dict)
    assert isinstance(mem, dict)
    assert int(mem["total_bytes"]) == memory.total
    assert abs(int(mem["available_bytes"]) - memory.available) < 0.1 * memory.total
    assert abs(float(mem["percent"]) - memory.percent) < 10
    assert cpu["logical_cores"] == psutil.cpu_count()
    assert len(cpu["per_core_percent"]) == psutil.cpu_count()
    assert 0 <= float(cpu["percent"]) <= 100
    assert abs(float(cpu["load_1m"]) - os.getloadavg()[0]) < 2
    disks = sample["disks"]
    assert isinstance(disks, list)
    assert disks
    for disk in disks:
        assert int(disk["total_bytes"]) == psutil.disk_usage(disk["mountpoint"]).total
    uptime = float(str(sample["uptime"]).rstrip("s"))
    assert abs(uptime - (time.time() - psutil.boot_time())) < 10
    interfaces = {n["interface"] for n in sample["networks"]}  # type: ignore[attr-defined]
    assert interfaces == set(psutil.net_io_counters(pernic=True))


async def test_status_over_rest_is_this_host_now(rest: httpx.AsyncClient, user_token: str) -> None:
    reply = await rest.get("/v1/hardware/status", headers={"authorization": f"Bearer {user_token}"})

    assert reply.status_code == 200, reply.text
    sample = reply.json()["sample"]
    assert_matches_psutil(sample)
    processes = sample["top_processes"]
    assert 1 <= len(processes) <= 10
    assert any(p["mesh"] for p in psutil_alive(processes))
    cpu = [p["cpu_percent"] for p in processes]
    assert cpu == sorted(cpu, reverse=True)


def psutil_alive(processes: list[dict[str, object]]) -> list[dict[str, object]]:
    return [p for p in processes if psutil.pid_exists(int(str(p["pid"])))]


async def test_status_over_grpc_and_anonymous_callers_are_refused(
    hardware: HardwareServiceStub, rest: httpx.AsyncClient, user_token: str
) -> None:
    reply = await hardware.GetStatus(
        pb.GetStatusRequest(top_processes=3), metadata=bearer(user_token), timeout=TIMEOUT
    )
    assert_matches_psutil(json_format.MessageToDict(reply.sample, preserving_proto_field_name=True))
    assert len(reply.sample.top_processes) == 3

    anonymous = await rest.get("/v1/hardware/status")
    assert anonymous.status_code == 401


async def test_watch_metrics_streams_samples_at_the_interval(
    hardware: HardwareServiceStub, user_token: str
) -> None:
    request = pb.WatchMetricsRequest(top_processes=2)
    request.interval.FromMilliseconds(300)
    call = hardware.WatchMetrics(request, metadata=bearer(user_token))
    samples: list[pb.HostSample] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            async for message in call:
                if message.HasField("sample"):
                    samples.append(message.sample)
                if len(samples) == 4:
                    break
    finally:
        call.cancel()

    times = [s.sampled_at.ToNanoseconds() / 1e9 for s in samples]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.2 <= gap <= 2.0 for gap in gaps), gaps
    assert all(len(s.top_processes) == 2 for s in samples)
    assert all(s.memory.total_bytes == psutil.virtual_memory().total for s in samples)


async def test_watch_metrics_over_rest_is_ndjson(rest: httpx.AsyncClient, user_token: str) -> None:
    lines: list[dict[str, object]] = []
    async with rest.stream(
        "GET",
        "/v1/hardware/metrics:watch",
        params={"interval": "0.3s"},
        headers={"authorization": f"Bearer {user_token}"},
    ) as reply:
        assert reply.status_code == 200
        async for line in reply.aiter_lines():
            if line.strip():
                lines.append(json.loads(line))
            if len(lines) == 3:
                break
    assert all("sample" in line for line in lines)


async def test_a_bad_interval_is_refused(hardware: HardwareServiceStub, user_token: str) -> None:
    request = pb.WatchMetricsRequest()
    request.interval.FromMilliseconds(10)
    error = await failure(
        _first(hardware.WatchMetrics(request, metadata=bearer(user_token), timeout=TIMEOUT))
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


async def _first(call: grpc.aio.UnaryStreamCall[object, object]) -> None:
    async for _ in call:
        return


async def test_recommendations_carry_the_sample_they_judged(
    hardware: HardwareServiceStub, user_token: str
) -> None:
    reply = await hardware.GetRecommendations(
        pb.GetRecommendationsRequest(), metadata=bearer(user_token), timeout=TIMEOUT
    )
    assert reply.sample.memory.total_bytes == psutil.virtual_memory().total
    for item in reply.recommendations:
        assert item.reason
        assert item.measurements


async def test_advice_is_the_model_s_explanation_labelled_as_such(
    hardware: HardwareServiceStub, user_token: str
) -> None:
    answers: list[pb.GetAdviceResponse] = []

    async def answered() -> bool:
        # The embedded model may still be loading, or slow on a shared machine: within the
        # edge's 15 s a call either answers or is DEADLINE_EXCEEDED; ask again until one does.
        try:
            answers.append(
                await hardware.GetAdvice(
                    pb.GetAdviceRequest(question="Is memory a problem?"),
                    metadata=bearer(user_token),
                    timeout=TIMEOUT,
                )
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in {
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            }:
                raise
            return False
        return True

    await wait_for(answered, timeout=120, interval=0.5, message="advice from the model")
    reply = answers[-1]
    assert reply.label == "model output"
    assert reply.model
    assert reply.advice.strip()
    assert reply.sample.memory.total_bytes == psutil.virtual_memory().total

    refused = await failure(
        hardware.GetAdvice(
            pb.GetAdviceRequest(question="x" * 501), metadata=bearer(user_token), timeout=TIMEOUT
        )
    )
    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT


# Storage ----------------------------------------------------------------------------------


async def test_analysis_duplicates_and_large_files_are_exact(
    hardware: HardwareServiceStub, tree: Path, user_token: str
) -> None:
    analysis = await hardware.AnalyzeStorage(
        pb.AnalyzeStorageRequest(path=str(tree)), metadata=bearer(user_token), timeout=TIMEOUT
    )
    assert analysis.scan.resolved_path == str(tree)
    assert not analysis.scan.truncated
    assert analysis.total_files == 7
    assert analysis.total_bytes == 1000 + 2000 + 1000 + 2 * 2**20 + 10 + 5000 + 5000
    by_extension = {e.extension: (e.files, e.bytes) for e in analysis.by_extension}
    assert by_extension == {
        ".bin": (1, 2 * 2**20),
        ".dat": (2, 10_000),
        ".log": (2, 2000),
        ".txt": (1, 2000),
        ".tmp": (1, 10),
    }
    assert next(e.extension for e in analysis.by_extension) == ".bin"
    assert [(b.label, b.files) for b in analysis.by_size] == [
        ("<1KiB", 3),
        ("1KiB-1MiB", 3),
        ("1MiB-100MiB", 1),
        (">=100MiB", 0),
    ]
    assert [(b.label, b.files) for b in analysis.by_age] == [
        ("<7d", 5),
        ("7d-30d", 1),
        ("30d-365d", 1),
        (">=365d", 0),
    ]

    duplicates = await hardware.FindDuplicates(
        pb.FindDuplicatesRequest(path=str(tree)), metadata=bearer(user_token), timeout=TIMEOUT
    )
    assert (duplicates.total_groups, duplicates.total_wasted_bytes) == (2, 6000)
    groups = [[Path(f.path).name for f in g.files] for g in duplicates.groups]
    assert groups == [["dup2.dat", "dup1.dat"], ["c.log", "a.log"]]  # largest waste, newest first
    assert duplicates.groups[0].sha256 == hashlib.sha256(SAME_DAT).hexdigest()

    again = await hardware.FindDuplicates(
        pb.FindDuplicatesRequest(path=str(tree)), metadata=bearer(user_token), timeout=TIMEOUT
    )
    assert again.cache_hits >= 4
    assert again.files_hashed == 0

    large = await hardware.FindLargeFiles(
        pb.FindLargeFilesRequest(path=str(tree), min_size_bytes=2**20),
        metadata=bearer(user_token),
        timeout=TIMEOUT,
    )
    assert [Path(f.path).name for f in large.files] == ["d.bin"]
    assert (large.total_files, large.total_bytes) == (1, 2 * 2**20)
    some = await hardware.FindLargeFiles(
        pb.FindLargeFilesRequest(path=str(tree), min_size_bytes=1500, max_files=2),
        metadata=bearer(user_token),
        timeout=TIMEOUT,
    )
    assert (some.total_files, some.total_bytes) == (4, 2 * 2**20 + 12_000)
    assert len(some.files) == 2
    assert Path(some.files[0].path).name == "d.bin"


async def test_dry_run_lists_real_run_quarantines_restore_brings_back(
    hardware: HardwareServiceStub, channel: grpc.aio.Channel, tree: Path, operator_token: str
) -> None:
    before = snapshot(tree)
    request = pb.CleanFilesRequest(path=str(tree), older_than_days=7, patterns=["*.log", "*.tmp"])

    dry = await hardware.CleanFiles(request, metadata=bearer(operator_token), timeout=TIMEOUT)

    assert dry.report.dry_run
    targets = {Path(c.target).relative_to(tree).as_posix() for c in dry.report.changes}
    assert targets == {"a.log", "sub/deeper/e.tmp"}
    assert dry.report.bytes_freed == 1010
    assert snapshot(tree) == before  # nothing changed

    request.dry_run = False
    real = await hardware.CleanFiles(request, metadata=bearer(operator_token), timeout=TIMEOUT)

    assert not real.report.dry_run
    assert real.report.failed == 0
    assert {Path(c.target).relative_to(tree).as_posix() for c in real.report.changes} == targets
    assert not (tree / "a.log").exists()
    assert not (tree / "sub/deeper/e.tmp").exists()
    ids = [c.quarantine_id for c in real.report.changes]
    assert all(ids)
    listed = await hardware.ListQuarantine(
        pb.ListQuarantineRequest(page_size=1000), metadata=bearer(operator_token), timeout=TIMEOUT
    )
    mine = {f.entry_id: f for f in listed.files if f.entry_id in ids}
    assert set(mine) == set(ids)
    operator = await who(channel, operator_token)
    assert {f.actor for f in mine.values()} == {operator}
    assert {f.operation for f in mine.values()} == {"CleanFiles"}

    restored = await hardware.RestoreQuarantined(
        pb.RestoreQuarantinedRequest(entry_ids=ids),
        metadata=bearer(operator_token),
        timeout=TIMEOUT,
    )

    assert all(r.restored for r in restored.results), restored
    assert snapshot(tree) == before  # byte-identical, with mode and modification time


async def test_each_traversal_is_refused_and_nothing_is_touched(
    hardware: HardwareServiceStub,
    rest: httpx.AsyncClient,
    tree: Path,
    outside: Path,
    operator_token: str,
) -> None:
    (tree / "link_out").symlink_to(outside, target_is_directory=True)
    (tree / "file_out.log").symlink_to(outside / "secret.log")
    write(tree / "Documents" / "old.log", b"private", age_days=400)
    before, outside_before = snapshot(tree), snapshot(outside)
    attacks = {
        f"{tree}/../..": grpc.StatusCode.PERMISSION_DENIED,
        "../../..": grpc.StatusCode.PERMISSION_DENIED,
        str(outside): grpc.StatusCode.PERMISSION_DENIED,
        "/etc": grpc.StatusCode.PERMISSION_DENIED,
        f"{tree}/link_out": grpc.StatusCode.PERMISSION_DENIED,
        f"{tree}/Documents": grpc.StatusCode.PERMISSION_DENIED,
        f"{tree}/Documents/../Documents": grpc.StatusCode.PERMISSION_DENIED,
        f"{tree}/%2e%2e/%2e%2e": grpc.StatusCode.INVALID_ARGUMENT,
        f"{tree}/%252e%252e": grpc.StatusCode.INVALID_ARGUMENT,
        f"{tree}/\uff0e\uff0e/\uff0e\uff0e": grpc.StatusCode.INVALID_ARGUMENT,
        f"{tree}/sub\u2215..": grpc.StatusCode.INVALID_ARGUMENT,
        f"{tree}/a\x00b": grpc.StatusCode.INVALID_ARGUMENT,
    }
    for path, code in attacks.items():
        for call in (
            hardware.AnalyzeStorage(
                pb.AnalyzeStorageRequest(path=path),
                metadata=bearer(operator_token),
                timeout=TIMEOUT,
            ),
            hardware.CleanFiles(
                pb.CleanFilesRequest(path=path, older_than_days=1, dry_run=False),
                metadata=bearer(operator_token),
                timeout=TIMEOUT,
            ),
        ):
            error = await failure(call)
            assert error.code() is code, (path, error)
    rest_reply = await rest.post(
        "/v1/hardware/optimize/clean",
        json={"path": f"{tree}/../..", "older_than_days": 1, "dry_run": False},
        headers={"authorization": f"Bearer {operator_token}"},
    )
    assert rest_reply.status_code == 403

    # Cleaning the tree itself moves its own old files only: never a link, never its target,
    # never the protected Documents directory.
    real = await hardware.CleanFiles(
        pb.CleanFilesRequest(path=str(tree), older_than_days=30, dry_run=False),
        metadata=bearer(operator_token),
        timeout=TIMEOUT,
    )
    moved = {Path(c.target).relative_to(tree).as_posix() for c in real.report.changes}
    assert moved == {"a.log"}
    assert snapshot(outside) == outside_before
    after = snapshot(tree)
    del before["a.log"]
    assert after == before
    await hardware.RestoreQuarantined(
        pb.RestoreQuarantinedRequest(entry_ids=[c.quarantine_id for c in real.report.changes]),
        metadata=bearer(operator_token),
        timeout=TIMEOUT,
    )


async def test_a_name_that_only_starts_like_a_protected_one_is_allowed(
    hardware: HardwareServiceStub, tree: Path, user_token: str
) -> None:
    write(tree / "Documents_old" / "x.txt", b"x", age_days=1)
    write(tree / "usrdata" / "y.txt", b"y", age_days=1)
    for name in ("Documents_old", "usrdata"):
        reply = await hardware.AnalyzeStorage(
            pb.AnalyzeStorageRequest(path=str(tree / name)),
            metadata=bearer(user_token),
            timeout=TIMEOUT,
        )
        assert reply.total_files == 1


async def test_a_user_cannot_change_an_operator_can_and_both_are_audited(
    hardware: HardwareServiceStub,
    channel: grpc.aio.Channel,
    tree: Path,
    user_token: str,
    operator_token: str,
    admin_token: str,
) -> None:
    before = snapshot(tree)
    request = pb.CleanFilesRequest(path=str(tree), older_than_days=7, dry_run=False)
    refused = await failure(
        hardware.CleanFiles(request, metadata=bearer(user_token), timeout=TIMEOUT)
    )
    assert refused.code() is grpc.StatusCode.PERMISSION_DENIED
    assert snapshot(tree) == before
    for call in (
        hardware.Deduplicate(
            pb.DeduplicateRequest(path=str(tree)), metadata=bearer(user_token), timeout=TIMEOUT
        ),
        hardware.ListQuarantine(
            pb.ListQuarantineRequest(), metadata=bearer(user_token), timeout=TIMEOUT
        ),
        hardware.PurgeQuarantine(
            pb.PurgeQuarantineRequest(), metadata=bearer(operator_token), timeout=TIMEOUT
        ),
    ):
        assert (await failure(call)).code() is grpc.StatusCode.PERMISSION_DENIED

    request.dry_run = True
    allowed = await hardware.CleanFiles(request, metadata=bearer(operator_token), timeout=TIMEOUT)
    assert allowed.report.dry_run
    assert allowed.report.changed == 2

    user, operator = await who(channel, user_token), await who(channel, operator_token)
    auth = AuthServiceStub(channel)

    async def audited() -> bool:
        events = await auth.ListAuditEvents(
            auth_pb.ListAuditEventsRequest(action=f"{SERVICE}/CleanFiles", page_size=500),
            metadata=bearer(admin_token),
            timeout=TIMEOUT,
        )
        seen = {(e.actor, e.outcome) for e in events.events}
        return {(user, "PERMISSION_DENIED"), (operator, "ok")} <= seen

    await wait_for(audited, timeout=10, message="both CleanFiles calls in the audit log")


async def test_memory_is_reclaimed_in_the_mesh_s_own_processes(
    hardware: HardwareServiceStub, operator_token: str
) -> None:
    dry = await hardware.ReclaimMemory(
        pb.ReclaimMemoryRequest(), metadata=bearer(operator_token), timeout=TIMEOUT
    )
    assert dry.report.dry_run
    assert dry.rss_before_bytes == dry.rss_after_bytes > 0
    services = {c.target.split()[-1] for c in dry.report.changes}
    assert {"hardware", "auth", "tasks", "chat"} <= services

    real = await hardware.ReclaimMemory(
        pb.ReclaimMemoryRequest(dry_run=False), metadata=bearer(operator_token), timeout=TIMEOUT
    )
    assert not real.report.dry_run
    assert len(real.report.changes) == len(dry.report.changes)
    assert any("garbage collection" in c.reason for c in real.report.changes)


async def test_renice_never_touches_root_s_processes(
    hardware: HardwareServiceStub, operator_token: str
) -> None:
    call = hardware.ReniceProcesses(
        pb.ReniceProcessesRequest(), metadata=bearer(operator_token), timeout=TIMEOUT
    )
    if os.geteuid() == 0:  # the mesh runs as this test's user: root renices nobody
        assert (await failure(call)).code() is grpc.StatusCode.FAILED_PRECONDITION
    else:
        report = (await call).report
        assert report.dry_run
        assert all(not c.error for c in report.changes)


# Tasks ------------------------------------------------------------------------------------


def payload(**fields: Any) -> struct_pb2.Struct:
    document = struct_pb2.Struct()
    document.update(fields)
    return document


async def finished(tasks: TaskServiceStub, token: str, task_id: str) -> list[tasks_pb.Task]:
    seen: list[tasks_pb.Task] = []

    async def done() -> bool:
        reply = await tasks.GetTask(
            tasks_pb.GetTaskRequest(task_id=task_id), metadata=bearer(token), timeout=TIMEOUT
        )
        seen.append(reply.task)
        return reply.task.state in {
            tasks_pb.TASK_STATE_SUCCEEDED,
            tasks_pb.TASK_STATE_FAILED,
            tasks_pb.TASK_STATE_CANCELLED,
        }

    await wait_for(done, timeout=60, interval=0.05, message=f"task {task_id} finished")
    return seen


async def test_a_hardware_task_runs_on_the_agent_with_progress(
    channel: grpc.aio.Channel, tree: Path, user_token: str
) -> None:
    tasks = TaskServiceStub(channel)
    created = await tasks.CreateTask(
        tasks_pb.CreateTaskRequest(
            type="hardware.analyze_storage", payload=payload(path=str(tree))
        ),
        metadata=bearer(user_token),
        timeout=TIMEOUT,
    )

    seen = await finished(tasks, user_token, created.task.task_id)

    final = seen[-1]
    assert final.state == tasks_pb.TASK_STATE_SUCCEEDED, final
    assert final.agent_id == "hardware-optimizer.1"
    result = json_format.MessageToDict(final.result)
    assert result["total_files"] == "7"  # proto3 JSON: a 64-bit integer is a string
    assert result["scan"]["resolved_path"] == str(tree)
    assert max(t.progress for t in seen) > 0


async def test_changes_as_tasks_need_an_operator_and_are_audited(
    channel: grpc.aio.Channel,
    tree: Path,
    user_token: str,
    operator_token: str,
    admin_token: str,
) -> None:
    tasks = TaskServiceStub(channel)
    before = snapshot(tree)
    request = tasks_pb.CreateTaskRequest(
        type="hardware.clean_files",
        payload=payload(path=str(tree), older_than_days=7, dry_run=False),
    )

    refused = await failure(tasks.CreateTask(request, metadata=bearer(user_token), timeout=TIMEOUT))

    assert refused.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_info(refused).reason == "TASK_ROLE_REQUIRED"

    created = await tasks.CreateTask(request, metadata=bearer(operator_token), timeout=TIMEOUT)
    final = (await finished(tasks, operator_token, created.task.task_id))[-1]

    assert final.state == tasks_pb.TASK_STATE_SUCCEEDED, final
    report = json_format.MessageToDict(final.result)["report"]
    moved = {Path(c["target"]).relative_to(tree).as_posix() for c in report["changes"]}
    assert moved == {"a.log", "sub/deeper/e.tmp"}
    assert not (tree / "a.log").exists()
    quarantined = [c["quarantine_id"] for c in report["changes"]]
    hardware = HardwareServiceStub(channel)
    listed = await hardware.ListQuarantine(
        pb.ListQuarantineRequest(page_size=1000), metadata=bearer(operator_token), timeout=TIMEOUT
    )
    actors = {f.actor for f in listed.files if f.entry_id in quarantined}
    assert actors == {f"task {created.task.task_id}"}
    await hardware.RestoreQuarantined(
        pb.RestoreQuarantinedRequest(entry_ids=quarantined),
        metadata=bearer(operator_token),
        timeout=TIMEOUT,
    )
    assert snapshot(tree) == before

    user, operator = await who(channel, user_token), await who(channel, operator_token)
    auth = AuthServiceStub(channel)

    async def audited() -> bool:
        accepted = await auth.ListAuditEvents(
            auth_pb.ListAuditEventsRequest(action="tasks.create_privileged", page_size=500),
            metadata=bearer(admin_token),
            timeout=TIMEOUT,
        )
        denied = await auth.ListAuditEvents(
            auth_pb.ListAuditEventsRequest(
                action="/sutazai.tasks.v1.TaskService/CreateTask", page_size=500
            ),
            metadata=bearer(admin_token),
            timeout=TIMEOUT,
        )
        return any(
            e.actor == operator and e.target == created.task.task_id for e in accepted.events
        ) and any(e.actor == user and e.outcome == "PERMISSION_DENIED" for e in denied.events)

    await wait_for(audited, timeout=10, message="the privileged task and the refusal audited")


# The command line --------------------------------------------------------------------------


async def hardware_cli(settings: MeshSettings, state: Path, token: str, *args: str) -> Any:
    """``sutazai hardware ARGS --json`` as the holder of ``token``: its JSON output."""
    expires = datetime.now(UTC) + timedelta(minutes=10)
    FileTokenStore(state).save(SessionTokens(token, "refresh", expires))
    env = {"SUTAZAI_STATE_DIR": str(state), "SUTAZAI_ENVOY__PORT": str(settings.envoy.port)}
    run = await run_cli("hardware", *args, "--json", env=env, timeout=60.0)
    assert run.code == 0, run.stderr
    return json.loads(run.stdout)


async def test_the_cli_changes_nothing_without_apply(
    mesh_services: MeshSettings, tree: Path, operator_token: str, tmp_path: Path
) -> None:
    before = snapshot(tree)
    state = tmp_path / "state"

    dry = await hardware_cli(
        mesh_services, state, operator_token, "clean", str(tree), "--older-than-days", "7"
    )

    assert dry["dry_run"] is True
    assert len(dry["changes"]) == 2
    assert snapshot(tree) == before

    real = await hardware_cli(
        mesh_services,
        state,
        operator_token,
        "clean",
        str(tree),
        "--older-than-days",
        "7",
        "--apply",
    )
    assert real["dry_run"] is False
    assert not (tree / "a.log").exists()
    ids = [str(c["quarantine_id"]) for c in real["changes"]]
    restored = await hardware_cli(
        mesh_services, state, operator_token, "quarantine", "restore", *ids
    )
    assert all(r["restored"] for r in restored)
    assert snapshot(tree) == before

    status = await hardware_cli(mesh_services, state, operator_token, "status")
    assert int(str(status["memory"]["total_bytes"])) == psutil.virtual_memory().total
