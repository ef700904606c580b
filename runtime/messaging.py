"""Connecting a process to NATS with the mesh's settings."""

from __future__ import annotations

import nats
from nats.aio.client import Client

from sutazai.runtime.settings import MeshSettings


async def connect_nats(mesh: MeshSettings, *, name: str) -> Client:
    """Connect to the mesh's NATS servers, reconnecting forever after a connection is lost.

    The connection authenticates as the process's principal (``mesh.nats.user``) and uses its
    private inbox prefix, the only one the embedded server lets it subscribe to.

    Args:
        mesh: where NATS is and its credentials.
        name: client name shown in NATS monitoring (the service or tool connecting).
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
    )
