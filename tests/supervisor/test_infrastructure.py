"""The session's real NATS, PostgreSQL and Redis, as the supervisor starts them."""

from __future__ import annotations

import stat
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from redis.exceptions import AuthenticationError, ResponseError

from sutazai.ops.supervisor import Supervisor
from sutazai.ops.supervisor.probes import connect_nats
from sutazai.runtime.secrets import secrets_path
from sutazai.runtime.settings import MeshSettings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_every_component_is_supervised_and_alive(infrastructure: Supervisor) -> None:
    states = {state.name: state for state in infrastructure.snapshot()}
    assert list(states) == ["nats", "postgres", "redis"]
    assert all(state.pid is not None and not state.external for state in states.values())


async def test_secrets_and_rendered_configs_are_private(mesh_settings: MeshSettings) -> None:
    state_dir = mesh_settings.state_dir
    for path in (
        secrets_path(state_dir),
        mesh_settings.keys_file,
        state_dir / "nats" / "nats-server.conf",
        state_dir / "redis" / "redis.conf",
    ):
        assert _mode(path) == 0o600, path
    assert not (state_dir / "postgres" / "initdb.pw").exists()


async def test_nats_has_jetstream_and_requires_the_password(mesh_settings: MeshSettings) -> None:
    client = await connect_nats(mesh_settings)
    try:
        info = await client.jetstream().account_info()
        assert info.limits is not None
    finally:
        await client.close()

    async def _quiet(_: Exception) -> None:
        return None

    anonymous = NatsClient()
    try:
        with pytest.raises(NatsError, match="Authorization Violation"):
            await anonymous.connect(
                servers=mesh_settings.nats_servers,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=2,
                error_cb=_quiet,
            )
    finally:
        # nats-py leaves the socket of a refused connection open until closed explicitly.
        await anonymous.close()


async def test_nats_syncs_every_write(mesh_settings: MeshSettings) -> None:
    config = (mesh_settings.state_dir / "nats" / "nats-server.conf").read_text()
    assert "sync_interval: always" in config


async def test_postgres_serves_the_mesh_database_with_password_auth(
    mesh_settings: MeshSettings,
) -> None:
    auth = mesh_settings.as_principal("auth")
    connection = await asyncpg.connect(auth.postgres_dsn)
    try:
        assert await connection.fetchval("SELECT current_database()") == "sutazai"
        assert await connection.fetchval("SHOW listen_addresses") == "127.0.0.1"
        assert await connection.fetchval("SHOW password_encryption") == "scram-sha-256"
    finally:
        await connection.close()
    wrong = auth.postgres_dsn.replace(
        mesh_settings.secrets.postgres_passwords["auth"], "not-the-password"
    )
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(wrong)


async def test_redis_requires_its_password(mesh_settings: MeshSettings) -> None:
    anonymous = aioredis.Redis(host=mesh_settings.host, port=mesh_settings.redis.port)
    try:
        with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
            await anonymous.ping()
    finally:
        await anonymous.aclose()
    client = aioredis.Redis.from_url(mesh_settings.redis_url)
    try:
        assert await client.ping()
        assert (await client.config_get("appendonly"))["appendonly"] == "yes"
    finally:
        await client.aclose()
