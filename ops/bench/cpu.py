"""CPU time per process over a benchmark round, read with psutil: where a task's CPU goes.

On a 2-core machine the task round trip is CPU-bound, so throughput follows the CPU each task
costs summed over every process it crosses; this says which process spends it. Processes are
named by role: a mesh service by its ``serve <name>``, the benchmark's own process and its
agent by what they are, anything else by its executable (``postgres``, ``nats-server``,
``envoy``, ``redis-server``, ``celery``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

import psutil

SHOWN_MS: float = 0.05
"""Roles spending less per task than this are left out of the figures (their sum is not)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every readable process's CPU time (user + system, seconds) and role, at one moment."""

    seconds: dict[int, tuple[str, float]]


def snapshot(*, agent_pid: int | None = None) -> Snapshot:
    """Read every process now (those that cannot be read are skipped)."""
    found: dict[int, tuple[str, float]] = {}
    for process in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        times = process.info["cpu_times"]
        if times is None:
            continue
        info = process.info
        role = _role(process.pid, info["name"] or "", info["cmdline"] or [], agent_pid)
        found[process.pid] = (role, times.user + times.system)
    return Snapshot(found)


def per_task(before: Snapshot, after: Snapshot, tasks: int) -> dict[str, float]:
    """Milliseconds of CPU per task by role between two snapshots, largest first, and the total.

    A process that started in between counts whole; one that ended in between is not seen.
    """
    spent: defaultdict[str, float] = defaultdict(float)
    for pid, (role, seconds) in after.seconds.items():
        earlier = before.seconds.get(pid)
        spent[role] += seconds - (earlier[1] if earlier is not None else 0.0)
    figures = {
        role: round(seconds * 1e3 / tasks, 2)
        for role, seconds in sorted(spent.items(), key=lambda item: -item[1])
        if seconds * 1e3 / tasks >= SHOWN_MS
    }
    figures["total"] = round(sum(spent.values()) * 1e3 / tasks, 2)
    return figures


def _role(pid: int, name: str, cmdline: list[str], agent_pid: int | None) -> str:
    if pid == os.getpid():
        return "benchmark"
    if pid == agent_pid:
        return "agent"
    if "serve" in cmdline[:-1] and "sutazai.ops.cli" in cmdline:
        return cmdline[cmdline.index("serve") + 1]
    if any("celery" in part for part in cmdline[:3]):
        return "celery"
    return name
