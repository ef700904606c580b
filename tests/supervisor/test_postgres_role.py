"""The PostgreSQL application role: what services connect as, and what it may not do."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from sutazai.services.runtime.secrets import load_secrets, secrets_path
from sutazai.services.runtime.settings import MeshSettings
from sutazai.services.supervisor import ComponentSpec
from sutazai.services.supervisor.components.postgres import maintenance_dsn, postgres_component
from sutazai.services.supervisor.components.postgres_roles import scram_verifier
from sutazai.services.supervisor.environment import child_environment
from tests.harness import MeshPorts, build_settings, new_state_dir, remove_state_dir, supervised


async def test_services_connect_as_an_unprivileged_owner_of_the_mesh_database(
    mesh_settings: MeshSettings,
) -> None:
    connection = await asyncpg.connect(mesh_settings.postgres_dsn)
    try:
        assert await connection.fetchval("SELECT current_user") == "sutazai_app"
        role = await connection.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = current_user"
        )
        assert role is not None
        assert not any(role.values())
        # It runs its own migrations: schemas and tables in its database, and in public.
        await connection.execute("CREATE SCHEMA app_role_test")
        await connection.execute("CREATE TABLE app_role_test.t (id int PRIMARY KEY)")
        await connection.execute("INSERT INTO app_role_test.t VALUES (1)")
        await connection.execute("CREATE TABLE public.app_role_test_t (id int)")
        assert await connection.fetchval("SELECT count(*) FROM app_role_test.t") == 1
        await connection.execute("DROP SCHEMA app_role_test CASCADE")
        await connection.execute("DROP TABLE public.app_role_test_t")

        for statement in (
            "CREATE ROLE intruder",
            "CREATE DATABASE intruder",
            "ALTER ROLE sutazai_app SUPERUSER",
            "ALTER ROLE sutazai_app CREATEROLE",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(statement)
    finally:
        await connection.close()


async def test_the_superuser_is_kept_for_administration(mesh_settings: MeshSettings) -> None:
    connection = await asyncpg.connect(maintenance_dsn(mesh_settings))
    try:
        assert await connection.fetchval("SELECT current_user") == mesh_settings.postgres.user
        assert await connection.fetchval(
            "SELECT rolsuper FROM pg_roles WHERE rolname = $1", "sutazai"
        )
        owner = await connection.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1",
            mesh_settings.postgres.database,
        )
        assert owner == "sutazai_app"
    finally:
        await connection.close()
    assert mesh_settings.secrets.postgres_password != mesh_settings.secrets.postgres_app_password
    assert mesh_settings.secrets.postgres_app_password not in maintenance_dsn(mesh_settings)


def test_the_scram_verifier_has_postgres_format() -> None:
    verifier = scram_verifier("secret", salt=b"0123456789abcdef")
    assert verifier == scram_verifier("secret", salt=b"0123456789abcdef")
    assert verifier != scram_verifier("secret")
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    assert method == "SCRAM-SHA-256"
    assert iterations_salt.startswith("4096:")
    assert len(keys.split(":")) == 2


@pytest.fixture
def legacy_state_dir() -> Iterator[Path]:
    """A state directory whose secrets predate the application role and NATS principals."""
    path = new_state_dir()
    legacy = {
        "postgres_password": "legacy-superuser-password",
        "redis_password": "legacy-redis-password",
        "nats_password": "legacy-shared-nats-password",
        "jwt_signing_key": "legacy-signing-key",
    }
    fd = os.open(secrets_path(path), os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(legacy, handle)
    yield path
    remove_state_dir(path)


async def test_an_older_state_directory_gets_the_role_on_its_next_start(
    legacy_state_dir: Path,
) -> None:
    settings = build_settings(legacy_state_dir, MeshPorts.pick())
    secrets = load_secrets(legacy_state_dir)
    # Existing secrets are kept; the missing ones are added, and the file stays private.
    assert secrets.postgres_password == "legacy-superuser-password"
    assert secrets.redis_password == "legacy-redis-password"
    assert secrets.postgres_app_password
    assert {"admin", "gateway", "system"} <= set(secrets.nats_passwords)
    assert secrets_path(legacy_state_dir).stat().st_mode & 0o777 == 0o600
    assert settings.keys_file.stat().st_mode & 0o777 == 0o600

    def component() -> list[ComponentSpec]:
        return [postgres_component(settings, child_environment(settings))]

    async with supervised(settings, component()):
        # Make the cluster look as it did before the role existed: database owned by the
        # superuser, no application role.
        admin = await asyncpg.connect(maintenance_dsn(settings))
        try:
            await admin.execute('ALTER DATABASE sutazai OWNER TO "sutazai"')
            await admin.execute("DROP ROLE sutazai_app")
        finally:
            await admin.close()
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
            await asyncpg.connect(settings.postgres_dsn)

    async with supervised(settings, component()):
        app = await asyncpg.connect(settings.postgres_dsn)
        try:
            assert await app.fetchval("SELECT current_user") == "sutazai_app"
            await app.execute("CREATE TABLE after_upgrade (id int)")
            owner = await app.fetchval(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
            )
            assert owner == "sutazai_app"
        finally:
            await app.close()
