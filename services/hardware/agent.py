"""The hardware agent (``[agents.hardware-optimizer]``, deploy/mesh.toml): operations as tasks.

Each task type ``hardware.<operation>`` takes the operation's request message as its payload
(proto3 JSON, field names as in the proto) and returns its response message (proto3 JSON,
snake_case names) as the result. The operations are the service's own
(:class:`~sutazai.services.hardware.operations.Toolbox`), run in a worker thread in this
process on the same host, state directory and quarantine; long ones report progress and stop
when the task is cancelled or its deadline comes (a walk ends ``truncated`` just before it).

Who may create the mutating types is declared by ``task_roles`` in ``deploy/mesh.toml`` and
enforced by the task service at CreateTask; the quarantine manifest names ``task <id>`` as
the actor (the task record names its creator). Run by the supervisor as principal
``hardware-optimizer`` (grant ``runtime_reclaim_call``), or by hand:
``sutazai serve hardware-optimizer --instance 1``.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.faults import RpcStatusError
from sutazai.runtime.logging import configure_logging
from sutazai.runtime.reclaim import ask_reclaim
from sutazai.runtime.settings import MeshSettings
from sutazai.sdk import Agent, AgentSettings, InvalidPayloadError, TaskContext, TaskError, run
from sutazai.services.hardware.errors import Cancelled, HardwareError, InvalidArgumentError
from sutazai.services.hardware.operations import Toolbox, budgeted, budgeted_settings
from sutazai.services.hardware.processes import reclaim_report
from sutazai.services.hardware.statuses import fault_of
from sutazai.services.hardware.walk import Progress

M = TypeVar("M", bound=Message)

AGENT_NAME: Final = "hardware-optimizer"
"""The table of ``deploy/mesh.toml`` and the agent's NATS principal (a service and an agent
cannot share a principal, so the agent is not named ``hardware``)."""
MAX_CONCURRENCY: Final = 2
"""Tasks at once: walks and hashing are disk-bound; two keep the disk busy without thrashing."""
MARGIN_FRACTION = 0.1
MIN_MARGIN_SECONDS = 2.0
"""Kept back from a task's deadline for hashing, changes and the final report."""
RECLAIM_WAIT_SECONDS = 3.0
PROGRESS_SCALE = 20_000.0
"""Files at which a walk's progress reads about 63 % (the total is unknown in advance)."""

MUTATING: Final = frozenset(
    {
        "hardware.clean_files",
        "hardware.deduplicate",
        "hardware.compress_logs",
        "hardware.rotate_logs",
        "hardware.renice_processes",
        "hardware.reclaim_memory",
    }
)
"""The task types that change something (operators only: ``task_roles``)."""


@dataclass(frozen=True, slots=True)
class _Job:
    """One task type: its request message and what runs it."""

    request: type[Message]
    run: Callable[[Toolbox, Any, str, threading.Event, Progress | None, float | None], Message]


def _walk_budget(remaining: float) -> float:
    return max(0.0, remaining - max(MIN_MARGIN_SECONDS, remaining * MARGIN_FRACTION))


JOBS: Final[dict[str, _Job]] = {
    "hardware.get_status": _Job(pb.GetStatusRequest, lambda t, r, a, c, p, b: t.status(r)),
    "hardware.get_recommendations": _Job(
        pb.GetRecommendationsRequest, lambda t, r, a, c, p, b: t.recommendations()
    ),
    "hardware.analyze_storage": _Job(
        pb.AnalyzeStorageRequest,
        lambda t, r, a, c, p, b: t.analyze(budgeted(r, t.settings, b), c, p),
    ),
    "hardware.find_duplicates": _Job(
        pb.FindDuplicatesRequest,
        lambda t, r, a, c, p, b: t.duplicates(
            budgeted(r, t.settings, None if b is None else b / 2), c, p
        ),
    ),
    "hardware.find_large_files": _Job(
        pb.FindLargeFilesRequest,
        lambda t, r, a, c, p, b: t.large_files(budgeted(r, t.settings, b), c, p),
    ),
    "hardware.get_storage_report": _Job(
        pb.GetStorageReportRequest,
        lambda t, r, a, c, p, b: t.report(
            c,
            p,
            budgeted_settings(
                t.settings, None if b is None else b / 2 / max(1, len(t.policy.roots))
            ),
        ),
    ),
    "hardware.clean_files": _Job(
        pb.CleanFilesRequest,
        lambda t, r, a, c, p, b: t.clean(
            budgeted(r, t.settings, None if b is None else b / 2), a, c, p
        ),
    ),
    "hardware.deduplicate": _Job(
        pb.DeduplicateRequest,
        lambda t, r, a, c, p, b: t.deduplicate(
            budgeted(r, t.settings, None if b is None else b * 0.4), a, c, p
        ),
    ),
    "hardware.compress_logs": _Job(
        pb.CompressLogsRequest,
        lambda t, r, a, c, p, b: t.compress_logs(
            budgeted(r, t.settings, None if b is None else b * 0.4), a, c, p
        ),
    ),
    "hardware.rotate_logs": _Job(
        pb.RotateLogsRequest,
        lambda t, r, a, c, p, b: t.rotate_logs(
            budgeted(r, t.settings, None if b is None else b / 2), a, c, p
        ),
    ),
    "hardware.renice_processes": _Job(
        pb.ReniceProcessesRequest, lambda t, r, a, c, p, b: t.renice(r)
    ),
}
"""Every task type run in a worker thread (``hardware.reclaim_memory`` asks over NATS)."""
TASK_TYPES: Final = frozenset({*JOBS, "hardware.reclaim_memory"})


