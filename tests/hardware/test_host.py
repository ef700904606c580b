"""The host sampler: live numbers that agree with psutil, rates over real windows."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from sutazai.services.hardware.host import (
    MIN_WINDOW_SECONDS,
    HostSampler,
    MeshProcesses,
    nvml_gpus,
)


def test_a_sample_agrees_with_psutil() -> None:
    sample = HostSampler().sample(top_processes=5)

    memory = psutil.virtual_memory()
    assert sample.memory.total_bytes == memory.total
    assert abs(sample.memory.available_bytes - memory.available) < memory.total * 0.1
    assert sample.cpu.logical_cores == psutil.cpu_count()
    assert len(sample.cpu.per_core_percent) == psutil.cpu_count()
    assert 0.0 <= sample.cpu.percent <= 100.0
    assert all(0.0 <= p <= 100.0 for p in sample.cpu.per_core_percent)
    assert abs(sample.cpu.load_1m - os.getloadavg()[0]) < 2.0
    mounts = {p.mountpoint for p in psutil.disk_partitions(all=False)}
    assert {d.mountpoint for d in sample.disks} <= mounts
    for disk in sample.disks:
        assert disk.total_bytes == psutil.disk_usage(disk.mountpoint).total
    assert {n.interface for n in sample.networks} == set(psutil.net_io_counters(pernic=True))
    assert abs(sample.uptime.seconds - (time.time() - psutil.boot_time())) < 5
    assert 0 < len(sample.top_processes) <= 5
    assert sample.sampled_at.seconds > 0


def test_the_busiest_processes_come_first_and_this_one_is_the_mesh_s() -> None:
    sampler = HostSampler()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # busy: this process should show CPU use
        pass
    sample = sampler.sample(top_processes=100)

    cpu = [p.cpu_percent for p in sample.top_processes]
    assert cpu == sorted(cpu, reverse=True)
    mine = [p for p in sample.top_processes if p.pid == os.getpid()]
    assert mine
    assert mine[0].mesh


def test_a_cold_sampler_waits_one_window_and_a_warm_one_does_not() -> None:
    clock = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    sampler = HostSampler(clock=lambda: clock[0], sleep=sleep, gpus=list)
    sampler.sample()
    assert slept == [MIN_WINDOW_SECONDS]

    clock[0] += 2.0
    sampler.sample()
    assert slept == [MIN_WINDOW_SECONDS]  # the previous reading is 2 s old: a fine window

    clock[0] += 0.05
    sampler.sample()
    assert abs(slept[-1] - (MIN_WINDOW_SECONDS - 0.05)) < 1e-9  # waits out the rest

    clock[0] += 60.0  # stale: a fresh window
    sampler.sample()
    assert slept[-1] == MIN_WINDOW_SECONDS


def test_processes_need_a_window_of_their_own() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    sampler = HostSampler(clock=lambda: clock[0], sleep=sleep, gpus=list)
    sampler.sample(top_processes=0)
    clock[0] += 1.0
    sampler.sample(top_processes=3)  # no process reading yet: one more window

    assert len(slept) == 2


def test_the_mesh_is_the_supervisor_s_tree_and_the_registry_s_pids(tmp_path: Path) -> None:
    (tmp_path / "supervisor.pid").write_text(f"{os.getppid()}\n")
    mesh = MeshProcesses(tmp_path, extra=lambda: [424242])

    pids = mesh.pids()

    assert {os.getpid(), os.getppid(), 424242} <= pids


def test_a_missing_or_garbled_pid_file_leaves_this_process(tmp_path: Path) -> None:
    (tmp_path / "supervisor.pid").write_text("not a pid")

    assert os.getpid() in MeshProcesses(tmp_path).pids()
    assert 1 not in MeshProcesses(tmp_path).pids()


def test_no_nvml_means_no_gpus() -> None:
    assert nvml_gpus() == [] or all(g.memory_total_bytes > 0 for g in nvml_gpus())
