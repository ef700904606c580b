"""``sutazai login`` and ``sutazai logout``: the session the CLI and the dashboard share.

Signing in goes through :class:`sutazai.client.MeshClient`, which keeps the tokens in
``<state dir>/cli_token.json`` (mode 0600, written atomically; see ``docs/client.md``).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from sutazai.auth.v1.auth_service_pb2 import User
from sutazai.client import (
    CallFailed,
    ClientError,
    FileTokenStore,
    MeshClient,
    MeshUnavailable,
    SessionTokens,
)
from sutazai.ops.cli.console import out
from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError
from sutazai.runtime.settings import MeshSettings


def login(
    ctx: typer.Context,
    username: Annotated[str, typer.Option("--username", help="Account to sign in as.")],
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
    ] = False,
) -> None:
    """Sign in through Envoy; store the tokens (mode 0600) for the CLI and the dashboard."""
    settings = mesh_settings(ctx)
    password = read_password(from_stdin=password_stdin, confirm=False)
    store = FileTokenStore(settings.state_dir)
    user, tokens = asyncio.run(sign_in(settings, store, username, password))
    out.print(
        f"signed in as {user.username}; token saved to {store.path} "
        f"(access token valid until {tokens.expires_at.astimezone():%Y-%m-%d %H:%M:%S})"
    )


def logout(ctx: typer.Context) -> None:
    """Sign out: end the session at the mesh (best effort) and delete the saved tokens."""
    settings = mesh_settings(ctx)
    store = FileTokenStore(settings.state_dir)
    try:
        signed_in = store.load() is not None
    except ClientError:
        signed_in = True  # an unusable file is still removed
    if not signed_in:
        out.print("not signed in")
        return
    asyncio.run(sign_out(settings, store))
    out.print(f"signed out; removed {store.path}")


def read_password(*, from_stdin: bool, confirm: bool) -> str:
    """The password from stdin's first line, or prompted for on the terminal without echo.

    Raises:
        CliError: stdin is empty, or there is no terminal to prompt on.

    """
    if from_stdin:
        # Only the line break is the pipe's; spaces are part of the password.
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CliError("no password on stdin")
        return line
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for the password on: pass it with --password-stdin")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    return password


async def sign_in(
    settings: MeshSettings, store: FileTokenStore, username: str, password: str
) -> tuple[User, SessionTokens]:
    """Sign in through Envoy; the tokens are saved in ``store``.

    Raises:
        CliError: wrong credentials, invalid input, or Envoy unreachable.

    """
    async with MeshClient(settings, tokens=store) as client:
        try:
            user = await client.sign_in(username, password)
        except MeshUnavailable as exc:
            raise CliError(str(exc)) from None
        except CallFailed as exc:
            raise CliError(f"sign-in failed: {exc.details}") from None
        except ClientError as exc:
            raise CliError(f"sign-in failed: {exc}") from None
    tokens = store.load()
    if tokens is None:  # pragma: no cover - sign_in saved them; only a racing logout clears
        raise CliError("signed out again while signing in")
    return user, tokens


async def sign_out(settings: MeshSettings, store: FileTokenStore) -> None:
    """Log the session out through Envoy (best effort) and remove the token file."""
    async with MeshClient(settings, tokens=store) as client:
        await client.sign_out()
