"""ReniceProcesses and ReclaimMemory: the two changes that touch processes, not files.

**Renice** lowers the priority (raises the niceness) of CPU hogs, and only of processes that
are safe to slow down: they must belong to the OS user the hardware service runs as (never
another user's, never root's: a service running as root renices nothing and says so), not be
a kernel thread, PID 1 or a known system daemon, and not be one of the mesh's own processes
(the supervisor's tree and every registered instance). Priority is only ever lowered; a
process already at or below the asked niceness is left alone. Right before each change the
process is looked up again (same pid *and* creation time, same owner), so a pid reused
between the sample and the change is not touched.

**ReclaimMemory** is asked of the mesh's own service processes over NATS
(:mod:`sutazai.runtime.reclaim`): garbage collection and ``malloc_trim`` in each, nothing
else (never the kernel's caches). This module turns their answers into the report.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.runtime.reclaim import ReclaimResult
from sutazai.runtime.settings import HardwareSettings
from sutazai.services.hardware.errors import InvalidArgumentError, PreconditionError
from sutazai.services.hardware.host import ProcessSample

DEFAULT_MAX_PROCESSES = 5
MAX_PROCESSES = 20
DEFAULT_NICE = 10
MIN_NICE = 1
MAX_NICE = 19
SYSTEM_NAMES = frozenset(
    {
        "systemd",
        "init",
        "kthreadd",
        "sshd",
        "dbus-daemon",
        "journald",
        "systemd-journald",
        "systemd-logind",
        "systemd-udevd",
        "udevd",
        "cron",
        "crond",
        "rsyslogd",
        "containerd",
        "dockerd",
        "Xorg",
        "Xwayland",
        "gnome-shell",
        "kwin_x11",
        "kwin_wayland",
    }
)
"""Names never reniced even when they run as the service's user (a desktop session's
compositor, a user's own systemd): slowing them down freezes the machine for the user."""


@dataclass(frozen=True, slots=True)
class RenicePlan:
    """What a renice request means once its defaults are filled in."""

    min_cpu_percent: float
    max_processes: int
    nice: int
    dry_run: bool


def plan_from(request: pb.ReniceProcessesRequest, settings: HardwareSettings) -> RenicePlan:
    """The request with its defaults.

    Raises:
        InvalidArgumentError: a field is out of range.

    """
    cpu = request.min_cpu_percent
    if not math.isfinite(cpu) or cpu < 0 or cpu > 100.0 * (psutil.cpu_count() or 1):
        raise InvalidArgumentError("min_cpu_percent", "must be from 0 to 100 per logical core")
    if request.max_processes > MAX_PROCESSES:
        raise InvalidArgumentError("max_processes", f"at most {MAX_PROCESSES}")
    if request.nice != 0 and not MIN_NICE <= request.nice <= MAX_NICE:
        raise InvalidArgumentError("nice", f"must be from {MIN_NICE} to {MAX_NICE}")
    return RenicePlan(
        min_cpu_percent=cpu or settings.cpu_hog_percent,
        max_processes=request.max_processes or DEFAULT_MAX_PROCESSES,
        nice=request.nice or DEFAULT_NICE,
        dry_run=request.dry_run if request.HasField("dry_run") else True,
    )


def refusal(sample: ProcessSample, plan: RenicePlan, own_uid: int) -> str | None:
    """Why ``sample`` must not be reniced, or ``None`` when it may."""
    if sample.pid <= 1 or sample.kernel_thread:
        return "a kernel thread or init"
    if sample.uid == 0:
        return "runs as root"
    if sample.uid != own_uid:
        return "another user's process"
    if sample.mesh:
        return "one of the mesh's own processes"
    if sample.name in SYSTEM_NAMES:
        return "a system process"
    if sample.cpu_percent < plan.min_cpu_percent:
        return "not a CPU hog"
    if sample.nice >= plan.nice:
        return "already at a lower priority"
    return None


