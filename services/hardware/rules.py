"""GetRecommendations: fixed rules over one measured sample, each with its reason and numbers.

Every rule compares measured values with a threshold of :class:`HardwareSettings` (or a fixed
one stated here) and, when it fires, says what was measured, why it matters, what to do and
which RPC does it. Nothing here guesses: a rule without its numbers does not fire. Storage
rules that would need a walk (duplicates, old temporary files) are left to the storage report,
so recommendations stay as cheap as a sample.
"""

from __future__ import annotations

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.settings import HardwareSettings

CRITICAL_PERCENT = 95.0
"""Memory or disk use at or above this is critical (the warning thresholds are configured)."""
SWAP_MIN_BYTES = 64 * 1024 * 1024
"""Swap use below this is noise (a few pages swapped out long ago), whatever its share."""
MAX_HOGS = 5
"""CPU hogs named in one recommendation."""


def _measurement(name: str, value: float, threshold: float, unit: str) -> pb.Measurement:
    return pb.Measurement(
        name=name, value=round(value, 3), threshold=round(threshold, 3), unit=unit
    )


def recommend(sample: pb.HostSample, settings: HardwareSettings) -> list[pb.Recommendation]:
    """The rules that fire on ``sample``, most severe first (then by rule id)."""
    found = [
        *_memory(sample, settings),
        *_swap(sample, settings),
        *_disks(sample, settings),
        *_load(sample, settings),
        *_hogs(sample, settings),
        *_temperatures(sample),
        *_gpus(sample, settings),
    ]
    found.sort(key=lambda r: (-int(r.severity), r.rule, r.reason))
    return found


def _memory(sample: pb.HostSample, settings: HardwareSettings) -> list[pb.Recommendation]:
    memory = sample.memory
    threshold = settings.memory_percent_warning
    if memory.total_bytes == 0 or memory.percent < threshold:
        return []
    critical = memory.percent >= max(CRITICAL_PERCENT, threshold)
    return [
        pb.Recommendation(
            rule="memory_high",
            severity=pb.SEVERITY_CRITICAL if critical else pb.SEVERITY_WARNING,
            reason=(
                f"Memory is {memory.percent:.1f}% used (threshold {threshold:g}%): "
                f"{memory.available_bytes / 2**30:.1f} GiB left before the host swaps or "
                "the kernel starts killing processes."
            ),
            action=(
                "Reclaim memory in the mesh's own processes, then look at the busiest "
                "processes by memory."
            ),
            rpc="ReclaimMemory",
            measurements=[
                _measurement("memory.percent", memory.percent, threshold, "%"),
                _measurement("memory.available_bytes", memory.available_bytes, 0, "bytes"),
            ],
        )
    ]


def _swap(sample: pb.HostSample, settings: HardwareSettings) -> list[pb.Recommendation]:
    memory = sample.memory
    threshold = settings.swap_percent_warning
    if memory.swap_total_bytes == 0 or memory.swap_used_bytes < SWAP_MIN_BYTES:
        return []
    if memory.swap_percent < threshold:
        return []
    return [
        pb.Recommendation(
            rule="swap_in_use",
            severity=pb.SEVERITY_WARNING,
            reason=(
                f"Swap is {memory.swap_percent:.1f}% used (threshold {threshold:g}%): "
                "memory pages are on disk, which slows whatever needs them back."
            ),
            action="Free memory (ReclaimMemory), or stop or move memory-hungry processes.",
            rpc="ReclaimMemory",
            measurements=[
                _measurement("memory.swap_percent", memory.swap_percent, threshold, "%"),
                _measurement(
                    "memory.swap_used_bytes", memory.swap_used_bytes, SWAP_MIN_BYTES, "bytes"
                ),
            ],
        )
    ]


def _disks(sample: pb.HostSample, settings: HardwareSettings) -> list[pb.Recommendation]:
    threshold = settings.disk_percent_warning
    found = []
    for disk in sample.disks:
        if disk.total_bytes == 0 or disk.percent < threshold:
            continue
        critical = disk.percent >= max(CRITICAL_PERCENT, threshold)
        found.append(
            pb.Recommendation(
                rule="disk_full",
                severity=pb.SEVERITY_CRITICAL if critical else pb.SEVERITY_WARNING,
                reason=(
                    f"The file system at {disk.mountpoint} is {disk.percent:.1f}% full "
                    f"(threshold {threshold:g}%), {disk.free_bytes / 2**30:.1f} GiB free: "
                    "writes start failing when it fills."
                ),
                action=(
                    "Look at the storage report, then clean old temporary files, "
                    "deduplicate and compress old logs under the allowed roots (dry run first)."
                ),
                rpc="CleanFiles",
                measurements=[
                    _measurement(f"disk.{disk.mountpoint}.percent", disk.percent, threshold, "%"),
                    _measurement(f"disk.{disk.mountpoint}.free_bytes", disk.free_bytes, 0, "bytes"),
                ],
            )
        )
    return found


