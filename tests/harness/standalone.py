"""A supervisor in its own process, for tests that kill the supervisor itself.

Run as ``python -m tests.harness.standalone`` with the mesh settings in ``SUTAZAI_*``
variables: starts Redis and NATS, prints one JSON line ``{"name": pid, ...}``, then runs until
killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

import structlog

from sutazai.ops.supervisor import Supervisor
from sutazai.ops.supervisor.components.nats import nats_component
from sutazai.ops.supervisor.components.redis import redis_component
from sutazai.ops.supervisor.environment import child_environment
from sutazai.runtime.settings import MeshSettings


async def main() -> None:
    # Stdout carries the one JSON line; the supervisor's logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    settings = MeshSettings()
    env = child_environment(settings)
    components = [nats_component(settings, env), redis_component(settings, env)]
    supervisor = Supervisor(settings, components)
    await supervisor.start()
    print(json.dumps({s.name: s.pid for s in supervisor.snapshot()}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
