"""No-op tasks end to end through the mesh, beside Celery 5 on Redis, in one run.

The mesh side (:func:`mesh_round`): a throw-away user creates ``bench.noop`` tasks over gRPC
through Envoy (``TaskService/CreateTask``), ``concurrency`` of them in flight; the benchmark's
agent (``[agents.bench]`` of ``deploy/mesh.toml``, an SDK agent in a process of its own, see
:mod:`.noop_agent`) runs each with a handler that returns ``{}``; the task service stores
SUCCEEDED. A task is done when one ``WatchTasks`` stream of the user (final states only)
brings it: the stream re-reads every changed task from PostgreSQL, so what it sends is the
stored row. Latency runs from just before ``CreateTask`` is sent to that message; throughput is
tasks over the time from the first create to the last done. Afterwards every task is listed
back (``ListTasks``) and counted SUCCEEDED with its result: what was acknowledged is stored.

The Celery side is :mod:`.celery_side`; :func:`compare` runs both and the ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import asdict, replace
from typing import Any

import grpc

from sutazai.ops.bench import celery_side, cpu
from sutazai.ops.bench.accounts import sign_in
from sutazai.ops.bench.errors import BenchError
from sutazai.ops.bench.figures import SideResult, latency_summary
from sutazai.runtime.credentials import credentials_path
from sutazai.runtime.settings import MeshSettings
from sutazai.tasks.v1 import task_service_pb2 as pb
from sutazai.tasks.v1 import task_service_pb2_grpc as pb_grpc

TASK_TYPE = "bench.noop"
"""The task type the benchmark's agent offers (and nothing else runs)."""
AGENT_NAME = "bench"
"""The agent principal of ``[agents.bench]`` in ``deploy/mesh.toml`` (external: no process)."""
AGENT_INSTANCE = "1"
WARM_UP_TASKS = 20
TASK_TIMEOUT_SECONDS = 60.0
"""How long one task may take from create to done before the run fails."""
AGENT_START_SECONDS = 30.0


def agent_slots(concurrency: int) -> int:
    """The agent's ``max_concurrency``: twice the tasks in flight, so its slots never limit.

    The coordinator counts an agent busy by the larger of its own unfinished assignments and
    the agent's last heartbeat (written at most every quarter second), so an agent with
    exactly ``concurrency`` slots would look full for a moment after each burst.
    """
    return min(1024, max(64, 2 * concurrency))


_FINAL = (pb.TASK_STATE_SUCCEEDED, pb.TASK_STATE_FAILED, pb.TASK_STATE_CANCELLED)


# The agent process ------------------------------------------------------------------------------


def agent_environment(mesh: MeshSettings) -> dict[str, str]:
    """The environment of the agent process: this one's, as the ``bench`` principal.

    Only the path of the agent's credentials file (written by ``sutazai up``) is passed, never
    a secret, as the supervisor does for its children.
    """
    path = credentials_path(mesh.state_dir, AGENT_NAME)
    if not path.is_file():
        raise BenchError(
            f"{path} is missing: the mesh's deploy/mesh.toml has no [agents.{AGENT_NAME}], "
            "or 'sutazai up' has not run with it"
        )
    return {
        **os.environ,
        "SUTAZAI_PRINCIPAL": AGENT_NAME,
        "SUTAZAI_NATS__USER": AGENT_NAME,
        "SUTAZAI_CREDENTIALS_FILE": str(path),
        "SUTAZAI_AGENT_INSTANCE_ID": AGENT_INSTANCE,
    }


