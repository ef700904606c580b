"""The whole mesh through the real CLI: `up --detach`, `status --wait`, `down`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sutazai.ops.supervisor.environment import settings_environment
from sutazai.ops.supervisor.pidfile import running_supervisor
from tests.harness import MeshPorts, build_settings, new_state_dir, remove_state_dir, running
from tests.harness.cli import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = new_state_dir()
    yield path
    remove_state_dir(path)


async def test_up_status_down(state_dir: Path) -> None:
    settings = build_settings(state_dir, MeshPorts.pick())
    env = settings_environment(settings)
    try:
        up = await run_cli("up", "--detach", "--timeout", "120", env=env, timeout=150)
        assert up.code == 0, up.stderr
        supervisor = running_supervisor(state_dir)
        assert supervisor is not None
        family = [supervisor, *(p.pid for p in psutil.Process(supervisor).children(recursive=True))]

        status = await run_cli("status", "--wait", "60", "--json", env=env, timeout=90)
        assert status.code == 0, status.stderr
        document = json.loads(status.stdout)
        # Without a token the status is the overall state only; the components need a login.
        assert document["overall"] == "HEALTHY"

        # Admin is reached through its socket, by the mesh's user, with the CLI.
        clusters = await run_cli("envoy-admin", "/clusters", env=env)
        assert clusters.code == 0, clusters.stderr
        system_endpoints = [
            line
            for line in clusters.stdout.splitlines()
            if line.startswith(f"sutazai.system.v1.SystemService::{settings.run_dir}/system.")
        ]
        assert system_endpoints, clusters.stdout

        again = await run_cli("up", "--detach", env=env)
        assert again.code == 1
        assert "already running" in again.stderr
    finally:
        down = await run_cli("down", env=env, timeout=150)
    assert down.code == 0, down.stderr
    assert running_supervisor(state_dir) is None
    assert not [pid for pid in family if running(pid)]
