"""Samples of the host with psutil: CPU, load, memory, disks, network, processes, sensors, GPUs.

Rates (CPU use, disk and network bytes per second, each process's CPU share) are differences
between two readings. A :class:`HostSampler` keeps its previous reading and answers with the
rates since then; when it has none, or only one older than ``stale_seconds`` (an average over
minutes would not be "now"), it takes a fresh one and waits ``min_window_seconds`` first, so
a sample never reports a rate over a window too short to mean anything (the original's health
check paid a whole second of ``cpu_percent(interval=1)`` on every call instead).

CPU use is computed from ``psutil.cpu_times`` rather than ``psutil.cpu_percent``, whose state
is global to the process: two samplers (a watch stream and GetStatus) would steal each other's
windows. Everything here is synchronous and blocking; the service runs it in worker threads.

GPUs are read through NVML when the ``nvidia-ml-py`` package (module ``pynvml``) and the
driver are present; it is not a dependency of the mesh, and without it ``gpus`` is empty.
"""

from __future__ import annotations

import importlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from sutazai.hardware.v1 import hardware_service_pb2 as pb

log = structlog.get_logger(__name__)

MIN_WINDOW_SECONDS = 0.25
"""Shortest window a rate is measured over."""
STALE_SECONDS = 5.0
"""A previous reading older than this is not used: the sample waits for a fresh window."""
MAX_DISKS = 64
MAX_NETWORKS = 64
MAX_SENSORS = 64
MAX_GPUS = 16
MAX_TOP_PROCESSES = 100
DEFAULT_TOP_PROCESSES = 10
MESH_PIDS_SECONDS = 5.0
"""How long the set of the mesh's own processes is reused before it is looked up again."""
SUPERVISOR_PID_FILE = "supervisor.pid"
"""``<state dir>/supervisor.pid``: the supervisor that runs this mesh (ops.supervisor)."""
KERNEL_THREAD_PARENT = 2
"""``kthreadd``: every kernel thread is its child (Linux)."""


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One process as one sample saw it."""

    pid: int
    ppid: int
    uid: int
    """Real user id (-1 when unreadable)."""
    username: str
    name: str
    create_time: float
    """psutil's creation time: with the pid, identifies the process across pid reuse."""
    cpu_percent: float
    """Since the previous reading; 100 is one whole core."""
    rss_bytes: int
    memory_percent: float
    nice: int
    kernel_thread: bool
    mesh: bool

    def message(self) -> pb.ProcessInfo:
        """The process as the API shows it."""
        return pb.ProcessInfo(
            pid=self.pid,
            name=self.name,
            username=self.username,
            cpu_percent=round(self.cpu_percent, 2),
            memory_bytes=self.rss_bytes,
            memory_percent=round(self.memory_percent, 3),
            nice=self.nice,
            mesh=self.mesh,
        )


@dataclass(frozen=True, slots=True)
class _ProcessReading:
    ppid: int
    uid: int
    username: str
    name: str
    create_time: float
    cpu_seconds: float
    rss_bytes: int
    nice: int
    kernel_thread: bool


@dataclass(frozen=True, slots=True)
class _Reading:
    """Counters at one instant; rates are differences of two of these."""

    at: float
    cpu: tuple[tuple[float, float], ...]
    """(busy, total) seconds of each logical CPU."""
    disks: dict[str, tuple[int, int]]
    """(read, written) bytes by device name."""
    networks: dict[str, tuple[int, int]]
    """(sent, received) bytes by interface."""
    processes: dict[int, _ProcessReading] | None
    """By pid; ``None`` when processes were not read."""


class MeshProcesses:
    """Which processes are the mesh's own: never reniced, marked ``mesh`` in samples.

    The supervisor of the state directory (its pid file) and all its descendants, this process
    and its descendants, and every pid the service registry advertises (``extra``). Looked up
    at most every :data:`MESH_PIDS_SECONDS`. A stale pid file can only add an unrelated process
    to the set, which errs on the safe side (it is then left alone).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        extra: Callable[[], Iterable[int]] = tuple,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pid_file = state_dir / SUPERVISOR_PID_FILE
        self._extra = extra
        self._clock = clock
        self._lock = threading.Lock()
        self._pids: frozenset[int] = frozenset()
        self._at = -MESH_PIDS_SECONDS

    def set_extra(self, extra: Callable[[], Iterable[int]]) -> None:
        """Where the registry's pids come from (set once the service has a registry)."""
        self._extra = extra
        self._at = -MESH_PIDS_SECONDS

    def pids(self) -> frozenset[int]:
        """The mesh's pids now (cached briefly)."""
        with self._lock:
            now = self._clock()
            if now - self._at >= MESH_PIDS_SECONDS:
                self._pids = frozenset(self._lookup())
                self._at = now
            return self._pids

    def _lookup(self) -> set[int]:
        roots = {os.getpid()}
        supervisor = _read_pid(self._pid_file)
        if supervisor is not None:
            roots.add(supervisor)
        pids = set(roots)
        for pid in roots:
            try:
                pids.update(child.pid for child in psutil.Process(pid).children(recursive=True))
            except psutil.Error:
                continue
        try:
            pids.update(pid for pid in self._extra() if pid > 0)
        except Exception:
            # The registry being away leaves the local view (the supervisor's tree).
            log.warning("hardware.registry_pids_unavailable", exc_info=True)
        return pids


