"""GetRecommendations' rules: each fires on its threshold, with its reason and numbers."""

from __future__ import annotations

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.settings import HardwareSettings
from sutazai.services.hardware.rules import recommend

GIB = 2**30


def quiet() -> pb.HostSample:
    return pb.HostSample(
        cpu=pb.CpuStatus(percent=10, logical_cores=4, load_1m=0.5),
        memory=pb.MemoryStatus(
            total_bytes=16 * GIB,
            available_bytes=12 * GIB,
            percent=25,
            swap_total_bytes=4 * GIB,
            swap_used_bytes=0,
        ),
        disks=[pb.DiskStatus(mountpoint="/", total_bytes=100 * GIB, percent=40)],
    )


def test_a_quiet_host_gets_no_recommendation() -> None:
    assert recommend(quiet(), HardwareSettings()) == []


def test_memory_above_the_threshold_is_a_warning_then_critical() -> None:
    sample = quiet()
    sample.memory.percent = 86
    (found,) = recommend(sample, HardwareSettings(memory_percent_warning=85))
    assert (found.rule, found.severity, found.rpc) == (
        "memory_high",
        pb.SEVERITY_WARNING,
        "ReclaimMemory",
    )
    assert found.measurements[0].name == "memory.percent"
    assert (found.measurements[0].value, found.measurements[0].threshold) == (86, 85)
    assert "86.0%" in found.reason

    sample.memory.percent = 97
    assert recommend(sample, HardwareSettings())[0].severity == pb.SEVERITY_CRITICAL


def test_a_full_disk_names_its_mountpoint_and_the_cleaning_rpc() -> None:
    sample = quiet()
    sample.disks.add(mountpoint="/data", total_bytes=GIB, free_bytes=GIB // 20, percent=95)

    (found,) = recommend(sample, HardwareSettings(disk_percent_warning=90))

    assert found.rule == "disk_full"
    assert found.severity == pb.SEVERITY_CRITICAL
    assert found.rpc == "CleanFiles"
    assert found.measurements[0].name == "disk./data.percent"


def test_load_per_core_and_swap_and_hogs() -> None:
    sample = quiet()
    sample.cpu.load_1m = 8.0  # 2 per core on 4 cores
    sample.memory.swap_used_bytes = 3 * GIB
    sample.memory.swap_percent = 75
    sample.top_processes.add(pid=10, name="miner", cpu_percent=90, mesh=False)
    sample.top_processes.add(pid=11, name="sutazai", cpu_percent=95, mesh=True)

    found = {r.rule: r for r in recommend(sample, HardwareSettings())}

    assert set(found) == {"cpu_saturated", "swap_in_use", "cpu_hogs"}
    assert found["cpu_saturated"].measurements[0].value == 2.0
    assert "miner" in found["cpu_hogs"].reason
    assert "sutazai" not in found["cpu_hogs"].reason
    assert found["cpu_hogs"].rpc == "ReniceProcesses"


def test_a_little_swap_long_ago_is_noise() -> None:
    sample = quiet()
    sample.memory.swap_total_bytes = 100 * 2**20
    sample.memory.swap_used_bytes = 60 * 2**20
    sample.memory.swap_percent = 60

    assert recommend(sample, HardwareSettings()) == []


def test_sensors_fire_on_their_own_thresholds_most_severe_first() -> None:
    sample = quiet()
    sample.memory.percent = 90
    sample.temperatures.add(sensor="coretemp", label="Core 0", celsius=101, critical_celsius=100)

    found = recommend(sample, HardwareSettings())

    assert [r.rule for r in found] == ["temperature_high", "memory_high"]
