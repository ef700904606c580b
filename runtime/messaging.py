"""Connecting a process to NATS with the mesh's settings; pulling from it safely."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client

from sutazai.runtime.settings import MeshSettings


async def connect_nats(
    mesh: MeshSettings,
    *,
    name: str,
    reconnected_cb: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """Connect to the mesh's NATS servers, reconnecting forever after a connection is lost.

    The connection authenticates as the process's principal (``mesh.nats.user``) and uses its
    private inbox prefix, the only one the embedded server lets it subscribe to.

    Args:
        mesh: where NATS is and its credentials.
        name: client name shown in NATS monitoring (the service or tool connecting).
        reconnected_cb: awaited after each reconnection (e.g. to publish what waited).
    """
    credentials = mesh.nats_credentials
    user, password = credentials if credentials else (None, None)
    return await nats.connect(
        servers=mesh.nats_servers,
        name=name,
        user=user,
        password=password,
        inbox_prefix=mesh.nats.inbox_prefix,
        connect_timeout=2,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        reconnected_cb=reconnected_cb,
    )


def end_if_cancelled() -> None:
    """Raise :class:`asyncio.CancelledError` if the current task was asked to stop.

    For a loop that catches the ``TimeoutError`` of nats-py's ``fetch`` to pull again: under
    Python 3.11, ``fetch`` (``asyncio.wait_for`` inside) sometimes turns a cancellation that
    comes as it times out into that ``TimeoutError`` (one in twenty tries, measured), and the
    loop would run on for ever, holding up the shutdown that cancelled it. The task still
    counts the request (``Task.cancelling``), so it can be honoured here.

    Raises:
        asyncio.CancelledError: the current task is being cancelled.

    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
