"""``sutazai envoy-admin``: read Envoy's admin interface through its Unix socket.

Admin listens only on ``<state dir>/run/envoy-admin.sock`` (the run directory is 0700), so this
command, run as the mesh's user, is how an operator sees ``/clusters``, ``/stats`` or
``/config_dump``. It only reads (GET); admin's mutating endpoints stay a deliberate
``curl --unix-socket … -X POST``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import httpx
import typer

from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError
from sutazai.runtime.sockets import envoy_admin_client

_TIMEOUT = 10.0


def envoy_admin(
    ctx: typer.Context,
    path: Annotated[
        str, typer.Argument(help="Admin path and query, e.g. /clusters or /stats?filter=edge.")
    ] = "/help",
) -> None:
    """Print what Envoy's admin interface answers to GET PATH."""
    if not path.startswith("/"):
        raise CliError(f"the admin path must start with '/', not {path!r}")
    socket = mesh_settings(ctx).envoy_admin_socket

    async def fetch() -> httpx.Response:
        async with envoy_admin_client(socket, timeout=_TIMEOUT) as client:
            return await client.get(path)

    try:
        response = asyncio.run(fetch())
    except httpx.TransportError as exc:
        raise CliError(
            f"cannot reach Envoy's admin socket {socket}: {exc}; is the mesh up?"
        ) from exc
    typer.echo(response.text, nl=not response.text.endswith("\n"))
    if response.status_code != httpx.codes.OK:
        raise CliError(f"envoy admin answered {response.status_code} to GET {path}")
