"""gRPC handlers of ``sutazai.hardware.v1.HardwareService``: deadlines, threads, statuses.

Who may call what is declared in the proto and enforced by the guard before a handler runs
(reading: any signed-in caller; changes and the quarantine: operators; purge: admins); the
guard also audits every change, allowed or refused. A handler runs its operation in a worker
thread (:class:`~sutazai.services.hardware.operations.Toolbox`) with a cancel token that is set
when the call is cancelled or its deadline passes, and walks are shortened to end before the
deadline (answering ``truncated``) rather than be cut by it. The domain's errors become
statuses here: malformed input INVALID_ARGUMENT naming the field, a path outside the roots
PERMISSION_DENIED, an unknown quarantine entry NOT_FOUND, a cancelled walk CANCELLED (or
DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TypeVar

import grpc
import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.hardware.v1 import hardware_service_pb2_grpc as pb_grpc
from sutazai.runtime.auth import caller_key, require_identity
from sutazai.runtime.faults import (
    RpcStatusError,
    cancelled,
    deadline_exceeded,
    invalid_argument,
    resource_exhausted,
    unavailable,
)
from sutazai.runtime.reclaim import ReclaimResult
from sutazai.runtime.stream_slots import StreamSlots
from sutazai.services.hardware import advice
from sutazai.services.hardware.errors import Cancelled, HardwareError
from sutazai.services.hardware.host import HostSampler
from sutazai.services.hardware.metrics import HardwareMetrics
from sutazai.services.hardware.operations import Toolbox, budgeted, budgeted_settings
from sutazai.services.hardware.processes import reclaim_report
from sutazai.services.hardware.statuses import fault_of
from sutazai.services.hardware.upstream import InferenceAsker

log = structlog.get_logger(__name__)

T = TypeVar("T")

KEEPALIVE_SECONDS = 30.0
"""A watch stream with no sample due for this long sends a keep-alive."""
MIN_INTERVAL_SECONDS = 0.25
MAX_INTERVAL_SECONDS = 60.0
MAX_TOP_PROCESSES = 100
MAX_PAGE_SIZE = 1000
MAX_ENTRY_IDS = 1000
EDGE_TIMEOUT_HEADER = "x-envoy-expected-rq-timeout-ms"
"""What Envoy expects the call to take at most (its route or per-try timeout), when it says."""
EDGE_UNARY_SECONDS = 15.0
"""Envoy ends a unary call after this long (``EdgePolicy.unary_timeout`` in
``gateway/resources.py``), whatever deadline the caller sent: a call that came through Envoy
(on the instance's Unix socket) answers before it."""
EDGE_RETRIED_SECONDS = 5.0
"""...and one attempt of a GET-bound (retried) call after this long (``per_try_timeout``)."""
MARGIN_FRACTION = 0.15
MIN_MARGIN_SECONDS = 0.5
"""Kept back from a call's time for hashing, changes and the answer after a walk ends."""
RECLAIM_WAIT_SECONDS = 3.0
"""How long ReclaimMemory waits for the mesh's processes to answer."""
RETRY_SECONDS = 5.0


class HardwareHandlers(pb_grpc.HardwareServiceServicer):
    """Runs each operation of the :class:`Toolbox` for a caller."""

    def __init__(
        self,
        toolbox: Toolbox,
        *,
        metrics: HardwareMetrics,
        inference: InferenceAsker,
        reclaim: Callable[[bool, float], Awaitable[list[ReclaimResult]]] | None,
        slots: StreamSlots,
        default_interval_seconds: float,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
    ) -> None:
        self._toolbox = toolbox
        self._metrics = metrics
        self._inference = inference
        self._reclaim = reclaim
        self._slots = slots
        self._default_interval = default_interval_seconds
        self._keepalive = keepalive_seconds
        self._closing = asyncio.Event()

    def close(self) -> None:
        """End every watch stream (the instance drains)."""
        self._closing.set()

    # --- measurements ----------------------------------------------------------------------

    async def GetStatus(  # noqa: N802 - generated servicer method name
        self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStatusResponse:
        """A fresh sample of the host."""
        require_identity()
        if request.top_processes > MAX_TOP_PROCESSES:
            raise invalid_argument({"top_processes": f"at most {MAX_TOP_PROCESSES}"})
        with self._measured("GetStatus"):
            return await asyncio.to_thread(self._toolbox.status, request)

    async def WatchMetrics(  # noqa: N802 - generated servicer method name
        self, request: pb.WatchMetricsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchMetricsResponse]:
        """A sample every interval; a keep-alive when none was due for 30 s."""
        identity = require_identity()
        interval = self._default_interval
        violations: dict[str, str] = {}
        if request.HasField("interval"):
            interval = request.interval.ToNanoseconds() / 1e9
            if not MIN_INTERVAL_SECONDS <= interval <= MAX_INTERVAL_SECONDS:
                violations["interval"] = (
                    f"must be from {MIN_INTERVAL_SECONDS:g} s to {MAX_INTERVAL_SECONDS:g} s"
                )
        if request.top_processes > MAX_TOP_PROCESSES:
            violations["top_processes"] = f"at most {MAX_TOP_PROCESSES}"
        if violations:
            raise invalid_argument(violations)
        caller = caller_key(identity, _metadata(context), context.peer())
        if not self._slots.take(caller):
            raise resource_exhausted(
                f"too many streams: at most {self._slots.per_caller} per caller and "
                f"{self._slots.limit} per instance",
                RETRY_SECONDS,
            )
        # Each stream has its own sampler: its rates cover exactly its own interval.
        sampler = HostSampler(self._toolbox.mesh, stale_seconds=interval * 2 + 1)
        self._metrics.watch_streams.inc()
        try:
            async for message in self._samples(sampler, interval, request.top_processes):
                yield message
        finally:
            self._metrics.watch_streams.dec()
            self._slots.give_back(caller)

    async def _samples(
        self, sampler: HostSampler, interval: float, top: int
    ) -> AsyncIterator[pb.WatchMetricsResponse]:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._closing.is_set():
            sample = await asyncio.to_thread(sampler.sample, top)
            yield pb.WatchMetricsResponse(sample=sample)
            next_at = max(next_at + interval, loop.time())
            while not self._closing.is_set():
                wait = next_at - loop.time()
                if wait <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), min(wait, self._keepalive))
                if not self._closing.is_set() and next_at - loop.time() > 0:
                    keepalive = Timestamp()
                    keepalive.GetCurrentTime()
                    yield pb.WatchMetricsResponse(keepalive=keepalive)

    async def GetRecommendations(  # noqa: N802 - generated servicer method name
        self, request: pb.GetRecommendationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRecommendationsResponse:
        """The rules that fire on a fresh sample."""
        require_identity()
        with self._measured("GetRecommendations"):
            return await asyncio.to_thread(self._toolbox.recommendations)

    async def GetAdvice(  # noqa: N802 - generated servicer method name
        self, request: pb.GetAdviceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAdviceResponse:
        """The inference service's explanation of a fresh sample, labelled model output."""
        require_identity()
        with self._measured("GetAdvice"), _faults():
            advice.validate(request)
            found = await asyncio.to_thread(self._toolbox.recommendations)
            settings = self._toolbox.settings
            prompt = advice.build_prompt(
                request,
                found.sample,
                list(found.recommendations),
                default_model=settings.advice_model,
                max_tokens=settings.advice_max_tokens,
            )
            answer = await self._inference.generate(prompt, _remaining(context))
            return pb.GetAdviceResponse(
                label=advice.LABEL,
                model=answer.model,
                advice=answer.text.strip(),
                sample=found.sample,
                recommendations=found.recommendations,
            )

    # --- storage ---------------------------------------------------------------------------

    async def AnalyzeStorage(  # noqa: N802 - generated servicer method name
        self, request: pb.AnalyzeStorageRequest, context: grpc.aio.ServicerContext
    ) -> pb.AnalyzeStorageResponse:
        """Totals, extensions and buckets of a directory."""
        require_identity()
        with self._measured("AnalyzeStorage"), _faults():
            bounded = budgeted(request, self._toolbox.settings, _walk_budget(context))
            reply = await self._blocking(
                context, lambda cancel: self._toolbox.analyze(bounded, cancel, None)
            )
            self._metrics.files_scanned.labels("AnalyzeStorage").inc(reply.scan.files_scanned)
            return reply

    async def FindDuplicates(  # noqa: N802 - generated servicer method name
        self, request: pb.FindDuplicatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.FindDuplicatesResponse:
        """Groups of identical files."""
        require_identity()
        with self._measured("FindDuplicates"), _faults():
            # Half the time for the walk: hashing the candidates comes after it.
            bounded = budgeted(request, self._toolbox.settings, _walk_budget(context, share=0.5))
            reply = await self._blocking(
                context, lambda cancel: self._toolbox.duplicates(bounded, cancel, None)
            )
            self._metrics.files_scanned.labels("FindDuplicates").inc(reply.scan.files_scanned)
            return reply

    async def FindLargeFiles(  # noqa: N802 - generated servicer method name
        self, request: pb.FindLargeFilesRequest, context: grpc.aio.ServicerContext
    ) -> pb.FindLargeFilesResponse:
        """The largest files at or above a size."""
        require_identity()
        with self._measured("FindLargeFiles"), _faults():
            bounded = budgeted(request, self._toolbox.settings, _walk_budget(context))
            reply = await self._blocking(
                context, lambda cancel: self._toolbox.large_files(bounded, cancel, None)
            )
            self._metrics.files_scanned.labels("FindLargeFiles").inc(reply.scan.files_scanned)
            return reply

    async def GetStorageReport(  # noqa: N802 - generated servicer method name
        self, request: pb.GetStorageReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStorageReportResponse:
        """Every allowed root: disk, analysis, duplicates, largest files."""
        require_identity()
        with self._measured("GetStorageReport"), _faults():
            budget = _walk_budget(context, share=0.5, edge_seconds=EDGE_RETRIED_SECONDS)
            roots = max(1, len(self._toolbox.policy.roots))
            settings = budgeted_settings(
                self._toolbox.settings, None if budget is None else budget / roots
            )
            return await self._blocking(
                context,
                lambda cancel: self._toolbox.report(cancel, None, settings),
                edge_seconds=EDGE_RETRIED_SECONDS,
            )

    # --- changes ---------------------------------------------------------------------------

    async def CleanFiles(  # noqa: N802 - generated servicer method name
        self, request: pb.CleanFilesRequest, context: grpc.aio.ServicerContext
    ) -> pb.CleanFilesResponse:
        """Quarantine old temporary and cache files (a dry run unless asked otherwise)."""
        actor = require_identity().username
        with self._measured("CleanFiles"), _faults():
            bounded = budgeted(request, self._toolbox.settings, _walk_budget(context, share=0.5))
            reply = await self._blocking(
                context, lambda cancel: self._toolbox.clean(bounded, actor, cancel, None)
            )
            self._counted(reply.report)
            return reply

    async def Deduplicate(  # noqa: N802 - generated servicer method name
        self, request: pb.DeduplicateRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeduplicateResponse:
        """Keep each group's newest file, quarantine the copies."""
        actor = require_identity().username
        with self._measured("Deduplicate"), _faults():
            bounded = budgeted(request, self._toolbox.settings, _walk_budget(context, share=0.4))
            reply = await self._blocking(
                context, lambda cancel: self._toolbox.deduplicate(bounded, actor, cancel, None)
            )
            self._counted(reply.report)
            return reply

    async def CompressLogs(  # noqa: N802 - generated servicer method name
        self, request: pb.CompressLogsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompressLogsResponse:
        """Gzip old logs when smaller; quarantine the originals."""
        actor = require_identity().username
        with self._measured("CompressLogs"), _faults():
            bounded = budgeted(request, self._toolbox.settings, _walk_budget(context, share=0.4))
            reply = await self._blocking(
                context, lambda cancel: self._toolbox.compress_logs(bounded, actor, cancel, None)
            )
            self._counted(reply.report)
            return reply

    async def RotateLogs(  # noqa: N802 - generated servicer method name
        self, request: pb.RotateLogsRequest, context: grpc.aio.ServicerContext
    ) -> pb.RotateLogsResponse:
        """Rotate large logs; quarantine generations beyond ``keep``."""
        actor = require_identity().username
        with self._measured("RotateLogs"), _faults():
            bounded = budgeted(request, self._toolbox.settings, _walk_budget(context, share=0.5))
            reply = await self._blocking(
                context, lambda cancel: self._toolbox.rotate_logs(bounded, actor, cancel, None)
            )
            self._counted(reply.report)
            return reply

    async def ReniceProcesses(  # noqa: N802 - generated servicer method name
        self, request: pb.ReniceProcessesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReniceProcessesResponse:
        """Lower the priority of the service user's CPU hogs (never system or mesh ones)."""
        require_identity()
        with self._measured("ReniceProcesses"), _faults():
            reply = await asyncio.to_thread(self._toolbox.renice, request)
            self._counted(reply.report)
            return reply

    async def ReclaimMemory(  # noqa: N802 - generated servicer method name
        self, request: pb.ReclaimMemoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReclaimMemoryResponse:
        """Garbage collection and heap trimming in the mesh's service processes."""
        require_identity()
        dry_run = request.dry_run if request.HasField("dry_run") else True
        with self._measured("ReclaimMemory"):
            if self._reclaim is None:
                raise unavailable("memory reclamation needs the service's NATS connection")
            remaining = _remaining(context)
            wait = (
                RECLAIM_WAIT_SECONDS
                if remaining is None
                else min(RECLAIM_WAIT_SECONDS, max(0.1, remaining * 0.5))
            )
            results = await self._reclaim(dry_run, wait)
            reply = reclaim_report(results, dry_run=dry_run)
            self._counted(reply.report)
            return reply

    # --- quarantine ------------------------------------------------------------------------

    async def ListQuarantine(  # noqa: N802 - generated servicer method name
        self, request: pb.ListQuarantineRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListQuarantineResponse:
        """One page of quarantined files, newest first."""
        require_identity()
        if request.page_size > MAX_PAGE_SIZE:
            raise invalid_argument({"page_size": f"at most {MAX_PAGE_SIZE}"})
        with self._measured("ListQuarantine"), _faults():
            return await asyncio.to_thread(self._toolbox.list_quarantine, request)

    async def RestoreQuarantined(  # noqa: N802 - generated servicer method name
        self, request: pb.RestoreQuarantinedRequest, context: grpc.aio.ServicerContext
    ) -> pb.RestoreQuarantinedResponse:
        """Move quarantined files back, byte for byte."""
        require_identity()
        if not 1 <= len(request.entry_ids) <= MAX_ENTRY_IDS:
            raise invalid_argument({"entry_ids": f"1 to {MAX_ENTRY_IDS} entry ids"})
        with self._measured("RestoreQuarantined"), _faults():
            return await asyncio.to_thread(self._toolbox.restore, request)

    async def PurgeQuarantine(  # noqa: N802 - generated servicer method name
        self, request: pb.PurgeQuarantineRequest, context: grpc.aio.ServicerContext
    ) -> pb.PurgeQuarantineResponse:
        """Delete for good the entries past their retention (admins)."""
        require_identity()
        if len(request.entry_ids) > MAX_ENTRY_IDS:
            raise invalid_argument({"entry_ids": f"at most {MAX_ENTRY_IDS} entry ids"})
        with self._measured("PurgeQuarantine"), _faults():
            reply = await asyncio.to_thread(self._toolbox.purge, request)
            if not reply.dry_run:
                self._metrics.bytes_freed.labels("purge").inc(reply.bytes_freed)
            return reply

    # --- plumbing --------------------------------------------------------------------------

    async def _blocking(
        self,
        context: grpc.aio.ServicerContext,
        work: Callable[[threading.Event], T],
        *,
        edge_seconds: float = EDGE_UNARY_SECONDS,
    ) -> T:
        """Run ``work`` in a thread with a cancel token set on cancellation or the deadline."""
        cancel = threading.Event()
        remaining = _remaining(context, edge_seconds)
        loop = asyncio.get_running_loop()
        started = loop.time()
        timer = loop.call_later(remaining, cancel.set) if remaining is not None else None
        future = asyncio.ensure_future(asyncio.to_thread(work, cancel))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancel.set()  # the call was cancelled: the walk stops at its next check
            raise
        except Cancelled:
            if remaining is not None and loop.time() >= started + remaining:
                raise deadline_exceeded("the operation ran out of time") from None
            raise cancelled("the operation was cancelled") from None
        finally:
            if timer is not None:
                timer.cancel()

    @contextlib.contextmanager
    def _measured(self, operation: str) -> Iterator[None]:
        started = time.monotonic()
        outcome = "ok"
        try:
            yield
        except RpcStatusError as exc:
            outcome = exc.code.name
            raise
        except Exception:
            outcome = "INTERNAL"
            raise
        finally:
            self._metrics.operations.labels(operation, outcome).inc()
            self._metrics.seconds.labels(operation).observe(time.monotonic() - started)

    def _counted(self, report: pb.ChangeReport) -> None:
        if report.dry_run:
            return
        for change in report.changes:
            self._metrics.changes.labels(change.action, "failed" if change.error else "made").inc()
            if not change.error:
                self._metrics.bytes_freed.labels(change.action).inc(change.bytes)


@contextlib.contextmanager
def _faults() -> Iterator[None]:
    """The domain's errors as the statuses the proto promises."""
    try:
        yield
    except RpcStatusError:
        raise
    except HardwareError as exc:
        raise fault_of(exc) from exc


def _metadata(context: grpc.aio.ServicerContext) -> Mapping[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def _remaining(
    context: grpc.aio.ServicerContext, edge_seconds: float = EDGE_UNARY_SECONDS
) -> float | None:
    """Seconds the call has: the caller's deadline, or the edge's limit if sooner.

    A call on the Unix socket came through Envoy (direct callers use the TCP port), which ends
    it after ``edge_seconds`` (or what ``x-envoy-expected-rq-timeout-ms`` says) even when the
    caller allowed longer.
    """
    remaining: float | None = context.time_remaining()
    edge: float | None = None
    if context.peer().startswith("unix:"):
        edge = edge_seconds
    header = _metadata(context).get(EDGE_TIMEOUT_HEADER, "")
    if header.isdigit() and int(header) > 0:
        edge = min(edge or math.inf, int(header) / 1000.0)
    if edge is not None:
        remaining = edge if remaining is None else min(remaining, edge)
    return remaining


def _walk_budget(
    context: grpc.aio.ServicerContext,
    share: float = 1.0,
    edge_seconds: float = EDGE_UNARY_SECONDS,
) -> float | None:
    """How long a walk may take so that the call answers in time (None: no deadline)."""
    remaining = _remaining(context, edge_seconds)
    if remaining is None:
        return None
    margin = max(MIN_MARGIN_SECONDS, remaining * MARGIN_FRACTION)
    return max(0.0, (remaining - margin) * share)
