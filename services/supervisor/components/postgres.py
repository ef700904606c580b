"""PostgreSQL: pgserver's bundled binaries run directly, or a probe of an external server.

The embedded cluster lives in ``<state dir>/postgres/data``, listens on ``host:port`` only
(its unix socket stays inside the state directory), and accepts scram-sha-256 password logins
only. Its bootstrap superuser (``settings.postgres.user``) is for the supervisor's
administration; services connect as the application role ``settings.postgres.app_user``, which
the bootstrap step creates and makes the owner of the mesh database (:mod:`.postgres_roles`).
PostgreSQL refuses to run as root, so under root it runs as the unprivileged system user
:data:`SYSTEM_USER`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from signal import Signals
from urllib.parse import quote

import asyncpg

from sutazai.services.runtime.settings import MeshSettings
from sutazai.services.supervisor.binaries import postgres_bin_dir
from sutazai.services.supervisor.components.postgres_roles import (
    ensure_app_database,
    ensure_app_role,
)
from sutazai.services.supervisor.errors import LaunchError
from sutazai.services.supervisor.files import write_private
from sutazai.services.supervisor.probes import postgres_select_one
from sutazai.services.supervisor.spec import ComponentSpec, Launch
from sutazai.services.supervisor.system_user import (
    chown_tree,
    ensure_system_user,
    grant_traverse,
    identity_of,
)

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


def maintenance_dsn(settings: MeshSettings) -> str:
    """The superuser's DSN of the ``postgres`` database (exists before the mesh database)."""
    password = quote(settings.secrets.postgres_password, safe="")
    return (
        f"postgresql://{quote(settings.postgres.user, safe='')}:{password}@"
        f"{settings.internal_host}:{settings.postgres.port}/postgres"
    )


def postgres_component(settings: MeshSettings, env: Mapping[str, str]) -> ComponentSpec:
    """PostgreSQL: embedded unless ``settings.postgres.dsn`` names an external server."""
    if settings.postgres.dsn is not None:
        dsn = settings.postgres_dsn
        return ComponentSpec(name=NAME, probe=lambda _pid: postgres_select_one(dsn))
    bin_dir = postgres_bin_dir()
    layout = PostgresLayout(settings.state_dir / "postgres")
    account = SYSTEM_USER if os.geteuid() == 0 else None

    async def prepare() -> None:
        await _prepare(settings, layout, bin_dir, account)

    async def bootstrap() -> None:
        await _ensure_app_access(settings)

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
    write_private(password_file, settings.secrets.postgres_password + "\n")
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


async def _ensure_app_access(settings: MeshSettings) -> None:
    """Create (or repair) the application role and the mesh database it owns. Idempotent."""
    pg = settings.postgres
    if pg.app_user == pg.user:
        raise LaunchError(
            f"the application role {pg.app_user!r} must differ from the superuser {pg.user!r}"
        )
    try:
        connection = await asyncpg.connect(maintenance_dsn(settings), timeout=5.0)
        try:
            await ensure_app_role(connection, pg.app_user, settings.secrets.postgres_app_password)
            await ensure_app_database(connection, pg.database, owner=pg.app_user)
        finally:
            await connection.close()
    except (OSError, asyncpg.PostgresError) as exc:
        raise LaunchError(
            f"cannot set up role {pg.app_user!r} and database {pg.database!r}: {exc}"
        ) from exc
