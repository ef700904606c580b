"""Running an agent as a process of the mesh: connect, serve until SIGTERM, drain."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.settings import MeshSettings
from sutazai.sdk.agent import Agent


async def run(
    agent: Agent,
    mesh: MeshSettings,
    *,
    stop: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Run ``agent`` until SIGTERM/SIGINT (or ``stop`` is set), then drain and disconnect.

    ``started``, if given, is set once the agent has joined (consumer bound, first heartbeat
    written).

    The connection authenticates as the process's principal from ``mesh`` (under the
    supervisor: the credentials file it wrote for the agent, whose NATS user is the agent's
    name); nats-py reconnects by itself after a connection is lost, for ever.

    Raises:
        Exception: a loop of the instance died (the process should exit and be restarted).

    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    nc = await connect_nats(mesh, name=f"sutazai-agent-{agent.agent_id}")
    signals = (signal.SIGTERM, signal.SIGINT)
    try:
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        await agent.start(nc)
        if started is not None:
            started.set()
        failed = asyncio.ensure_future(agent.wait_failed())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            failed.cancel()
            stopped.cancel()
        if failed in done and not failed.cancelled():
            failed.result()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        try:
            await asyncio.shield(agent.stop())
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()