@contextlib.asynccontextmanager
async def agent_process(mesh: MeshSettings, concurrency: int) -> AsyncIterator[int]:
    """The no-op agent in a process of its own, started and ready; yields its pid.

    Its log (JSON lines on stderr, INFO as any agent of the mesh) goes to a temporary file,
    shown if it fails to start. Stopped with SIGTERM (it drains) when the block ends, killed if
    it does not exit.
    """
    with tempfile.TemporaryFile() as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sutazai.ops.bench.noop_agent",
            "--concurrency",
            str(concurrency),
            env=agent_environment(mesh),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        try:
            if process.stdout is None:
                raise BenchError("the agent process has no stdout")
            try:
                async with asyncio.timeout(AGENT_START_SECONDS):
                    line = await process.stdout.readline()
            except TimeoutError:
                line = b""
            if line.strip() != b"ready":
                log.seek(0)
                tail = log.read()[-2000:].decode(errors="replace")
                raise BenchError(f"the bench agent did not start:\n{tail}")
            yield process.pid
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(15):
                        await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()


# The mesh side ----------------------------------------------------------------------------------


class _Finished:
    """When each task was seen final on the watch stream, and how it ended."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.states: dict[str, int] = {}
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self.listening = asyncio.Event()

    def seen(self, task: pb.Task) -> None:
        if task.task_id in self.at or task.state not in _FINAL:
            return
        now = time.perf_counter()
        self.at[task.task_id] = now
        self.states[task.task_id] = task.state
        waiter = self._waiters.pop(task.task_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(now)

    async def wait(self, task_id: str) -> float:
        if task_id in self.at:
            return self.at[task_id]
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters[task_id] = waiter
        async with asyncio.timeout(TASK_TIMEOUT_SECONDS):
            return await waiter


async def _watch(stub: pb_grpc.TaskServiceStub, token: str, finished: _Finished) -> None:
    request = pb.WatchTasksRequest(type=TASK_TYPE, states=_FINAL, snapshot_size=1)
    async for message in stub.WatchTasks(request, metadata=_auth(token)):
        finished.listening.set()  # the first message (a snapshot or a keep-alive) says so
        if message.HasField("task"):
            finished.seen(message.task)


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def _create_and_wait(
    stub: pb_grpc.TaskServiceStub, token: str, finished: _Finished
) -> tuple[str, float]:
    started = time.perf_counter()
    reply = await stub.CreateTask(
        pb.CreateTaskRequest(type=TASK_TYPE, timeout_seconds=60, max_attempts=1),
        metadata=_auth(token),
        timeout=TASK_TIMEOUT_SECONDS,
    )
    done = await finished.wait(reply.task.task_id)
    return reply.task.task_id, done - started


async def _run_tasks(
    stub: pb_grpc.TaskServiceStub, token: str, finished: _Finished, tasks: int, concurrency: int
) -> tuple[list[str], list[float], float]:
    """``tasks`` create-and-wait calls, ``concurrency`` at a time; ids, latencies, seconds."""
    ids: list[str] = []
    latencies: list[float] = []
    remaining = tasks

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            task_id, latency = await _create_and_wait(stub, token, finished)
            ids.append(task_id)
            latencies.append(latency)

    began = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, tasks)):
            group.create_task(caller())
    return ids, latencies, time.perf_counter() - began


async def _stored(stub: pb_grpc.TaskServiceStub, token: str, ids: Sequence[str]) -> int:
    """How many of ``ids`` are stored SUCCEEDED with a result (listed back from the record)."""
    wanted = set(ids)
    found = 0
    page_token = ""
    while True:
        page = await stub.ListTasks(
            pb.ListTasksRequest(
                type=TASK_TYPE,
                states=[pb.TASK_STATE_SUCCEEDED],
                page_size=100,
                page_token=page_token,
            ),
            metadata=_auth(token),
            timeout=30,
        )
        found += sum(1 for t in page.tasks if t.task_id in wanted and t.HasField("result"))
        page_token = page.next_page_token
        if not page_token:
            return found


async def mesh_round(
    stub: pb_grpc.TaskServiceStub, token: str, *, tasks: int, concurrency: int
) -> SideResult:
    """One round of the mesh side: a watch, then the tasks, then the check of the record."""
    finished = _Finished()
    watch = asyncio.create_task(_watch(stub, token, finished))
    try:
        async with asyncio.timeout(30):
            await finished.listening.wait()
        ids, latencies, seconds = await _run_tasks(stub, token, finished, tasks, concurrency)
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await watch
    failed = [i for i in ids if finished.states.get(i) != pb.TASK_STATE_SUCCEEDED]
    if failed:
        raise BenchError(f"mesh: {len(failed)} of {len(ids)} tasks did not succeed")
    return SideResult(
        side="mesh",
        tasks=len(ids),
        concurrency=concurrency,
        seconds=round(seconds, 3),
        tasks_per_second=round(len(ids) / seconds, 1),
        latency=latency_summary(latencies),
        verified=await _stored(stub, token, ids),
    )


# Both sides -------------------------------------------------------------------------------------


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _ratios(mesh: SideResult, celery: SideResult) -> dict[str, float]:
    return {
        "throughput": round(mesh.tasks_per_second / celery.tasks_per_second, 2),
        "p50": round(mesh.latency.p50_ms / celery.latency.p50_ms, 2),
        "p99": round(mesh.latency.p99_ms / celery.latency.p99_ms, 2),
    }


def _best(results: Sequence[SideResult]) -> SideResult:
    return max(results, key=lambda r: r.tasks_per_second)


async def compare(
    mesh: MeshSettings,
    *,
    tasks: int,
    concurrency: int,
    rounds: int,
    fsyncs: Sequence[str],
) -> dict[str, Any]:
    """Both sides, ``rounds`` times each (alternating), and how the mesh compares.

    Raises:
        BenchError: a side could not run, or a task did not succeed.

    """
    edge = f"{mesh.host}:{mesh.envoy.port}"
    token = await sign_in(edge)
    load_before = _load()
    results: dict[str, list[SideResult]] = {"mesh": []}
    async with contextlib.AsyncExitStack() as stack:
        agent_pid = await stack.enter_async_context(agent_process(mesh, agent_slots(concurrency)))
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(edge))
        sides = [
            await stack.enter_async_context(celery_side.celery(fsync, concurrency))
            for fsync in fsyncs
        ]
        stub = pb_grpc.TaskServiceStub(channel)
        await mesh_round(stub, token, tasks=WARM_UP_TASKS, concurrency=1)
        for side in sides:
            results[side.name] = []
            await side.run(WARM_UP_TASKS, 1)

        async def measured(round_: Awaitable[SideResult]) -> SideResult:
            before = cpu.snapshot(agent_pid=agent_pid)
            result = await round_
            spent = cpu.per_task(before, cpu.snapshot(agent_pid=agent_pid), result.tasks)
            return replace(result, cpu_ms_per_task=spent)

        for _ in range(rounds):
            results["mesh"].append(
                await measured(mesh_round(stub, token, tasks=tasks, concurrency=concurrency))
            )
            for side in sides:
                results[side.name].append(await measured(side.run(tasks, concurrency)))
        celery_settings = {side.name: side.settings for side in sides}
    load_after = _load()
    mesh_best = _best(results["mesh"])
    versus = {name: _ratios(mesh_best, _best(rs)) for name, rs in results.items() if name != "mesh"}
    return {
        "benchmark": "tasks_noop_round_trip",
        "tasks": tasks,
        "concurrency": concurrency,
        "rounds": rounds,
        "agent_pid": agent_pid,
        "load_average": {"before": load_before, "after": load_after},
        "sides": {name: [asdict(r) for r in rs] for name, rs in results.items()},
        "celery_settings": celery_settings,
        "best": {name: _headline(_best(rs)) for name, rs in results.items()},
        "mesh_versus": versus,
        "goal": {
            name: {
                "throughput_at_least_3x": ratio["throughput"] >= 3.0,
                "lower_p50": ratio["p50"] < 1.0,
            }
            for name, ratio in versus.items()
        },
    }


def _headline(result: SideResult) -> dict[str, float]:
    return {
        "tasks_per_second": result.tasks_per_second,
        "p50_ms": result.latency.p50_ms,
        "p99_ms": result.latency.p99_ms,
    }