def candidates(
    processes: Sequence[ProcessSample], plan: RenicePlan, own_uid: int
) -> list[ProcessSample]:
    """The processes to renice, busiest first, at most ``plan.max_processes``."""
    allowed = [p for p in processes if refusal(p, plan, own_uid) is None]
    allowed.sort(key=lambda p: (p.cpu_percent, p.pid), reverse=True)
    return allowed[: plan.max_processes]


def renice(
    request: pb.ReniceProcessesRequest,
    *,
    settings: HardwareSettings,
    processes: Callable[[], list[ProcessSample]],
    own_uid: int | None = None,
    apply: Callable[[ProcessSample, int], None] | None = None,
) -> pb.ChangeReport:
    """Plan (and unless a dry run, make) the renice changes of ``request``.

    ``processes`` samples every process with its CPU share; ``apply`` changes one (default:
    :func:`apply_nice`, which checks the process again first).

    Raises:
        InvalidArgumentError: a request field is out of range.
        PreconditionError: the service runs as root.

    """
    plan = plan_from(request, settings)
    uid = os.getuid() if own_uid is None else own_uid
    if uid == 0 or (own_uid is None and os.geteuid() == 0):
        raise PreconditionError(
            "the hardware service runs as root: it renices only its own user's processes and "
            "never root's, so there is nothing it may renice (run the mesh as an ordinary user)"
        )
    change = apply or apply_nice
    report = pb.ChangeReport(dry_run=plan.dry_run)
    for process in candidates(processes(), plan, uid):
        item = pb.PlannedChange(
            action="renice",
            target=f"pid {process.pid} {process.name}",
            reason=(
                f"{process.cpu_percent:.0f}% CPU (threshold {plan.min_cpu_percent:g}%); "
                f"niceness {process.nice} -> {plan.nice}"
            ),
        )
        if not plan.dry_run:
            try:
                change(process, plan.nice)
            except (PreconditionError, psutil.Error, OSError) as exc:
                item.error = _reason(exc)
        if item.error:
            report.failed += 1
        else:
            report.changed += 1
        report.changes.append(item)
    return report


def apply_nice(process: ProcessSample, nice: int) -> None:
    """Set ``process``'s niceness to ``nice`` if it is still the same, ours, and higher priority.

    Raises:
        PreconditionError: the pid now names another process, or another user's, or it is
            already at a lower priority.
        psutil.Error: it ended, or the kernel refused.

    """
    current = psutil.Process(process.pid)
    if current.create_time() != process.create_time:
        raise PreconditionError("the process ended; its pid names another one now")
    if current.uids().real != process.uid:
        raise PreconditionError("the process changed its user")
    if current.nice() >= nice:
        raise PreconditionError("already at a lower priority")
    current.nice(nice)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, psutil.NoSuchProcess):
        return "the process ended"
    if isinstance(exc, psutil.AccessDenied):
        return "the kernel refused (permission)"
    return str(exc)[:200] or type(exc).__name__


def reclaim_report(results: Sequence[ReclaimResult], *, dry_run: bool) -> pb.ReclaimMemoryResponse:
    """The report of the mesh processes' answers to a reclamation request."""
    report = pb.ChangeReport(dry_run=dry_run)
    before = after = 0
    for result in results:
        freed = max(0, result.rss_before_bytes - result.rss_after_bytes)
        before += result.rss_before_bytes
        after += result.rss_after_bytes
        if dry_run:
            reason = f"resident {result.rss_before_bytes / 2**20:.1f} MiB"
        elif result.skipped:
            reason = f"nothing done: {result.skipped}"
        else:
            trim = " and malloc_trim" if result.trimmed else ""
            reason = f"garbage collection ({result.collected} objects){trim}"
        item = pb.PlannedChange(
            action="reclaim",
            target=f"pid {result.pid} {result.service}",
            bytes=0 if dry_run else freed,
            reason=reason,
        )
        report.changes.append(item)
        report.changed += 1
        report.bytes_freed += item.bytes
    return pb.ReclaimMemoryResponse(
        report=report, rss_before_bytes=before, rss_after_bytes=before if dry_run else after
    )
