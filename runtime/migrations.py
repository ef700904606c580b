"""Schema migrations: numbered SQL files applied once each, in order, under an advisory lock.

Each owner (a service, or the shared audit log) keeps its files in one package directory named
``NNNN_description.sql`` and its history in ``<schema>.schema_migrations``. Every file runs in
its own transaction together with its history row, so a crash leaves either both or neither;
the advisory lock makes concurrent instances of a service wait instead of racing.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from sutazai.runtime.errors import MeshRuntimeError

log = structlog.get_logger(__name__)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]*$")


class MigrationError(MeshRuntimeError):
    """Migrations are malformed, or the database's history does not match them."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the SQL, to catch an applied file that was edited afterwards."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(package: str) -> list[Migration]:
    """The migrations in a package directory, in version order.

    Raises:
        MigrationError: a misnamed file or a repeated version.
    """
    found: dict[int, Migration] = {}
    root: Traversable = files(package)
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"{package}/{entry.name}: name it NNNN_description.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{package}: version {version} appears twice")
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


Connection = asyncpg.Connection | PoolConnectionProxy
"""A plain connection or one borrowed from a pool."""


async def apply(conn: Connection, schema: str, migrations: list[Migration]) -> list[str]:
    """Apply the migrations not yet applied to ``schema``; return the names applied.

    Raises:
        MigrationError: an applied migration was changed or removed.
    """
    if not _SCHEMA.match(schema):
        raise MigrationError(f"bad schema name {schema!r}")
    lock = zlib.crc32(f"sutazai.migrations.{schema}".encode())
    await conn.execute("SELECT pg_advisory_lock($1)", lock)
    try:
        # Only when missing: a service's role owns its schema but may not create schemas, and
        # PostgreSQL checks that right before it looks at IF NOT EXISTS.
        if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
            await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        # The schema name is interpolated (identifiers cannot be parameters); _SCHEMA vetted it.
        history = f"{schema}.schema_migrations"
        rows = await conn.fetch(f"SELECT version, name, checksum FROM {history}")  # noqa: S608
        applied = {r["version"]: r for r in rows}
        known = {m.version: m for m in migrations}
        for version, row in applied.items():
            migration = known.get(version)
            if migration is None:
                raise MigrationError(f"{schema}: applied migration {row['name']} is missing")
            if migration.checksum != row["checksum"]:
                raise MigrationError(f"{schema}: applied migration {row['name']} was edited")
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {schema}")
                await conn.execute(migration.sql)
                await conn.execute(
                    f"INSERT INTO {history} (version, name, checksum) VALUES ($1, $2, $3)",  # noqa: S608
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("migration.applied", schema=schema, migration=migration.name)
            done.append(migration.name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock)


async def migrate(pool: asyncpg.Pool, schema: str, package: str) -> list[str]:
    """Apply a package's migrations to ``schema`` using one connection of ``pool``."""
    async with pool.acquire() as conn:
        return await apply(conn, schema, discover(package))
