"""PostgreSQL: pgserver's bundled binaries run directly, or a probe of an external server.

The embedded cluster lives in ``<state dir>/postgres/data``, listens on ``host:port`` only
(its unix socket stays inside the state directory), and accepts scram-sha-256 password logins
only. Its bootstrap superuser (``settings.postgres.user``) is for the supervisor's
administration; each service connects as its own role, owner of its own schema, which the
bootstrap step creates with the audit log and its grants (:mod:`.postgres_roles`).
PostgreSQL refuses to run as root, so under root it runs as the unprivileged system user
:data:`SYSTEM_USER`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from signal import Signals
from urllib.parse import quote

import asyncpg
import structlog

from sutazai.ops.supervisor.binaries import postgres_bin_dir
from sutazai.ops.supervisor.components.postgres_roles import (
    drop_retired_roles,
    ensure_database,
    ensure_login_role,
    ensure_owner_role,
    grant_audit_access,
    lock_public_schema,
    own_schema,
    quote_identifier,
)
from sutazai.ops.supervisor.errors import LaunchError
from sutazai.ops.supervisor.probes import postgres_select_one
from sutazai.ops.supervisor.spec import ComponentSpec, Launch
from sutazai.ops.supervisor.system_user import (
    chown_tree,
    ensure_system_user,
    grant_traverse,
    identity_of,
)
from sutazai.runtime import audit
from sutazai.runtime.deployment import load_catalog
from sutazai.runtime.files import replace_file
from sutazai.runtime.migrations import MigrationError, apply, discover
from sutazai.runtime.settings import MeshSettings

log = structlog.get_logger(__name__)

NAME = "postgres"
SYSTEM_USER = "sutazai-pg"
"""The account PostgreSQL runs as when the supervisor is root."""


@dataclass(frozen=True, slots=True)
class PostgresLayout:
    """Where the embedded cluster keeps its files."""

    root: Path

    @property
    def data(self) -> Path:
        """The cluster's data directory (PGDATA)."""
        return self.root / "data"

    @property
    def sockets(self) -> Path:
        """The unix-socket directory, private to the server's account."""
        return self.root / "run"


def maintenance_dsn(settings: MeshSettings, database: str = "postgres") -> str:
    """The superuser's DSN of ``database``; by default ``postgres``, which exists from initdb."""
    password = quote(settings.secrets.postgres_password, safe="")
    return (
        f"postgresql://{quote(settings.postgres.user, safe='')}:{password}@"
        f"{settings.internal_host}:{settings.postgres.port}/{quote(database, safe='')}"
    )


def postgres_component(
    settings: MeshSettings, env: Mapping[str, str], *, services: Sequence[str] | None = None
) -> ComponentSpec:
    """PostgreSQL: embedded unless ``settings.postgres.dsn`` names an external server.

    The embedded server gets a role and a schema for each of ``services`` (default: those of
    ``deploy/mesh.toml``) and the audit log. An external one gets the audit log's migrations,
    applied with the one account configured for it.
    """
    if settings.postgres.dsn is not None:
        dsn = settings.postgres.dsn.get_secret_value()

        async def migrate_audit() -> None:
            await _migrate_external_audit(dsn)

        return ComponentSpec(
            name=NAME, probe=lambda _pid: postgres_select_one(dsn), bootstrap=migrate_audit
        )
    bin_dir = postgres_bin_dir()
    layout = PostgresLayout(settings.state_dir / "postgres")
    account = SYSTEM_USER if os.geteuid() == 0 else None
    names = [entry.name for entry in load_catalog()] if services is None else list(services)

    async def prepare() -> None:
        await _prepare(settings, layout, bin_dir, account)

    async def bootstrap() -> None:
        await _ensure_service_access(settings, names)

    return ComponentSpec(
        name=NAME,
        launch=Launch(
            argv=[
                str(bin_dir / "postgres"),
                "-D",
                str(layout.data),
                "-h",
                settings.internal_host,
                "-p",
                str(settings.postgres.port),
                "-k",
                str(layout.sockets),
                "-c",
                "unix_socket_permissions=0700",
            ],
            env=env,
            user=account,
            # SIGTERM is a "smart" shutdown that waits for every client to disconnect;
            # SIGINT is the fast one: abort transactions, checkpoint, exit.
            stop_signal=Signals.SIGINT,
            stop_timeout=30.0,
        ),
        prepare=prepare,
        probe=lambda _pid: postgres_select_one(maintenance_dsn(settings)),
        bootstrap=bootstrap,
        start_timeout=60.0,
    )


