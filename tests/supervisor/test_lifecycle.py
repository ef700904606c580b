"""Supervisor lifecycle on real processes: restarts, shutdown, persistence, parent death."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis.asyncio as aioredis

from sutazai.ops.supervisor import ComponentSpec, Launch, Probe, StartupError, Supervisor
from sutazai.ops.supervisor.components import infrastructure_components
from sutazai.ops.supervisor.components.nats import nats_component
from sutazai.ops.supervisor.components.postgres import postgres_component
from sutazai.ops.supervisor.components.redis import redis_component
from sutazai.ops.supervisor.environment import child_environment, settings_environment
from sutazai.ops.supervisor.probes import connect_nats, redis_ping
from sutazai.runtime.secrets import ensure_secrets, secrets_path
from sutazai.runtime.settings import MeshSettings, RedisSettings
from tests.harness import (
    MeshPorts,
    build_settings,
    component_pid,
    new_state_dir,
    remove_state_dir,
    running,
    supervised,
    wait_for,
)
from tests.harness.mesh import TEST_RESTART_POLICY

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = new_state_dir()
    yield path
    remove_state_dir(path)


@pytest.fixture
def settings(state_dir: Path) -> MeshSettings:
    return build_settings(state_dir, MeshPorts.pick())


@pytest.fixture
async def redis_only(settings: MeshSettings) -> AsyncIterator[Supervisor]:
    env = child_environment(settings)
    async with supervised(settings, [redis_component(settings, env)]) as supervisor:
        yield supervisor


def _family(pids: list[int]) -> list[int]:
    """The pids and every descendant of them (PostgreSQL's backends, for instance)."""
    found = list(pids)
    for pid in pids:
        try:
            found += [child.pid for child in psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return found


async def test_a_killed_child_is_restarted(redis_only: Supervisor) -> None:
    settings = redis_only.settings
    first = component_pid(redis_only, "redis")
    assert first is not None
    os.kill(first, signal.SIGKILL)

    def restarted() -> bool:
        pid = component_pid(redis_only, "redis")
        return pid is not None and pid != first

    await wait_for(restarted, timeout=15, message="redis restarted")
    await wait_for(lambda: _pings(settings), timeout=15, message="restarted redis answers")
    assert redis_only.snapshot()[0].restarts == 1
    log = (settings.state_dir / "logs" / "redis.log").read_text()
    assert log.count("supervisor starts redis") == 2


async def _pings(settings: MeshSettings) -> bool:
    try:
        await redis_ping(settings.redis_url)
    except Exception:
        return False
    return True


SLEEPER = "sleeper"


def _sleeper(settings: MeshSettings, probe: Probe) -> ComponentSpec:
    """A child that runs until stopped (SIGTERM ends it at once), probed by ``probe``."""
    return ComponentSpec(
        name=SLEEPER,
        launch=Launch(
            argv=[sys.executable, "-c", "import time; time.sleep(600)"],
            env=child_environment(settings),
            stop_timeout=2.0,
        ),
        probe=probe,
        start_timeout=20,
    )


def _end_leftovers(pids: list[int]) -> None:
    """Clean up after a failed stop(): the supervision it left running, and its children."""
    for task in asyncio.all_tasks():
        if task.get_name() == f"supervise:{SLEEPER}":
            task.cancel()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


async def _stop_bounded(supervisor: Supervisor, stop: asyncio.Future[None] | None = None) -> None:
    # Generous for a loaded machine, far below pytest's timeout: a hang fails here, named.
    done, _ = await asyncio.wait({stop or asyncio.ensure_future(supervisor.stop())}, timeout=30)
    assert done, "stop() did not return"
    done.pop().result()


@pytest.mark.parametrize("hops", [0, 1, 2])
async def test_stop_just_as_a_restarted_child_turns_healthy_stops_it(
    settings: MeshSettings, hops: int
) -> None:
    # Python 3.11's asyncio.wait_for returns the result instead of raising when it is cancelled
    # just after the awaited probe finished: supervision then outlived stop(), which waited for
    # it forever while it watched a child only stop() would end. `hops` moves stop() a few
    # event-loop steps after the probe's answer, across that window.
    pids: list[int] = []
    stopping: list[asyncio.Future[None]] = []

    def stop_now() -> None:
        stopping.append(asyncio.ensure_future(supervisor.stop()))

    async def probe(pid: int | None) -> None:
        assert pid is not None
        pids.append(pid)
        if len(pids) == 2:  # The restarted child answers: stop right now.
            _after_hops(hops, stop_now)

    supervisor = Supervisor(
        settings, [_sleeper(settings, probe)], restart_policy=TEST_RESTART_POLICY
    )
    await supervisor.start()
    try:
        os.kill(pids[0], signal.SIGKILL)
        await wait_for(lambda: bool(stopping), timeout=15, message="stop() called")
        await _stop_bounded(supervisor, stopping[0])
        assert len(pids) == 2, "a child was started after stop()"
        assert not [pid for pid in pids if running(pid)]
    finally:
        _end_leftovers(pids)


def _after_hops(hops: int, callback: Callable[[], None]) -> None:
    """Run ``callback`` now (0) or that many event-loop steps later."""
    if hops == 0:
        callback()
        return
    asyncio.get_running_loop().call_soon(_after_hops, hops - 1, callback)


async def test_stop_does_not_wait_forever_for_a_probe_that_ignores_cancellation(
    settings: MeshSettings,
) -> None:
    pids: list[int] = []
    released = asyncio.Event()

    async def stubborn(pid: int | None) -> None:
        assert pid is not None
        pids.append(pid)
        if len(pids) == 1:
            return
        # The restarted child's probe never answers and swallows every cancellation.
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()

    supervisor = Supervisor(
        settings, [_sleeper(settings, stubborn)], restart_policy=TEST_RESTART_POLICY
    )
    await supervisor.start()
    try:
        os.kill(pids[0], signal.SIGKILL)
        await wait_for(lambda: len(pids) == 2, timeout=15, message="restarted child probed")
        await _stop_bounded(supervisor)
        assert not running(pids[1])
        released.set()
        # Released, the abandoned supervision ends without starting another child.
        await wait_for(
            lambda: not any(t.get_name() == f"supervise:{SLEEPER}" for t in asyncio.all_tasks()),
            timeout=15,
            message="supervision ended",
        )
        assert len(pids) == 2, "a child was started after stop()"
    finally:
        released.set()
        _end_leftovers(pids)


async def test_stop_leaves_no_process_behind(settings: MeshSettings) -> None:
    components = infrastructure_components(settings, child_environment(settings))
    async with supervised(settings, components) as supervisor:
        pids = [state.pid for state in supervisor.snapshot() if state.pid is not None]
        assert len(pids) == 3
        family = _family(pids)
        assert len(family) > 3  # PostgreSQL's own children are covered too.
    assert not [pid for pid in family if running(pid)]
    mine = {child.pid for child in psutil.Process().children(recursive=True)}
    assert not mine & set(family)


async def test_data_and_secrets_survive_a_restart(settings: MeshSettings) -> None:
    secrets_before = secrets_path(settings.state_dir).read_bytes()

    def components() -> list[ComponentSpec]:
        env = child_environment(settings)
        return [postgres_component(settings, env), redis_component(settings, env)]

    system = settings.as_principal("system")
    async with supervised(settings, components()):
        connection = await asyncpg.connect(system.postgres_dsn)
        try:
            await connection.execute("CREATE TABLE system.survivors (name text PRIMARY KEY)")
            await connection.execute("INSERT INTO system.survivors VALUES ('kept')")
        finally:
            await connection.close()
        client = aioredis.Redis.from_url(system.redis_url)
        try:
            await client.set("sutazai:system:survivor", "kept")
        finally:
            await client.aclose()

    assert ensure_secrets(settings.state_dir) == settings.secrets
    assert secrets_path(settings.state_dir).read_bytes() == secrets_before
    # A fresh settings object, so the secrets are read from disk again.
    restarted = MeshSettings(**settings.model_dump())
    async with supervised(restarted, components()):
        connection = await asyncpg.connect(restarted.as_principal("system").postgres_dsn)
        try:
            assert await connection.fetchval("SELECT name FROM system.survivors") == "kept"
        finally:
            await connection.close()
        client = aioredis.Redis.from_url(restarted.as_principal("system").redis_url)
        try:
            assert await client.get("sutazai:system:survivor") == b"kept"
        finally:
            await client.aclose()


async def test_children_die_with_the_supervisor(settings: MeshSettings) -> None:
    env = {**os.environ, **settings_environment(settings)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.harness.standalone",
        env=env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        pids = list(json.loads(line).values())
        assert len(pids) == 2
        assert all(running(pid) for pid in pids)
    finally:
        process.kill()
        await process.wait()
    await wait_for(
        lambda: not any(running(pid) for pid in pids), timeout=15, message="children gone"
    )


async def test_a_failed_start_reports_the_log_and_stops_what_started(
    settings: MeshSettings,
) -> None:
    env = child_environment(settings)

    async def never(_pid: int | None) -> None:
        raise AssertionError("a crashed component is never probed healthy")

    crashing = ComponentSpec(
        name="crasher",
        launch=Launch(
            argv=[sys.executable, "-c", "print('configuration is broken'); raise SystemExit(3)"],
            env=env,
        ),
        probe=never,
        start_timeout=20,
    )
    supervisor = Supervisor(settings, [redis_component(settings, env), crashing])
    with pytest.raises(StartupError, match="exit status 3") as caught:
        await supervisor.start()
    assert "configuration is broken" in caught.value.log_tail
    assert supervisor.snapshot() == []


async def test_an_external_dependency_is_probed_not_started(mesh_settings: MeshSettings) -> None:
    external = mesh_settings.model_copy(
        update={"redis": RedisSettings(url=mesh_settings.redis_url)}
    )
    spec = redis_component(external, child_environment(external))
    assert spec.external
    async with supervised(external, [spec]) as supervisor:
        assert supervisor.snapshot()[0].pid is None


async def test_nats_keeps_jetstream_data_across_restarts(settings: MeshSettings) -> None:
    env = child_environment(settings)
    async with supervised(settings, [nats_component(settings, env)]):
        client = await connect_nats(settings)
        try:
            kv = await client.jetstream().create_key_value(bucket="survivors")
            await kv.put("k", b"kept")
        finally:
            await client.close()
    async with supervised(settings, [nats_component(settings, env)]):
        client = await connect_nats(settings)
        try:
            kv = await client.jetstream().key_value("survivors")
            assert (await kv.get("k")).value == b"kept"
        finally:
            await client.close()
