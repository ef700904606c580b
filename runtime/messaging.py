"""Connecting a process to NATS with the mesh's settings."""

from __future__ import annotations

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
