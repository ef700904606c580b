"""What the host offers and how busy it is, measured with psutil.

Capacity: CPU cores (logical), memory and the state directory's file system in GiB, network in
Mbps as configured (a link's speed is not reliably measurable), GPUs as configured or counted
from ``/dev/nvidia[0-9]*``. Utilisation is sampled in the background (:meth:`HostProbe.sample`,
every ``sample_interval_seconds``): CPU since the previous sample (psutil's non-blocking form),
memory and disk as they are, network from the byte counters of every interface but loopback,
as a share of the configured capacity. GPU utilisation is not measured (the mesh has no NVML
binding); it reads 0.
"""

from __future__ import annotations

import glob
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import psutil

from sutazai.services.resources.domain import ResourceKind

GIB = float(1 << 30)
_NVIDIA_DEVICE = re.compile(r"nvidia\d+\Z")


def nvidia_devices(pattern: str = "/dev/nvidia[0-9]*") -> int:
    """How many NVIDIA GPUs the driver exposes (``/dev/nvidia0``, ``/dev/nvidia1``, ...)."""
    # The pattern also matches nvidia0-like names with a suffix; only nvidiaN are GPUs.
    return sum(1 for path in glob.glob(pattern) if _NVIDIA_DEVICE.match(Path(path).name))


@dataclass(frozen=True, slots=True)
class Usage:
    """One sample of utilisation, 0 to 100 per resource."""

    percent: Mapping[ResourceKind, float]


@dataclass(slots=True)
class HostProbe:
    """Capacity and sampled utilisation of this host."""

    disk_path: Path
    """Where the state lives: its file system is the disk resource."""
    network_mbps: float
    gpu_devices: int | None = None
    """Declared GPUs; ``None`` counts NVIDIA devices."""
    clock: Callable[[], float] = time.monotonic
    _last_bytes: int = 0
    _last_at: float = 0.0
    _usage: Usage = field(default_factory=lambda: Usage(MappingProxyType({})))

    def __post_init__(self) -> None:
        # psutil's non-blocking cpu_percent measures since its previous call: the first call
        # starts the interval. The network rate likewise needs a first reading.
        psutil.cpu_percent(interval=None)
        self._last_bytes = _network_bytes()
        self._last_at = self.clock()
        self.sample()

    def capacity(self) -> dict[ResourceKind, float]:
        """Each resource's capacity in its unit; a GPU count of 0 means no GPU resource."""
        gpus = nvidia_devices() if self.gpu_devices is None else self.gpu_devices
        return {
            ResourceKind.CPU: float(psutil.cpu_count(logical=True) or 1),
            ResourceKind.MEMORY: psutil.virtual_memory().total / GIB,
            ResourceKind.DISK: psutil.disk_usage(str(self.disk_path)).total / GIB,
            ResourceKind.NETWORK: self.network_mbps,
            ResourceKind.GPU: float(gpus),
        }

    def sample(self) -> Usage:
        """Measure utilisation now (CPU and network: since the previous sample) and keep it."""
        now = self.clock()
        sent = _network_bytes()
        elapsed = now - self._last_at
        network = 0.0
        if elapsed > 0:
            mbps = max(0, sent - self._last_bytes) * 8 / elapsed / 1e6
            network = min(100.0, 100.0 * mbps / self.network_mbps)
        self._last_bytes, self._last_at = sent, now
        self._usage = Usage(
            MappingProxyType(
                {
                    ResourceKind.CPU: float(psutil.cpu_percent(interval=None)),
                    ResourceKind.MEMORY: float(psutil.virtual_memory().percent),
                    ResourceKind.DISK: float(psutil.disk_usage(str(self.disk_path)).percent),
                    ResourceKind.NETWORK: network,
                    ResourceKind.GPU: 0.0,
                }
            )
        )
        return self._usage

    @property
    def usage(self) -> Usage:
        """The latest sample."""
        return self._usage


def _network_bytes() -> int:
    counters = psutil.net_io_counters(pernic=True)
    return sum(
        c.bytes_sent + c.bytes_recv for name, c in counters.items() if not name.startswith("lo")
    )
