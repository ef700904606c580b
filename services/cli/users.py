"""``sutazai users``: account administration straight against PostgreSQL.

``users create`` is how the first admin comes to exist: there is no default account or
password anywhere, and it needs no running auth service, only the mesh's database (it applies
the auth schema's migrations first).
"""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated

import asyncpg
import typer

from sutazai.services.auth.domain import User
from sutazai.services.auth.server import SERVICE_NAME as AUTH_SERVICE
from sutazai.services.auth.server import open_accounts
from sutazai.services.auth.trail import CREATED_BY_CLI
from sutazai.services.cli.console import out
from sutazai.services.cli.context import mesh_settings
from sutazai.services.cli.errors import CliError
from sutazai.services.cli.login import read_password
from sutazai.services.runtime.faults import RpcStatusError
from sutazai.services.runtime.roles import Role
from sutazai.services.runtime.settings import MeshSettings

_CONNECT_TIMEOUT = 10.0

users = typer.Typer(name="users", help="Administer accounts.", no_args_is_help=True)


@users.command()
def create(
    ctx: typer.Context,
    username: Annotated[
        str, typer.Option("--username", help="3 to 32 letters, digits, '.', '_' or '-'.")
    ],
    email: Annotated[str, typer.Option("--email", help="The account's e-mail address.")],
    role: Annotated[str, typer.Option("--role", help="user, operator or admin.")] = "user",
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
    ] = False,
) -> None:
    """Create an account (for example the first admin) in the mesh's database."""
    try:
        parsed = Role.from_label(role)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    settings = mesh_settings(ctx)
    password = read_password(from_stdin=password_stdin, confirm=True)
    user = asyncio.run(create_account(settings, username, email, password, parsed))
    out.print(f"created {user.role.label} {user.username} <{user.email}> (id {user.user_id})")


async def create_account(
    settings: MeshSettings, username: str, email: str, password: str, role: Role
) -> User:
    """Create an account directly in PostgreSQL, audited as created by the CLI.

    Raises:
        CliError: PostgreSQL unreachable, or the account refused (bad input, name taken).

    """
    # Accounts are the auth service's data: the CLI works on them as the auth service's role.
    dsn = settings.as_principal(AUTH_SERVICE).postgres_dsn
    try:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1, timeout=_CONNECT_TIMEOUT)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise CliError(
            f"cannot reach PostgreSQL ({exc}); is the mesh running ('sutazai up')?"
        ) from exc
    try:
        accounts = await open_accounts(settings, pool)
        return await accounts.create(
            username=username,
            email=email,
            password=password,
            role=role,
            actor=f"cli:{_os_user()}",
            action=CREATED_BY_CLI,
        )
    except RpcStatusError as exc:
        raise CliError(f"cannot create the account: {exc.message}") from exc
    finally:
        await pool.close()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # No login name in the environment or the password database (e.g. some containers).
        return "unknown"
