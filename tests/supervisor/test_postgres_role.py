"""PostgreSQL roles: the superuser kept for the supervisor, upgrades from one shared role, retired
services' roles dropped."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from sutazai.ops.supervisor import ComponentSpec
from sutazai.ops.supervisor.components.postgres import maintenance_dsn, postgres_component
from sutazai.ops.supervisor.components.postgres_roles import scram_verifier
from sutazai.ops.supervisor.environment import child_environment
from sutazai.runtime.credentials import CREDENTIALS_DIR
from sutazai.runtime.deployment import load_catalog
from sutazai.runtime.secrets import load_secrets, secrets_path
from sutazai.runtime.settings import MeshSettings
from tests.harness import MeshPorts, build_settings, new_state_dir, remove_state_dir, supervised

pytestmark = pytest.mark.integration

LEGACY_APP_ROLE = "sutazai_app"
"""The one role every service shared in an older release."""
RETIRED_ROLE = "sutazai_openai"
"""The role of a service an older release had (``/openai/v1`` is now the inference service's)."""


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
        assert owner == mesh_settings.postgres.user
        assert not await connection.fetchval(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            mesh_settings.postgres.audit_owner,
        )
        assert not await connection.fetchval(
            "SELECT 1 FROM pg_roles WHERE rolname = $1", LEGACY_APP_ROLE
        )
    finally:
        await connection.close()
    secrets = mesh_settings.secrets
    assert secrets.postgres_password not in secrets.postgres_passwords.values()
    assert len(set(secrets.postgres_passwords.values())) == len(secrets.postgres_passwords)


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
    """A state directory of the release where every service shared the role ``sutazai_app``."""
    path = new_state_dir()
    legacy = {
        "postgres_password": "legacy-superuser-password",
        "postgres_app_password": "legacy-app-password",
        "redis_password": "legacy-redis-password",
        "nats_passwords": {"admin": "legacy-admin-password", "openai": "retired-nats-password"},
        "postgres_passwords": {"openai": "retired-service-password"},
        "redis_passwords": {"openai": "retired-redis-password"},
    }
    fd = os.open(secrets_path(path), os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(legacy, handle)
    credentials = path / CREDENTIALS_DIR
    credentials.mkdir(mode=0o700)
    (credentials / "openai.json").write_text('{"principal": "openai"}')
    yield path
    remove_state_dir(path)


def _retired_role_dsn(settings: MeshSettings) -> str:
    return (
        f"postgresql://{RETIRED_ROLE}:retired-service-password@{settings.internal_host}:"
        f"{settings.postgres.port}/{settings.postgres.database}"
    )


# What the shared role of the older release owned: the database, every schema and table.
_LEGACY_LAYOUT = (
    "CREATE ROLE sutazai_app LOGIN",
    "ALTER DATABASE sutazai OWNER TO sutazai_app",
    "ALTER SCHEMA auth OWNER TO sutazai_app",
    "ALTER SCHEMA audit OWNER TO sutazai_app",
    "ALTER TABLE audit.events OWNER TO sutazai_app",
    "ALTER TABLE audit.schema_migrations OWNER TO sutazai_app",
    "SET ROLE sutazai_app",
    "CREATE TABLE auth.legacy_users (id bigint GENERATED ALWAYS AS IDENTITY, name text)",
    "INSERT INTO auth.legacy_users (name) VALUES ('ada')",
    "CREATE TABLE auth.legacy_serial (id serial)",
    "CREATE FUNCTION auth.legacy_f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "INSERT INTO audit.events (action, outcome) VALUES ('legacy.event', 'ok')",
    "RESET ROLE",
    # A service of an older release, with a schema and data of its own and its own login.
    "CREATE ROLE sutazai_openai LOGIN PASSWORD 'retired-service-password'",
    "GRANT CONNECT ON DATABASE sutazai TO sutazai_openai",
    "CREATE SCHEMA openai AUTHORIZATION sutazai_openai",
    "SET ROLE sutazai_openai",
    "CREATE TABLE openai.kept (note text)",
    "INSERT INTO openai.kept (note) VALUES ('still here')",
    "RESET ROLE",
)


async def test_an_older_state_directory_is_upgraded_to_a_role_per_service(
    legacy_state_dir: Path,
) -> None:
    settings = build_settings(legacy_state_dir, MeshPorts.pick())
    secrets = load_secrets(legacy_state_dir)
    # Existing secrets are kept, the missing ones added, the shared one retired.
    assert secrets.postgres_password == "legacy-superuser-password"
    assert secrets.redis_password == "legacy-redis-password"
    assert secrets.nats_password("admin") == "legacy-admin-password"
    assert {"auth", "system"} <= set(secrets.postgres_passwords) & set(secrets.redis_passwords)
    # So are a retired service's passwords and credentials file.
    text = secrets_path(legacy_state_dir).read_text()
    assert "postgres_app_password" not in text
    assert "retired-" not in text
    assert "openai" not in secrets.nats_passwords
    assert not (legacy_state_dir / CREDENTIALS_DIR / "openai.json").exists()
    assert secrets_path(legacy_state_dir).stat().st_mode & 0o777 == 0o600

    services = [entry.name for entry in load_catalog()]

    def component() -> list[ComponentSpec]:
        return [postgres_component(settings, child_environment(settings))]

    async with supervised(settings, component()):
        admin = await asyncpg.connect(maintenance_dsn(settings, "sutazai"))
        try:
            for statement in _LEGACY_LAYOUT:
                await admin.execute(statement)
        finally:
            await admin.close()
        retired = await asyncpg.connect(_retired_role_dsn(settings))
        assert await retired.fetchval("SELECT count(*) FROM openai.kept") == 1
        await retired.close()

    async with supervised(settings, component()):
        admin = await asyncpg.connect(maintenance_dsn(settings, "sutazai"))
        try:
            owners = dict(
                await admin.fetch(
                    "SELECT c.oid::regclass::text, pg_get_userbyid(c.relowner) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname IN ('auth', 'audit') AND c.relkind IN ('r', 'S')"
                )
            )
            assert owners["auth.legacy_users"] == "sutazai_auth"
            assert owners["auth.legacy_serial_id_seq"] == "sutazai_auth"
            assert owners["audit.events"] == "sutazai_audit"
            assert owners["audit.schema_migrations"] == "sutazai_audit"
            assert (
                await admin.fetchval(
                    "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'legacy_f'"
                )
                == "sutazai_auth"
            )
            assert (
                await admin.fetchval(
                    "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'sutazai'"
                )
                == settings.postgres.user
            )
            assert not await admin.fetchval(
                "SELECT 1 FROM pg_roles WHERE rolname = ANY($1::text[])",
                [LEGACY_APP_ROLE, RETIRED_ROLE],
            )
            # The retired service's data is kept, now the superuser's.
            assert (
                await admin.fetchval(
                    "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'openai'"
                )
                == settings.postgres.user
            )
            assert await admin.fetchval("SELECT note FROM openai.kept") == "still here"
            # The audit owner (no login) and every service of the catalog keep their roles.
            kept = [settings.postgres.audit_owner, *map(settings.postgres.service_role, services)]
            assert await admin.fetchval(
                "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1::text[])", kept
            ) == len(kept)
        finally:
            await admin.close()
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
            await asyncpg.connect(_retired_role_dsn(settings))
        auth = await asyncpg.connect(settings.as_principal("auth").postgres_dsn)
        try:
            assert await auth.fetchval("SELECT name FROM auth.legacy_users") == "ada"
            await auth.execute("INSERT INTO auth.legacy_users (name) VALUES ('bob')")
            assert (
                await auth.fetchval(
                    "SELECT count(*) FROM audit.events WHERE action = 'legacy.event'"
                )
                == 1
            )
        finally:
            await auth.close()
        system = await asyncpg.connect(settings.as_principal("system").postgres_dsn)
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await system.execute("DELETE FROM audit.events")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await system.execute("INSERT INTO auth.legacy_users (name) VALUES ('eve')")
        finally:
            await system.close()