def _read_pid(path: Path) -> int | None:
    try:
        raw = path.read_text("ascii", errors="replace")[:32].strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() and int(raw) > 1 else None


class HostSampler:
    """Takes :class:`HostSample` messages; thread-safe (one sample at a time).

    Each instance keeps its own previous reading: give every watch stream its own sampler so
    its rates cover exactly its interval.
    """

    def __init__(
        self,
        mesh: MeshProcesses | None = None,
        *,
        min_window_seconds: float = MIN_WINDOW_SECONDS,
        stale_seconds: float = STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        gpus: Callable[[], list[pb.Gpu]] | None = None,
    ) -> None:
        self._mesh = mesh
        self._min_window = min_window_seconds
        self._stale = max(stale_seconds, min_window_seconds)
        self._clock = clock
        self._sleep = sleep
        self._gpus = gpus if gpus is not None else nvml_gpus
        self._lock = threading.Lock()
        self._previous: _Reading | None = None

    def sample(self, top_processes: int = 0) -> pb.HostSample:
        """The host now, with its ``top_processes`` (0 to 100) busiest processes."""
        top = max(0, min(top_processes, MAX_TOP_PROCESSES))
        with self._lock:
            previous, current = self._window(with_processes=top > 0)
        processes = _process_samples(previous, current, self._mesh_pids()) if top else []
        processes.sort(key=lambda p: (p.cpu_percent, p.rss_bytes), reverse=True)
        return self._message(previous, current, processes[:top])

    def processes(self) -> list[ProcessSample]:
        """Every readable process with its CPU share since the previous reading."""
        with self._lock:
            previous, current = self._window(with_processes=True)
        return _process_samples(previous, current, self._mesh_pids())

    def _mesh_pids(self) -> frozenset[int]:
        return self._mesh.pids() if self._mesh is not None else frozenset({os.getpid()})

    def _window(self, *, with_processes: bool) -> tuple[_Reading, _Reading]:
        previous = self._previous
        now = self._clock()
        if (
            previous is None
            or now - previous.at > self._stale
            or (with_processes and previous.processes is None)
        ):
            previous = _read(self._clock(), with_processes=with_processes)
            self._sleep(self._min_window)
        elif now - previous.at < self._min_window:
            self._sleep(self._min_window - (now - previous.at))
        current = _read(self._clock(), with_processes=with_processes)
        self._previous = current
        return previous, current

    def _message(
        self, previous: _Reading, current: _Reading, processes: list[ProcessSample]
    ) -> pb.HostSample:
        elapsed = max(current.at - previous.at, 1e-6)
        sampled_at = Timestamp()
        sampled_at.GetCurrentTime()
        sample = pb.HostSample(
            sampled_at=sampled_at,
            hostname=socket.gethostname(),
            cpu=_cpu(previous, current),
            memory=_memory(),
            disks=_disks(previous, current, elapsed),
            networks=_networks(previous, current, elapsed),
            top_processes=[p.message() for p in processes],
            temperatures=temperatures(),
            gpus=self._gpus()[:MAX_GPUS],
        )
        sample.uptime.FromNanoseconds(int(max(0.0, time.time() - psutil.boot_time()) * 1e9))
        return sample


def _read(at: float, *, with_processes: bool) -> _Reading:
    cpu = tuple(_busy_total(t) for t in psutil.cpu_times(percpu=True))
    try:
        disk_counters = psutil.disk_io_counters(perdisk=True) or {}
    except (OSError, RuntimeError):
        disk_counters = {}
    try:
        net_counters = psutil.net_io_counters(pernic=True) or {}
    except OSError:
        net_counters = {}
    return _Reading(
        at=at,
        cpu=cpu,
        disks={name: (c.read_bytes, c.write_bytes) for name, c in disk_counters.items()},
        networks={name: (c.bytes_sent, c.bytes_recv) for name, c in net_counters.items()},
        processes=_read_processes() if with_processes else None,
    )


