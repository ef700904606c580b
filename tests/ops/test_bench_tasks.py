"""``python -m sutazai.ops.bench tasks`` end to end on the session mesh, with a tiny run.

The benchmark is a command that prints JSON (its numbers go to docs/benchmarks.md, never into
assertions): this checks that its pieces work together, the mesh side (the bench agent, the
tasks through Envoy, the check of the record) and the Celery side (its Redis and worker), and
that every task of both is found stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from sutazai.ops.bench.figures import latency_summary, percentile
from sutazai.ops.bench.tasks import agent_slots
from sutazai.ops.supervisor.environment import settings_environment
from sutazai.runtime.settings import MeshSettings

TASKS = 12


async def test_the_benchmark_runs_both_sides_and_finds_every_task_stored(
    mesh_services: MeshSettings,
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUTAZAI_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sutazai.ops.bench",
        "tasks",
        "--tasks",
        str(TASKS),
        "--concurrency",
        "3",
        "--celery-fsync",
        "everysec",
        env={**base, **settings_environment(mesh_services)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 240)
    assert process.returncode == 0, stderr.decode()[-3000:]
    result = json.loads(stdout)

    assert set(result["sides"]) == {"mesh", "celery_fsync_everysec"}
    for side in result["sides"].values():
        (run,) = side
        assert run["tasks"] == TASKS
        assert run["verified"] == TASKS, "every acknowledged task is found stored"
        assert run["tasks_per_second"] > 0
        assert 0 < run["latency"]["p50_ms"] <= run["latency"]["p99_ms"]
    mesh_cpu = result["sides"]["mesh"][0]["cpu_ms_per_task"]
    assert {"tasks", "coordinator", "agent", "benchmark"} <= set(mesh_cpu), mesh_cpu
    assert mesh_cpu["total"] >= mesh_cpu["tasks"] > 0
    assert "celery" in result["sides"]["celery_fsync_everysec"][0]["cpu_ms_per_task"]
    assert result["celery_settings"]["celery_fsync_everysec"]["task_acks_late"] is True
    versus = result["mesh_versus"]["celery_fsync_everysec"]
    assert set(versus) == {"throughput", "p50", "p99"}
    assert set(result["goal"]["celery_fsync_everysec"]) == {
        "throughput_at_least_3x",
        "lower_p50",
    }


def test_latency_summary_reads_seconds_as_milliseconds() -> None:
    summary = latency_summary([0.001 * n for n in range(1, 101)])
    assert summary.p50_ms == 50.5
    assert summary.p90_ms == 90.0
    assert summary.p99_ms == 99.0
    assert summary.max_ms == 100.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0


def test_the_agent_has_room_for_twice_the_tasks_in_flight() -> None:
    assert agent_slots(1) == 64
    assert agent_slots(100) == 200
    assert agent_slots(1000) == 1024
