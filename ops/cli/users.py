"""``sutazai users``: account administration straight against the mesh's stores.

``users create`` is how the first admin comes to exist: there is no default account or
password anywhere, and it needs no running auth service, only the mesh's database (it applies
the auth schema's migrations first). ``users revoke`` also writes the revocation bucket (NATS,
as ``admin``) and ``users unlock`` clears sign-in locks in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
import nats.errors
import redis.asyncio as aioredis
import typer

from sutazai.ops.cli.console import out
from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError
from sutazai.ops.cli.login import read_password
from sutazai.runtime.faults import RpcStatusError
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.revocations import Revocations
from sutazai.runtime.roles import Role
from sutazai.runtime.settings import MeshSettings
from sutazai.services.auth.accounts import Accounts
from sutazai.services.auth.domain import User
from sutazai.services.auth.server import SERVICE_NAME as AUTH_SERVICE
from sutazai.services.auth.server import open_accounts
from sutazai.services.auth.trail import CREATED_BY_CLI

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
    async with administration(settings) as accounts:
        try:
            return await accounts.create(
                username=username,
                email=email,
                password=password,
                role=role,
                actor=_actor(),
                action=CREATED_BY_CLI,
            )
        except RpcStatusError as exc:
            raise CliError(f"cannot create the account: {exc.message}") from exc


@users.command()
def revoke(
    ctx: typer.Context, username: Annotated[str, typer.Argument(help="The user to sign out.")]
) -> None:
    """Sign a user out everywhere: refresh tokens and every access token issued until now."""
    settings = mesh_settings(ctx)
    refresh_tokens = asyncio.run(revoke_sessions(settings, username))
    out.print(
        f"revoked {refresh_tokens} refresh tokens of {username}; "
        "their access tokens are refused by every service"
    )


@users.command()
def unlock(
    ctx: typer.Context, username: Annotated[str, typer.Argument(help="The user to unlock.")]
) -> None:
    """End a user's sign-in locks and slow-downs, from every client address."""
    settings = mesh_settings(ctx)
    cleared = asyncio.run(unlock_user(settings, username))
    out.print(f"unlocked {username} ({cleared} locked or slowed-down addresses cleared)")


async def revoke_sessions(settings: MeshSettings, username: str) -> int:
    """Revoke every session of ``username``; the number of refresh tokens revoked.

    Raises:
        CliError: a store unreachable, or no such user.

    """
    async with administration(settings, revoking=True) as accounts:
        try:
            return (await accounts.revoke_sessions(_actor(), username)).refresh_tokens
        except RpcStatusError as exc:
            raise CliError(f"cannot revoke the sessions of {username}: {exc.message}") from exc


async def unlock_user(settings: MeshSettings, username: str) -> int:
    """Clear the sign-in locks of ``username``; how many (username, address) pairs.

    Raises:
        CliError: a store unreachable, or no such user.

    """
    async with administration(settings) as accounts:
        try:
            return await accounts.unlock(_actor(), username)
        except RpcStatusError as exc:
            raise CliError(f"cannot unlock {username}: {exc.message}") from exc


@contextlib.asynccontextmanager
async def administration(
    settings: MeshSettings, *, revoking: bool = False
) -> AsyncIterator[Accounts]:
    """Accounts over the mesh's PostgreSQL and Redis (connected on first use).

    Accounts are the auth service's data: the CLI works on them as the auth service's PostgreSQL
    role and Redis user. With ``revoking``, also over the revocation bucket (NATS, as the CLI's
    ``admin``).

    Raises:
        CliError: PostgreSQL or (when ``revoking``) NATS unreachable.

    """
    auth = settings.as_principal(AUTH_SERVICE)
    async with contextlib.AsyncExitStack() as stack:
        try:
            pool = await asyncpg.create_pool(
                auth.postgres_dsn, min_size=1, max_size=1, timeout=_CONNECT_TIMEOUT
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise CliError(
                f"cannot reach PostgreSQL ({exc}); is the mesh running ('sutazai up')?"
            ) from exc
        stack.push_async_callback(pool.close)
        redis_client = aioredis.Redis.from_url(auth.redis_url, socket_timeout=_CONNECT_TIMEOUT)
        stack.push_async_callback(redis_client.aclose)
        revocations = Revocations(settings.auth)
        if revoking:
            try:
                nc = await connect_nats(settings, name="sutazai-cli")
                stack.push_async_callback(nc.close)
                revocations.attach(await nc.jetstream().key_value(settings.auth.revocations_bucket))
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                raise CliError(
                    f"cannot reach the revocation bucket on NATS ({exc}); "
                    "is the mesh running ('sutazai up')?"
                ) from exc
        yield await open_accounts(settings, pool, redis_client, revocations)


def _actor() -> str:
    return f"cli:{_os_user()}"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # No login name in the environment or the password database (e.g. some containers).
        return "unknown"
