"""Each service's PostgreSQL role and Redis user reach only what is its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError, ResponseError

from sutazai.ops.supervisor.components.postgres import maintenance_dsn
from sutazai.runtime.audit import AuditEvent, AuditLog
from sutazai.runtime.ratelimit import RateLimiter
from sutazai.runtime.settings import MeshSettings


@pytest.fixture
async def system_db(mesh_settings: MeshSettings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(mesh_settings.as_principal("system").postgres_dsn)
    yield connection
    await connection.close()


@pytest.fixture
async def auth_db(mesh_settings: MeshSettings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(mesh_settings.as_principal("auth").postgres_dsn)
    yield connection
    await connection.close()


async def test_each_service_is_an_unprivileged_role_owning_its_own_schema(
    mesh_settings: MeshSettings, system_db: asyncpg.Connection, auth_db: asyncpg.Connection
) -> None:
    for connection, service in ((system_db, "system"), (auth_db, "auth")):
        assert await connection.fetchval("SELECT current_user") == f"sutazai_{service}"
        role = await connection.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = current_user"
        )
        assert role is not None
        assert not any(role.values())
        owner = await connection.fetchval(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", service
        )
        assert owner == f"sutazai_{service}"
        # Its own schema is its own to migrate.
        await connection.execute(f"CREATE TABLE {service}.privilege_probe (id int)")
        await connection.execute(f"DROP TABLE {service}.privilege_probe")
        for statement in (
            "CREATE SCHEMA intruder",
            "CREATE TABLE public.intruder (id int)",
            "CREATE ROLE intruder",
            "CREATE DATABASE intruder",
            f"ALTER ROLE sutazai_{service} SUPERUSER",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(statement)
    owner = await auth_db.fetchval(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
    )
    assert owner == mesh_settings.postgres.user


async def test_the_system_role_cannot_touch_the_auth_schema(
    system_db: asyncpg.Connection, auth_db: asyncpg.Connection
) -> None:
    # The auth service's tables exist once it has migrated; create one here to be sure.
    await auth_db.execute("CREATE TABLE IF NOT EXISTS auth.privilege_target (id int)")
    try:
        for statement in (
            "INSERT INTO auth.privilege_target VALUES (1)",
            "UPDATE auth.privilege_target SET id = 2",
            "DELETE FROM auth.privilege_target",
            "SELECT * FROM auth.privilege_target",
            "CREATE TABLE auth.intruder (id int)",
            "DROP TABLE auth.privilege_target",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await system_db.execute(statement)
    finally:
        await auth_db.execute("DROP TABLE auth.privilege_target")


async def test_every_service_appends_audit_rows_none_changes_them_only_auth_reads(
    mesh_settings: MeshSettings, system_db: asyncpg.Connection, auth_db: asyncpg.Connection
) -> None:
    for connection in (system_db, auth_db):
        await connection.execute(
            "INSERT INTO audit.events (action, outcome, actor) VALUES ('privilege.test', 'ok', $1)",
            await connection.fetchval("SELECT current_user"),
        )
        for statement in (
            "UPDATE audit.events SET outcome = 'forged'",
            "DELETE FROM audit.events",
            "TRUNCATE audit.events",
            "DROP TABLE audit.events",
            "CREATE TABLE audit.intruder (id int)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(statement)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await system_db.fetch("SELECT * FROM audit.events")
    pool = await asyncpg.create_pool(
        mesh_settings.as_principal("auth").postgres_dsn, min_size=1, max_size=1
    )
    try:
        log = AuditLog(pool)
        await log.record(AuditEvent(action="privilege.test", outcome="ok", actor="via-log"))
        actors = {e.actor for e in await log.page(limit=10, action="privilege.test")}
        assert {"sutazai_system", "sutazai_auth", "via-log"} <= actors
    finally:
        await pool.close()
    owner = await asyncpg.connect(maintenance_dsn(mesh_settings, mesh_settings.postgres.database))
    try:
        assert (
            await owner.fetchval(
                "SELECT pg_get_userbyid(relowner) FROM pg_class "
                "WHERE oid = 'audit.events'::regclass"
            )
            == mesh_settings.postgres.audit_owner
        )
    finally:
        await owner.close()


@pytest.fixture
async def system_redis(mesh_settings: MeshSettings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(mesh_settings.as_principal("system").redis_url)
    yield client
    await client.aclose()


async def test_a_service_redis_user_reaches_only_its_prefix_and_data_commands(
    mesh_settings: MeshSettings, system_redis: aioredis.Redis
) -> None:
    await system_redis.set("sutazai:system:probe", "1", ex=60)
    assert await system_redis.get("sutazai:system:probe") == b"1"
    refused = [
        system_redis.config_get("requirepass"),
        system_redis.config_set("appendonly", "no"),
        system_redis.flushall(),
        system_redis.flushdb(),
        system_redis.keys("*"),
        system_redis.execute_command("DEBUG", "SLEEP", "0"),
        system_redis.execute_command("SHUTDOWN", "NOSAVE"),
        system_redis.acl_list(),
        system_redis.execute_command("SAVE"),
        system_redis.execute_command("BGSAVE"),
        system_redis.execute_command("REPLICAOF", "NO", "ONE"),
        system_redis.execute_command("MODULE", "LIST"),
        system_redis.execute_command("SCRIPT", "KILL"),
        system_redis.execute_command("SCRIPT", "FLUSH"),
        system_redis.get("sutazai:auth:anything"),
        system_redis.set("sutazai:auth:anything", "1"),
        system_redis.delete("sutazai:auth:anything"),
        system_redis.set("unprefixed", "1"),
        system_redis.publish("sutazai:auth:events", "x"),
        system_redis.eval("return 1", 1, "sutazai:auth:x"),
    ]
    for call in refused:
        with pytest.raises(NoPermissionError):
            await call
    # A script reaching outside the prefix is refused too, whatever keys it declares.
    with pytest.raises(ResponseError, match="can't access at least one of the keys"):
        await system_redis.eval("return redis.call('GET', 'sutazai:auth:x')", 1, "sutazai:system:x")
    assert await system_redis.publish("sutazai:system:events", "x") == 0

    # The admin (default user) still does what the system user may not, and its value stands.
    admin = aioredis.Redis.from_url(mesh_settings.redis_url)
    try:
        assert (await admin.config_get("appendonly"))["appendonly"] == "yes"
        assert await admin.acl_whoami() == "default"
        system_user = await admin.acl_getuser("sutazai_system")
        assert system_user["keys"] == [b"sutazai:system:*"]
        assert system_user["channels"] == [b"sutazai:system:*"]
    finally:
        await admin.aclose()


async def test_the_rate_limit_script_runs_within_the_service_prefix(
    mesh_settings: MeshSettings, system_redis: aioredis.Redis
) -> None:
    prefix = mesh_settings.redis.key_prefix("system")
    limiter = RateLimiter(system_redis, key_prefix=prefix, per_second=0.01, burst=2)
    decisions = [await limiter.take("privilege-user") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert await system_redis.exists("sutazai:system:ratelimit:privilege-user") == 1
    stray = RateLimiter(system_redis, key_prefix="sutazai:auth:", per_second=1, burst=1)
    with pytest.raises(NoPermissionError):
        await stray.take("privilege-user")
