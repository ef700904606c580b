"""Fixtures of the gateway tests: a real NATS with JetStream, in module scope."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from tests.gateway.processes import NATS_SERVER, start_process, stop_process, tcp_accepting
from tests.harness.mesh import free_ports
from tests.harness.waiting import wait_for


@pytest.fixture(scope="module")
async def nats_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A fresh nats-server with JetStream on a free 127.0.0.1 port, its store in a temp dir."""
    (port,) = free_ports(1)
    store = tmp_path_factory.mktemp("nats")
    process = start_process(
        [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        log=store / "nats.log",
    )
    try:
        await wait_for(
            lambda: tcp_accepting(port, process), timeout=10, message="nats-server accepting"
        )
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop_process(process)


@pytest.fixture
async def nats_client(nats_url: str) -> AsyncIterator[Client]:
    """A client of the module's NATS, closed after the test."""
    nc = await nats.connect(nats_url)
    yield nc
    await nc.close()
