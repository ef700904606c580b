"""``sutazai login``, ``status`` and ``logout`` sharing one saved session, through the mesh."""

from __future__ import annotations

import dataclasses
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sutazai.client import FileTokenStore, SessionTokens
from sutazai.ops.supervisor.environment import settings_environment
from sutazai.runtime.settings import MeshSettings
from tests.client.accounts import new_account
from tests.harness.cli import run_cli

pytestmark = pytest.mark.integration


async def test_login_status_logout(mesh_services: MeshSettings, tmp_path: Path) -> None:
    name, password = await new_account(mesh_services)
    # The mesh's settings, but a token file of this test's own.
    env = {**settings_environment(mesh_services), "SUTAZAI_STATE_DIR": str(tmp_path)}
    store = FileTokenStore(tmp_path)

    anonymous = await run_cli("status", env=env)
    assert "sign in with 'sutazai login'" in anonymous.stdout

    signed_in = await run_cli(
        "login", "--username", name, "--password-stdin", env=env, stdin=f"{password}\n"
    )
    assert signed_in.code == 0, signed_in.stderr
    assert f"signed in as {name}" in signed_in.stdout
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600

    tokens = store.load()
    assert tokens is not None
    store.save(dataclasses.replace(tokens, expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    status = await run_cli("status", "--json", env=env)
    assert '"components"' in status.stdout, status.stderr  # still signed in: refreshed
    refreshed = store.load()
    assert refreshed is not None
    assert refreshed.refresh_token != tokens.refresh_token
    assert refreshed.expires_at > datetime.now(UTC)

    signed_out = await run_cli("logout", env=env)
    assert signed_out.code == 0, signed_out.stderr
    assert "signed out" in signed_out.stdout
    assert not store.path.exists()

    again = await run_cli("logout", env=env)
    assert again.code == 0, again.stderr
    assert "not signed in" in again.stdout


async def test_a_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path)
    store.save(SessionTokens("access", "refresh", datetime.now(UTC) + timedelta(minutes=5)))
    store.path.chmod(0o644)

    run = await run_cli("status", env={"SUTAZAI_STATE_DIR": str(tmp_path)})
    assert run.code == 1
    assert "it must be 0600" in run.stderr
    assert "Traceback" not in run.stderr
