"""Every hardware operation behind one object, the same for the gRPC handlers and the agent.

:class:`Toolbox` holds what the operations share in one process (the path policy, the hash
cache, the quarantine, the host sampler) and runs each operation synchronously: callers run
it in a worker thread with a cancel token and a progress callback. ``actor`` names who asked
(the caller's username for an RPC, ``task <id>`` for a task) and goes into the quarantine's
manifest of every file a change moves.

:func:`budgeted` shortens a walk's time limit to fit the caller's deadline, so a unary call
answers ``truncated`` in time instead of being cut by its deadline (or Envoy's 15 s limit).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.settings import HardwareSettings, MeshSettings
from sutazai.services.hardware import cleanup, processes
from sutazai.services.hardware.analysis import analyze
from sutazai.services.hardware.duplicates import HashCache, find_duplicates
from sutazai.services.hardware.host import HostSampler, MeshProcesses, ProcessSample
from sutazai.services.hardware.large_files import find_large_files
from sutazai.services.hardware.paths import PathPolicy
from sutazai.services.hardware.quarantine import Quarantine
from sutazai.services.hardware.report import storage_report
from sutazai.services.hardware.rules import recommend
from sutazai.services.hardware.walk import Progress, limits_from

QUARANTINE_DIR = Path("hardware") / "quarantine"
"""Under the state directory: the quarantine (mode 0700)."""
Walking = TypeVar(
    "Walking",
    pb.AnalyzeStorageRequest,
    pb.FindDuplicatesRequest,
    pb.FindLargeFilesRequest,
    pb.CleanFilesRequest,
    pb.DeduplicateRequest,
    pb.CompressLogsRequest,
    pb.RotateLogsRequest,
)
"""A request whose ``limits`` bound a walk."""
MIN_WALK_SECONDS = 0.2
"""A budgeted walk gets at least this long (it then answers truncated)."""


@dataclass(slots=True)
class Toolbox:
    """What the operations of one process share."""

    settings: HardwareSettings
    policy: PathPolicy
    cache: HashCache
    quarantine: Quarantine
    sampler: HostSampler
    mesh: MeshProcesses

    @classmethod
    def open(cls, mesh: MeshSettings) -> Toolbox:
        """The toolbox of ``mesh``'s state directory (creates the quarantine directory)."""
        settings = mesh.hardware
        policy = PathPolicy(settings, state_dir=mesh.state_dir, logs_dir=mesh.state_dir / "logs")
        processes_of_mesh = MeshProcesses(mesh.state_dir)
        return cls(
            settings=settings,
            policy=policy,
            cache=HashCache.from_settings(settings),
            quarantine=Quarantine(
                mesh.state_dir / QUARANTINE_DIR,
                retention=timedelta(days=settings.quarantine_retention_days),
                policy=policy,
            ),
            sampler=HostSampler(processes_of_mesh),
            mesh=processes_of_mesh,
        )

    # --- read-only ---------------------------------------------------------------------------

    def status(self, request: pb.GetStatusRequest) -> pb.GetStatusResponse:
        """A fresh sample (``top_processes`` 0 means 10)."""
        top = request.top_processes or 10
        return pb.GetStatusResponse(sample=self.sampler.sample(top))

    def recommendations(self) -> pb.GetRecommendationsResponse:
        """The rules over a fresh sample with its busiest processes."""
        sample = self.sampler.sample(10)
        return pb.GetRecommendationsResponse(
            sample=sample, recommendations=recommend(sample, self.settings)
        )

    def analyze(
        self, request: pb.AnalyzeStorageRequest, cancel: threading.Event, progress: Progress | None
    ) -> pb.AnalyzeStorageResponse:
        """AnalyzeStorage."""
        return analyze(
            request, policy=self.policy, settings=self.settings, cancel=cancel, progress=progress
        )

    def duplicates(
        self, request: pb.FindDuplicatesRequest, cancel: threading.Event, progress: Progress | None
    ) -> pb.FindDuplicatesResponse:
        """FindDuplicates."""
        return find_duplicates(
            request,
            policy=self.policy,
            settings=self.settings,
            cache=self.cache,
            cancel=cancel,
            progress=progress,
        )

    def large_files(
        self, request: pb.FindLargeFilesRequest, cancel: threading.Event, progress: Progress | None
    ) -> pb.FindLargeFilesResponse:
        """FindLargeFiles."""
        return find_large_files(
            request, policy=self.policy, settings=self.settings, cancel=cancel, progress=progress
        )

    def report(
        self,
        cancel: threading.Event,
        progress: Progress | None,
        settings: HardwareSettings | None = None,
    ) -> pb.GetStorageReportResponse:
        """GetStorageReport (``settings``: the configured ones with a shortened walk time)."""
        return storage_report(
            policy=self.policy,
            settings=settings or self.settings,
            cache=self.cache,
            cancel=cancel,
            progress=progress,
        )

    # --- changes -----------------------------------------------------------------------------

    def clean(
        self,
        request: pb.CleanFilesRequest,
        actor: str,
        cancel: threading.Event,
        progress: Progress | None,
    ) -> pb.CleanFilesResponse:
        """CleanFiles."""
        return pb.CleanFilesResponse(
            report=cleanup.clean_files(
                request,
                policy=self.policy,
                settings=self.settings,
                quarantine=self.quarantine,
                actor=actor,
                cancel=cancel,
                progress=progress,
            )
        )

    def deduplicate(
        self,
        request: pb.DeduplicateRequest,
        actor: str,
        cancel: threading.Event,
        progress: Progress | None,
    ) -> pb.DeduplicateResponse:
        """Deduplicate."""
        return pb.DeduplicateResponse(
            report=cleanup.deduplicate(
                request,
                policy=self.policy,
                settings=self.settings,
                cache=self.cache,
                quarantine=self.quarantine,
                actor=actor,
                cancel=cancel,
                progress=progress,
            )
        )

    def compress_logs(
        self,
        request: pb.CompressLogsRequest,
        actor: str,
        cancel: threading.Event,
        progress: Progress | None,
    ) -> pb.CompressLogsResponse:
        """CompressLogs."""
        return pb.CompressLogsResponse(
            report=cleanup.compress_logs(
                request,
                policy=self.policy,
                settings=self.settings,
                quarantine=self.quarantine,
                actor=actor,
                cancel=cancel,
                progress=progress,
            )
        )

    def rotate_logs(
        self,
        request: pb.RotateLogsRequest,
        actor: str,
        cancel: threading.Event,
        progress: Progress | None,
    ) -> pb.RotateLogsResponse:
        """RotateLogs."""
        return pb.RotateLogsResponse(
            report=cleanup.rotate_logs(
                request,
                policy=self.policy,
                settings=self.settings,
                quarantine=self.quarantine,
                actor=actor,
                cancel=cancel,
                progress=progress,
            )
        )

    def renice(
        self,
        request: pb.ReniceProcessesRequest,
        sample: Callable[[], list[ProcessSample]] | None = None,
    ) -> pb.ReniceProcessesResponse:
        """ReniceProcesses (processes as this process's sampler sees them)."""
        return pb.ReniceProcessesResponse(
            report=processes.renice(
                request, settings=self.settings, processes=sample or self.sampler.processes
            )
        )

    # --- quarantine --------------------------------------------------------------------------

    def list_quarantine(self, request: pb.ListQuarantineRequest) -> pb.ListQuarantineResponse:
        """ListQuarantine."""
        return self.quarantine.list(request.page_size, request.page_token)

    def restore(self, request: pb.RestoreQuarantinedRequest) -> pb.RestoreQuarantinedResponse:
        """RestoreQuarantined."""
        return pb.RestoreQuarantinedResponse(results=self.quarantine.restore(request.entry_ids))

    def purge(self, request: pb.PurgeQuarantineRequest) -> pb.PurgeQuarantineResponse:
        """PurgeQuarantine (a dry run unless ``dry_run`` is false)."""
        dry_run = request.dry_run if request.HasField("dry_run") else True
        return self.quarantine.purge(request.entry_ids, dry_run=dry_run)


def budgeted(request: Walking, settings: HardwareSettings, budget_seconds: float | None) -> Walking:
    """``request`` with its walk time cut to ``budget_seconds`` when its own limit is longer.

    The limits are validated first (a malformed one is refused as it would be unbudgeted).

    Raises:
        InvalidArgumentError: the request's limits are malformed or above the maxima.

    """
    if budget_seconds is None:
        return request
    limits = limits_from(request.limits if request.HasField("limits") else None, settings)
    if limits.max_seconds <= budget_seconds:
        return request
    shortened = type(request)()
    shortened.CopyFrom(request)
    shortened.limits.max_duration.FromMilliseconds(
        int(max(MIN_WALK_SECONDS, budget_seconds) * 1000)
    )
    return shortened


def budgeted_settings(settings: HardwareSettings, budget_seconds: float | None) -> HardwareSettings:
    """``settings`` whose default walk time fits ``budget_seconds`` (the storage report's walks).

    The report walks each root with the default limits, one after another: the budget is
    shared among the roots.
    """
    if budget_seconds is None:
        return settings
    share = max(MIN_WALK_SECONDS, budget_seconds)
    if settings.default_max_seconds <= share:
        return settings
    return settings.model_copy(update={"default_max_seconds": share})