def _busy_total(times: Any) -> tuple[float, float]:
    total = float(sum(times))
    # guest time is already counted in user time on Linux (psutil does the same).
    total -= float(getattr(times, "guest", 0.0)) + float(getattr(times, "guest_nice", 0.0))
    idle = float(times.idle) + float(getattr(times, "iowait", 0.0))
    return total - idle, total


def _percent(busy: float, total: float) -> float:
    if total <= 0:
        return 0.0
    return round(max(0.0, min(100.0, 100.0 * busy / total)), 2)


def _cpu(previous: _Reading, current: _Reading) -> pb.CpuStatus:
    per_core = []
    busy_sum = total_sum = 0.0
    for (busy0, total0), (busy1, total1) in zip(previous.cpu, current.cpu, strict=False):
        busy, total = max(0.0, busy1 - busy0), max(0.0, total1 - total0)
        busy_sum += busy
        total_sum += total
        per_core.append(_percent(busy, total))
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    try:
        frequency = psutil.cpu_freq()
    except (OSError, RuntimeError, NotImplementedError):
        frequency = None
    return pb.CpuStatus(
        percent=_percent(busy_sum, total_sum),
        per_core_percent=per_core,
        logical_cores=psutil.cpu_count(logical=True) or len(per_core),
        physical_cores=psutil.cpu_count(logical=False) or 0,
        load_1m=load[0],
        load_5m=load[1],
        load_15m=load[2],
        frequency_mhz=float(frequency.current) if frequency is not None else 0.0,
    )


def _memory() -> pb.MemoryStatus:
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    return pb.MemoryStatus(
        total_bytes=memory.total,
        available_bytes=memory.available,
        used_bytes=memory.used,
        percent=memory.percent,
        swap_total_bytes=swap.total,
        swap_used_bytes=swap.used,
        swap_percent=swap.percent,
    )


def _disks(previous: _Reading, current: _Reading, elapsed: float) -> list[pb.DiskStatus]:
    disks: list[pb.DiskStatus] = []
    seen: set[str] = set()
    try:
        partitions = psutil.disk_partitions(all=False)
    except OSError:
        return disks
    for partition in partitions:
        if partition.mountpoint in seen or len(disks) >= MAX_DISKS:
            continue
        seen.add(partition.mountpoint)
        try:
            usage = psutil.disk_usage(partition.mountpoint)
        except OSError:
            continue
        device = Path(partition.device).name
        read_rate, write_rate = _rates(previous.disks.get(device), current.disks.get(device))
        disks.append(
            pb.DiskStatus(
                mountpoint=partition.mountpoint,
                device=partition.device,
                fstype=partition.fstype,
                total_bytes=usage.total,
                used_bytes=usage.used,
                free_bytes=usage.free,
                percent=usage.percent,
                read_bytes_per_second=round(read_rate / elapsed, 1),
                write_bytes_per_second=round(write_rate / elapsed, 1),
            )
        )
    return disks


def disk_status(path: Path) -> pb.DiskStatus:
    """The file system holding ``path`` (no rates): the storage report's per-root disk."""
    usage = psutil.disk_usage(str(path))
    best: Any = None
    try:
        for partition in psutil.disk_partitions(all=True):
            mount = Path(partition.mountpoint)
            if (path == mount or mount in path.parents) and (
                best is None or len(partition.mountpoint) > len(best.mountpoint)
            ):
                best = partition
    except OSError:
        best = None
    return pb.DiskStatus(
        mountpoint=best.mountpoint if best is not None else "",
        device=best.device if best is not None else "",
        fstype=best.fstype if best is not None else "",
        total_bytes=usage.total,
        used_bytes=usage.used,
        free_bytes=usage.free,
        percent=usage.percent,
    )


def _rates(before: tuple[int, int] | None, after: tuple[int, int] | None) -> tuple[float, float]:
    if before is None or after is None:
        return 0.0, 0.0
    # Counters wrap or reset (a device re-attached): never report a negative rate.
    return float(max(0, after[0] - before[0])), float(max(0, after[1] - before[1]))


def _networks(previous: _Reading, current: _Reading, elapsed: float) -> list[pb.NetworkStatus]:
    try:
        stats = psutil.net_if_stats()
    except OSError:
        stats = {}
    try:
        counters = psutil.net_io_counters(pernic=True) or {}
    except OSError:
        counters = {}
    networks = []
    for name in sorted(counters)[:MAX_NETWORKS]:
        c = counters[name]
        sent, received = _rates(previous.networks.get(name), current.networks.get(name))
        networks.append(
            pb.NetworkStatus(
                interface=name,
                bytes_sent=c.bytes_sent,
                bytes_received=c.bytes_recv,
                sent_bytes_per_second=round(sent / elapsed, 1),
                received_bytes_per_second=round(received / elapsed, 1),
                errors_in=c.errin,
                errors_out=c.errout,
                is_up=bool(stats[name].isup) if name in stats else False,
            )
        )
    return networks