def _load(sample: pb.HostSample, settings: HardwareSettings) -> list[pb.Recommendation]:
    cores = sample.cpu.logical_cores
    if cores == 0:
        return []
    per_core = sample.cpu.load_1m / cores
    threshold = settings.load_per_core_warning
    if per_core < threshold:
        return []
    return [
        pb.Recommendation(
            rule="cpu_saturated",
            severity=pb.SEVERITY_WARNING,
            reason=(
                f"The 1-minute load is {sample.cpu.load_1m:.2f} on {cores} cores "
                f"({per_core:.2f} per core, threshold {threshold:g}): tasks wait for a CPU."
            ),
            action="Lower the priority of CPU hogs that are not the mesh's own.",
            rpc="ReniceProcesses",
            measurements=[
                _measurement("cpu.load_1m_per_core", per_core, threshold, "per core"),
                _measurement("cpu.percent", sample.cpu.percent, 100.0, "%"),
            ],
        )
    ]


def _hogs(sample: pb.HostSample, settings: HardwareSettings) -> list[pb.Recommendation]:
    threshold = settings.cpu_hog_percent
    hogs = [p for p in sample.top_processes if p.cpu_percent >= threshold and not p.mesh]
    if not hogs:
        return []
    hogs = hogs[:MAX_HOGS]
    names = ", ".join(f"{p.name} (pid {p.pid}, {p.cpu_percent:.0f}%)" for p in hogs)
    return [
        pb.Recommendation(
            rule="cpu_hogs",
            severity=pb.SEVERITY_INFO,
            reason=f"Processes above {threshold:g}% CPU that are not the mesh's: {names}.",
            action=(
                "Lower their priority if they are yours and can wait (a dry run lists which "
                "ones would be reniced)."
            ),
            rpc="ReniceProcesses",
            measurements=[
                _measurement(f"process.{p.pid}.cpu_percent", p.cpu_percent, threshold, "%")
                for p in hogs
            ],
        )
    ]


def _temperatures(sample: pb.HostSample) -> list[pb.Recommendation]:
    found = []
    for reading in sample.temperatures:
        name = f"{reading.sensor}/{reading.label}" if reading.label else reading.sensor
        if reading.critical_celsius > 0 and reading.celsius >= reading.critical_celsius:
            severity, threshold = pb.SEVERITY_CRITICAL, reading.critical_celsius
        elif reading.high_celsius > 0 and reading.celsius >= reading.high_celsius:
            severity, threshold = pb.SEVERITY_WARNING, reading.high_celsius
        else:
            continue
        found.append(
            pb.Recommendation(
                rule="temperature_high",
                severity=severity,
                reason=(
                    f"Sensor {name} reads {reading.celsius:.0f} °C, at or above its own "
                    f"{threshold:.0f} °C threshold: the hardware throttles or shuts down."
                ),
                action="Check cooling and airflow; reduce sustained load until it cools.",
                measurements=[
                    _measurement(f"temperature.{name}", reading.celsius, threshold, "°C")
                ],
            )
        )
    return found


def _gpus(sample: pb.HostSample, settings: HardwareSettings) -> list[pb.Recommendation]:
    threshold = settings.memory_percent_warning
    found = []
    for gpu in sample.gpus:
        if gpu.memory_total_bytes == 0:
            continue
        percent = 100.0 * gpu.memory_used_bytes / gpu.memory_total_bytes
        if percent < threshold:
            continue
        found.append(
            pb.Recommendation(
                rule="gpu_memory_high",
                severity=pb.SEVERITY_WARNING,
                reason=(
                    f"GPU {gpu.index} ({gpu.name}) has {percent:.0f}% of its memory in use "
                    f"(threshold {threshold:g}%): another model may not fit."
                ),
                action="Unload models that are not needed (InferenceService.UnloadModel).",
                measurements=[
                    _measurement(f"gpu.{gpu.index}.memory_percent", percent, threshold, "%")
                ],
            )
        )
    return found
