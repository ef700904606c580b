"""``sutazai login``: sign in through Envoy and keep the tokens for the CLI and the dashboard.

The tokens go to ``<state dir>/cli_token.json`` with mode 0600 (written atomically, so a reader
never sees half a file, nor a moment when it is readable by others).
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import grpc
import typer

from sutazai.auth.v1.auth_service_pb2 import LoginRequest
from sutazai.auth.v1.auth_service_pb2_grpc import AuthServiceStub
from sutazai.ops.cli.console import out
from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.edge import edge_channel, edge_target
from sutazai.ops.cli.errors import CliError
from sutazai.runtime.files import replace_file
from sutazai.runtime.settings import MeshSettings

TOKEN_FILE = "cli_token.json"  # noqa: S105 - a file name
_CALL_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class CliToken:
    """The signed-in session the CLI and the dashboard use."""

    access_token: str
    refresh_token: str
    expires_at: datetime
    """When the access token expires (UTC)."""


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
    token = asyncio.run(sign_in(settings, username, password))
    path = save_token(settings.state_dir, token)
    out.print(
        f"signed in as {username}; token saved to {path} "
        f"(access token valid until {token.expires_at.astimezone():%Y-%m-%d %H:%M:%S})"
    )


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


async def sign_in(settings: MeshSettings, username: str, password: str) -> CliToken:
    """Call ``AuthService/Login`` through Envoy.

    Raises:
        CliError: wrong credentials, invalid input, or Envoy unreachable.

    """
    target = edge_target(settings)
    sent_at = datetime.now(UTC)
    async with edge_channel(settings) as channel:
        try:
            reply = await AuthServiceStub(channel).Login(
                LoginRequest(username=username, password=password), timeout=_CALL_TIMEOUT
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise CliError(f"Envoy unreachable at {target}: {exc.details()}") from exc
            raise CliError(f"sign-in failed: {exc.details()}") from exc
    # Counted from before the call: the saved expiry is never later than the real one.
    return CliToken(
        access_token=reply.access_token,
        refresh_token=reply.refresh_token,
        expires_at=sent_at + timedelta(seconds=reply.expires_in),
    )


def token_path(state_dir: Path) -> Path:
    """Where the CLI's tokens of a state directory are kept."""
    return state_dir / TOKEN_FILE


def save_token(state_dir: Path, token: CliToken) -> Path:
    """Write the tokens, mode 0600, atomically; return the file's path."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = token_path(state_dir)
    document = {
        "access_token": token.access_token,
        "refresh_token": token.refresh_token,
        "expires_at": token.expires_at.astimezone(UTC).isoformat(timespec="seconds"),
    }
    replace_file(path, json.dumps(document))
    return path


def load_token(state_dir: Path) -> CliToken | None:
    """The saved tokens, or ``None`` when nobody signed in.

    Raises:
        CliError: the file is unreadable, malformed, or readable by others.

    """
    path = token_path(state_dir)
    try:
        mode = path.stat().st_mode & 0o777
        document = json.loads(path.read_text(encoding="utf-8"))
        token = CliToken(
            access_token=str(document["access_token"]),
            refresh_token=str(document["refresh_token"]),
            expires_at=datetime.fromisoformat(str(document["expires_at"])),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError(f"cannot read {path}: {exc}; sign in again with 'sutazai login'") from exc
    if mode & 0o077:
        raise CliError(f"{path} is mode {mode:o}; it must be 0600")
    return token