def _read_processes() -> dict[int, _ProcessReading]:
    found: dict[int, _ProcessReading] = {}
    attrs = [
        "pid",
        "ppid",
        "uids",
        "username",
        "name",
        "create_time",
        "cpu_times",
        "memory_info",
        "nice",
    ]
    for process in psutil.process_iter(attrs):
        # Attributes psutil could not read (a process that ended, or another user's that the
        # kernel hides) come as None: such a process is reported with zeros, never guessed.
        info = process.info
        cpu_times = info.get("cpu_times")
        uids = info.get("uids")
        memory = info.get("memory_info")
        rss = int(memory.rss) if memory is not None else 0
        kthread = process.pid == KERNEL_THREAD_PARENT or (
            process.pid != 1 and info.get("ppid") == KERNEL_THREAD_PARENT
        )
        found[process.pid] = _ProcessReading(
            ppid=int(info.get("ppid") or 0),
            uid=int(uids.real) if uids is not None else -1,
            username=str(info.get("username") or ""),
            name=str(info.get("name") or "")[:64],
            create_time=float(info.get("create_time") or 0.0),
            cpu_seconds=(
                float(cpu_times.user) + float(cpu_times.system) if cpu_times is not None else 0.0
            ),
            rss_bytes=rss,
            nice=int(info.get("nice") or 0),
            kernel_thread=kthread,
        )
    return found


def _process_samples(
    previous: _Reading, current: _Reading, mesh_pids: frozenset[int]
) -> list[ProcessSample]:
    if current.processes is None:
        return []
    elapsed = max(current.at - previous.at, 1e-6)
    before = previous.processes or {}
    total_memory = float(psutil.virtual_memory().total) or 1.0
    samples = []
    for pid, now in current.processes.items():
        then = before.get(pid)
        # A pid reused by a new process is a different process: no window for it yet.
        cpu = (
            max(0.0, now.cpu_seconds - then.cpu_seconds) / elapsed * 100.0
            if then is not None and then.create_time == now.create_time
            else 0.0
        )
        samples.append(
            ProcessSample(
                pid=pid,
                ppid=now.ppid,
                uid=now.uid,
                username=now.username,
                name=now.name,
                create_time=now.create_time,
                cpu_percent=cpu,
                rss_bytes=now.rss_bytes,
                memory_percent=100.0 * now.rss_bytes / total_memory,
                nice=now.nice,
                kernel_thread=now.kernel_thread,
                mesh=pid in mesh_pids,
            )
        )
    return samples


def temperatures() -> list[pb.Temperature]:
    """Every temperature sensor psutil can read (empty on hosts without any)."""
    reader = getattr(psutil, "sensors_temperatures", None)
    if reader is None:
        return []
    try:
        sensors = reader() or {}
    except (OSError, RuntimeError):
        return []
    readings: list[pb.Temperature] = []
    for chip, entries in sorted(sensors.items()):
        for entry in entries:
            if len(readings) >= MAX_SENSORS:
                return readings
            readings.append(
                pb.Temperature(
                    sensor=str(chip)[:64],
                    label=str(entry.label or "")[:64],
                    celsius=float(entry.current or 0.0),
                    high_celsius=float(entry.high or 0.0),
                    critical_celsius=float(entry.critical or 0.0),
                )
            )
    return readings


_nvml_lock = threading.Lock()
_nvml: Any = None
_nvml_failed = False


def nvml_gpus() -> list[pb.Gpu]:
    """NVIDIA GPUs through NVML, if ``pynvml`` and the driver are there; else none.

    NVML is initialised once per process; a host without it is not asked again.
    """
    global _nvml, _nvml_failed
    with _nvml_lock:
        if _nvml_failed:
            return []
        if _nvml is None:
            try:
                module = importlib.import_module("pynvml")
                module.nvmlInit()
            except Exception:
                _nvml_failed = True
                return []
            _nvml = module
        nvml = _nvml
    gpus = []
    try:
        for index in range(min(int(nvml.nvmlDeviceGetCount()), MAX_GPUS)):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            utilization = nvml.nvmlDeviceGetUtilizationRates(handle)
            temperature = nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
            gpus.append(
                pb.Gpu(
                    index=index,
                    name=(name.decode() if isinstance(name, bytes) else str(name))[:128],
                    utilization_percent=float(utilization.gpu),
                    memory_total_bytes=int(memory.total),
                    memory_used_bytes=int(memory.used),
                    temperature_celsius=float(temperature),
                )
            )
    except Exception:
        return gpus
    return gpus
