"""Accounts for client tests, made as an operator makes them: ``sutazai users create``."""

from __future__ import annotations

import secrets

from sutazai.ops.supervisor.environment import settings_environment
from sutazai.runtime.settings import MeshSettings
from tests.harness.cli import run_cli


async def new_account(settings: MeshSettings, role: str = "user") -> tuple[str, str]:
    """Create a ``role`` account with a random name and password; return both."""
    username = f"c{role[:2]}{secrets.token_hex(4)}"
    password = f"{secrets.token_urlsafe(12)}-Aa1"
    created = await run_cli(
        "users",
        "create",
        "--username",
        username,
        "--email",
        f"{username}@example.org",
        "--role",
        role,
        "--password-stdin",
        env=settings_environment(settings),
        stdin=f"{password}\n",
    )
    assert created.code == 0, created.stderr
    return username, password
