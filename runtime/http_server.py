"""An ASGI app served by uvicorn on an instance's HTTP socket (:class:`~.server.HttpServer`).

The :class:`~sutazai.runtime.server.ServiceHost` binds it to the instance's second Unix socket,
runs it beside the gRPC server and stops it when the instance drains; Envoy is its only peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket as sockets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import anyio
import uvicorn
from starlette.types import ASGIApp

_BACKLOG: Final = 512
_MAX_CONNECTIONS: Final = 1024
"""Connections uvicorn serves at once (503 beyond); Envoy's cluster allows as many."""


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers.

    The :class:`ServiceHost` owns SIGTERM and SIGINT (deregister first, then drain) and stops
    this server through :meth:`HttpSocketServer.stop`.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpSocketServer:
    """An ASGI app served by uvicorn (HTTP/1.1, h11) on a Unix socket the host hands over."""

    def __init__(self, app: ASGIApp, *, on_stop: Callable[[], None] | None = None) -> None:
        """Serve ``app``; ``on_stop`` runs when stopping begins."""
        self._app = app
        self._on_stop = on_stop
        self._socket: sockets.socket | None = None
        self._server: _Server | None = None
        self._done = asyncio.Event()

    async def bind(self, socket: Path) -> None:
        """Bind and listen on ``socket``: Envoy's connections queue until :meth:`run` serves."""
        sock = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
        try:
            sock.bind(str(socket))
            sock.listen(_BACKLOG)
        except OSError:
            sock.close()
            raise
        self._socket = sock

    async def run(self) -> None:
        """Serve until :meth:`stop`."""
        if self._socket is None:
            raise RuntimeError("bind() first")
        config = uvicorn.Config(
            self._app,
            http="h11",
            lifespan="off",
            # The mesh's structlog set-up owns logging; Envoy's access log records requests.
            log_config=None,
            access_log=False,
            server_header=False,
            # Envoy is the only peer (the socket is 0600 in a 0700 directory); it strips
            # x-forwarded-for, so there is no proxy header to believe.
            proxy_headers=False,
            limit_concurrency=_MAX_CONNECTIONS,
            backlog=_BACKLOG,
            timeout_keep_alive=60,
        )
        self._server = _Server(config)
        # Starlette's streaming responses run in an anyio task group, whose first use imports
        # anyio's asyncio backend (about 40 ms): paid here, not by the first streamed reply.
        async with anyio.create_task_group():
            pass
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            self._done.set()

    async def stop(self, grace_seconds: float) -> None:
        """Stop accepting, let requests in flight finish for ``grace_seconds``, then end."""
        if self._on_stop is not None:
            self._on_stop()
        if self._server is None:
            if self._socket is not None:
                self._socket.close()
            return
        self._server.config.timeout_graceful_shutdown = math.ceil(grace_seconds)
        self._server.should_exit = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_seconds + 2.0):
                await self._done.wait()
