"""`sutazai logs`, `down`, `up` and `serve`: expected failures end in one clear message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sutazai.ops.supervisor.pidfile import PidFile
from sutazai.runtime.secrets import ensure_secrets
from tests.harness.cli import run_cli

pytestmark = pytest.mark.integration


def _env(state_dir: Path) -> dict[str, str]:
    return {"SUTAZAI_STATE_DIR": str(state_dir)}


async def test_logs_prints_the_last_lines(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "redis.log").write_text("".join(f"line {i}\n" for i in range(100)))
    run = await run_cli("logs", "redis", "--lines", "2", env=_env(tmp_path))
    assert run.code == 0, run.stderr
    assert run.stdout.splitlines() == ["line 98", "line 99"]


async def test_logs_of_an_unknown_component_lists_the_known_ones(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "nats.log").write_text("x\n")
    run = await run_cli("--state-dir", str(tmp_path), "logs", "nope", env={})
    assert run.code == 1
    assert "no log for 'nope'" in run.stderr
    assert "nats" in run.stderr
    bad = await run_cli("logs", "../secrets", env=_env(tmp_path))
    assert bad.code == 1
    assert "invalid component name" in bad.stderr


async def test_down_without_a_running_mesh_is_a_no_op(tmp_path: Path) -> None:
    run = await run_cli("down", env=_env(tmp_path))
    assert run.code == 0
    assert "not running" in run.stdout


async def test_up_refuses_a_second_supervisor(tmp_path: Path) -> None:
    with PidFile(tmp_path):
        run = await run_cli("up", "--detach", env=_env(tmp_path))
    assert run.code == 1
    assert f"already running (supervisor pid {os.getpid()})" in run.stderr
    assert "Traceback" not in run.stderr


async def test_serve_names_the_known_services(tmp_path: Path) -> None:
    run = await run_cli("serve", "nope", env=_env(tmp_path))
    assert run.code == 1
    assert "unknown service 'nope' (known: system" in run.stderr


async def test_serve_without_secrets_says_how_to_get_them(tmp_path: Path) -> None:
    run = await run_cli("serve", "system", env=_env(tmp_path / "empty"))
    assert run.code == 1
    assert "sutazai up" in run.stderr
    assert "Traceback" not in run.stderr


async def test_up_generates_private_secrets_once(tmp_path: Path) -> None:
    first = ensure_secrets(tmp_path)
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600
    assert ensure_secrets(tmp_path) == first


async def test_envoy_admin_without_a_running_mesh_names_the_socket(tmp_path: Path) -> None:
    run = await run_cli("envoy-admin", "/clusters", env=_env(tmp_path))
    assert run.code == 1
    assert f"cannot reach Envoy's admin socket {tmp_path}/run/envoy-admin.sock" in run.stderr
    assert "Traceback" not in run.stderr
    relative = await run_cli("envoy-admin", "clusters", env=_env(tmp_path))
    assert relative.code == 1
    assert "must start with '/'" in relative.stderr
