"""A TCP relay whose outgoing connections come from a chosen loopback address.

gRPC clients cannot choose their source address, but a service sees the peer of the socket: a
client connected through ``Relay("127.0.0.2", target)`` is, for the service, at 127.0.0.2.
Linux routes all of 127.0.0.0/8 to the loopback interface, so no set-up is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def relay(source: str, target_host: str, target_port: int) -> AsyncIterator[str]:
    """Listen on a free port of 127.0.0.1; yield its ``host:port``.

    Each accepted connection is forwarded to ``target_host:target_port`` from ``source``.
    """
    tasks: set[asyncio.Task[None]] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            target_host, target_port, local_addr=(source, 0)
        )
        for task in (
            asyncio.create_task(_pipe(reader, upstream_writer)),
            asyncio.create_task(_pipe(upstream_reader, writer)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