def parse_payload(payload: dict[str, Any], request: type[M]) -> M:
    """The payload as ``request`` (proto3 JSON), or the violation of the field it gets wrong.

    Raises:
        InvalidPayloadError: unknown fields, wrong types or values out of range.

    """
    try:
        return json_format.ParseDict(payload, request())
    except json_format.ParseError as exc:
        raise InvalidPayloadError({"payload": str(exc)[:300]}) from None


def result_of(message: Message) -> dict[str, Any]:
    """A response message as the task's result (proto3 JSON, the proto's field names)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _progress(task: TaskContext, loop: asyncio.AbstractEventLoop) -> Progress:
    """A walk's progress as the task's, sent from the worker thread to the event loop."""

    def report(files_done: int, message: str) -> None:
        fraction = round(0.9 * (1.0 - math.exp(-files_done / PROGRESS_SCALE)), 3)
        note = f"{files_done} files: {message}" if message else f"{files_done} files"
        loop.call_soon_threadsafe(_send, task, fraction, note)

    return report


def _send(task: TaskContext, fraction: float, note: str) -> None:
    sending = asyncio.ensure_future(task.report_progress(fraction, note))
    # A progress report that fails (NATS away) is not the task's failure.
    sending.add_done_callback(lambda done: done.cancelled() or done.exception())


def _failure(exc: HardwareError) -> TaskError:
    fault = fault_of(exc)
    if isinstance(exc, InvalidArgumentError):
        return InvalidPayloadError({exc.field: exc.reason})
    retryable = fault.code in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL}
    return TaskError(fault.message, retryable=retryable, code=fault.code)


def handler_for(toolbox: Toolbox, task_type: str) -> Callable[[TaskContext], Any]:
    """The SDK handler of one task type."""
    if task_type == "hardware.reclaim_memory":
        return _reclaim_handler

    job = JOBS[task_type]

    async def handle(task: TaskContext) -> dict[str, Any]:
        request = parse_payload(task.payload, job.request)
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        progress = _progress(task, loop)
        budget = _walk_budget(task.time_remaining())
        await task.report_progress(0.0, "started")
        work = asyncio.ensure_future(
            asyncio.to_thread(
                job.run, toolbox, request, f"task {task.task_id}", cancel, progress, budget
            )
        )
        try:
            response = await asyncio.shield(work)
        except asyncio.CancelledError:
            cancel.set()  # cancelled, or the deadline: the walk stops at its next check
            raise
        except Cancelled:
            raise TaskError("the operation was cancelled", code=grpc.StatusCode.CANCELLED) from None
        except HardwareError as exc:
            raise _failure(exc) from None
        except RpcStatusError as exc:
            raise TaskError(exc.message, retryable=False, code=exc.code) from None
        await task.report_progress(1.0, "done")
        return result_of(response)

    return handle


async def _reclaim_handler(task: TaskContext) -> dict[str, Any]:
    request = parse_payload(task.payload, pb.ReclaimMemoryRequest)
    dry_run = request.dry_run if request.HasField("dry_run") else True
    wait = min(RECLAIM_WAIT_SECONDS, max(0.1, task.time_remaining() / 2))
    results = await ask_reclaim(task.nats, dry_run=dry_run, wait_seconds=wait)
    return result_of(reclaim_report(results, dry_run=dry_run))


def build_agent(settings: AgentSettings, toolbox: Toolbox) -> Agent:
    """The hardware agent with a handler per task type, not started."""
    agent = Agent(AGENT_NAME, settings=settings, max_concurrency=MAX_CONCURRENCY)
    for task_type in sorted(TASK_TYPES):
        agent.register(task_type, handler_for(toolbox, task_type))
    return agent


async def run_agent(mesh: MeshSettings, instance_id: str) -> None:
    """Run instance ``instance_id`` (its supervisor slot) until SIGTERM/SIGINT, then drain."""
    toolbox = await asyncio.to_thread(Toolbox.open, mesh)
    await run(build_agent(AgentSettings(instance_id=instance_id), toolbox), mesh)


def main() -> None:
    """Entry point of ``python -m sutazai.services.hardware.agent``."""
    configure_logging(AGENT_NAME)
    mesh = MeshSettings()
    asyncio.run(run(build_agent(AgentSettings(), Toolbox.open(mesh)), mesh))


if __name__ == "__main__":
    main()
