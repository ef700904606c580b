"""Commands that call the mesh through :class:`sutazai.client.MeshClient`, with the saved session.

One channel and one token implementation for every command (the client's): the session
``sutazai login`` saved, refreshed when it is about to expire. Every client error becomes one
:class:`CliError` line that names the gRPC status, so scripts and tests can tell a refusal
(``PERMISSION_DENIED``) from an unreachable mesh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sutazai.client import CallFailed, ClientError, MeshClient, MeshUnavailable, SessionEnded
from sutazai.client.mesh import GENERATION_TIMEOUT
from sutazai.ops.cli.errors import CliError
from sutazai.runtime.settings import MeshSettings

R = TypeVar("R")

CALL_TIMEOUT = 10.0
"""Deadline of a quick call (listing), in seconds."""


def call_mesh(
    settings: MeshSettings,
    work: Callable[[MeshClient], Awaitable[R]],
    *,
    generation_timeout: float | None = None,
) -> R:
    """Run ``work`` with a client of ``settings``' edge; client errors become :class:`CliError`.

    Args:
        settings: where the edge is, and the state directory holding the session.
        work: what to do with the client.
        generation_timeout: deadline of calls that wait for a model (the client's default
            when ``None``).

    """

    async def run() -> R:
        client = MeshClient(
            settings,
            call_timeout=CALL_TIMEOUT,
            generation_timeout=generation_timeout or GENERATION_TIMEOUT,
        )
        async with client:
            return await work(client)

    try:
        return asyncio.run(run())
    except ClientError as exc:
        raise cli_error(exc) from None


def cli_error(error: ClientError) -> CliError:
    """One line saying what went wrong, with the status's name."""
    if isinstance(error, SessionEnded):
        return CliError(f"{error}; run 'sutazai login' first")
    if isinstance(error, MeshUnavailable):
        return CliError(f"UNAVAILABLE: {error}")
    if isinstance(error, CallFailed):
        fields = "".join(f"\n  {name}: {why}" for name, why in error.violations.items())
        return CliError(f"{error.code.name}: {error.details}{fields}")
    return CliError(str(error))