async def _prepare(
    settings: MeshSettings, layout: PostgresLayout, bin_dir: Path, account: str | None
) -> None:
    layout.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    layout.sockets.mkdir(exist_ok=True, mode=0o700)
    if account is not None:
        entry = ensure_system_user(account)
        # The account must reach its directory and the binaries, nothing more.
        grant_traverse(settings.state_dir)
        grant_traverse(bin_dir)
        for directory in (layout.root, layout.sockets):
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        if layout.data.exists() and layout.data.stat().st_uid != entry.pw_uid:
            chown_tree(layout.data, entry)
    if not (layout.data / "PG_VERSION").exists():
        await _initdb(settings, layout, bin_dir, account)


async def _initdb(
    settings: MeshSettings, layout: PostgresLayout, bin_dir: Path, account: str | None
) -> None:
    # initdb into a staging directory renamed on success, so an interrupted initdb never
    # leaves a half-initialised data directory that the next start would trip over.
    staging = layout.root / "data.initdb"
    shutil.rmtree(staging, ignore_errors=True)
    if layout.data.exists():
        raise LaunchError(f"{layout.data} exists but holds no PostgreSQL cluster (no PG_VERSION)")
    password_file = layout.root / "initdb.pw"
    replace_file(password_file, settings.secrets.postgres_password + "\n")
    if account is not None:
        shutil.chown(password_file, user=account, group=account)
    identity = identity_of(account)
    try:
        process = await asyncio.create_subprocess_exec(
            str(bin_dir / "initdb"),
            "--pgdata",
            str(staging),
            "--username",
            settings.postgres.user,
            f"--pwfile={password_file}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            user=identity.uid,
            group=identity.gid,
            extra_groups=identity.extra_groups,
        )
        output, _ = await process.communicate()
    finally:
        password_file.unlink(missing_ok=True)
    if process.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise LaunchError(f"initdb failed:\n{output.decode(errors='replace').strip()}")
    staging.rename(layout.data)


async def _ensure_service_access(settings: MeshSettings, services: Sequence[str]) -> None:
    """Create (or repair, or upgrade) the roles, the database, the schemas and the grants.

    Idempotent. Runs as the superuser: first in the maintenance database (roles, the mesh
    database), then in the mesh database (schemas, the audit log, grants, retired roles).
    """
    pg = settings.postgres
    roles = {service: pg.service_role(service) for service in services}
    if pg.user in {*roles.values(), pg.audit_owner}:
        raise LaunchError(
            f"a service role or {pg.audit_owner!r} would be the superuser {pg.user!r}"
        )
    readers = [roles[service] for service in pg.audit_readers if service in roles]
    try:
        connection = await asyncpg.connect(maintenance_dsn(settings), timeout=5.0)
        try:
            for service, role in roles.items():
                await ensure_login_role(
                    connection, role, settings.secrets.postgres_passwords[service]
                )
            await ensure_owner_role(connection, pg.audit_owner)
            await ensure_database(connection, pg.database, owner=pg.user, users=roles.values())
        finally:
            await connection.close()
        connection = await asyncpg.connect(maintenance_dsn(settings, pg.database), timeout=5.0)
        try:
            await lock_public_schema(connection)
            for service, role in roles.items():
                await own_schema(connection, service, role)
            await own_schema(connection, audit.SCHEMA, pg.audit_owner)
            # The audit log's migrations run as its owner, so that everything they create is
            # the owner's and not the superuser's.
            await connection.execute(f"SET ROLE {quote_identifier(pg.audit_owner)}")
            await apply(connection, audit.SCHEMA, discover(audit.MIGRATIONS))
            await connection.execute("RESET ROLE")
            await grant_audit_access(
                connection, audit.SCHEMA, writers=roles.values(), readers=readers
            )
            retired = await drop_retired_roles(
                connection, prefix=pg.role_prefix, keep=roles.values(), heir=pg.user
            )
            if retired:
                log.info("postgres.retired_roles_dropped", roles=retired)
        finally:
            await connection.close()
    except (OSError, asyncpg.PostgresError, MigrationError) as exc:
        raise LaunchError(f"cannot set up the roles and schemas of {pg.database!r}: {exc}") from exc


async def _migrate_external_audit(dsn: str) -> None:
    try:
        connection = await asyncpg.connect(dsn, timeout=5.0)
        try:
            await apply(connection, audit.SCHEMA, discover(audit.MIGRATIONS))
        finally:
            await connection.close()
    except (OSError, asyncpg.PostgresError, MigrationError) as exc:
        raise LaunchError(f"cannot migrate the audit log: {exc}") from exc
