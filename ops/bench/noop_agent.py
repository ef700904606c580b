"""The benchmark's agent: ``bench.noop`` tasks, each answered with ``{}`` at once.

Run by ``python -m sutazai.ops.bench tasks`` as a process of its own (an agent is one, as a
Celery worker is), as instance ``1`` of the agent principal ``bench`` (``[agents.bench]`` of
``deploy/mesh.toml``, external: ``sutazai up`` writes its credentials file and starts nothing).
It prints ``ready`` once it has joined the mesh and drains on SIGTERM.

    python -m sutazai.ops.bench.noop_agent --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from sutazai.runtime.logging import configure_logging
from sutazai.runtime.settings import MeshSettings
from sutazai.sdk import Agent, AgentSettings, TaskContext, run

TASK_TYPE = "bench.noop"


async def noop(task: TaskContext) -> dict[str, object]:
    """Nothing to do: the benchmark measures the way there and back."""
    return {}


def build(concurrency: int) -> Agent:
    """The agent (its instance id from ``SUTAZAI_AGENT_INSTANCE_ID``), one handler."""
    agent = Agent("bench", settings=AgentSettings(), max_concurrency=concurrency)
    agent.register(TASK_TYPE, noop)
    return agent


async def _main(concurrency: int) -> None:
    agent = build(concurrency)
    configure_logging(agent.agent_id)
    started = asyncio.Event()

    async def announce() -> None:
        await started.wait()
        sys.stdout.write("ready\n")
        sys.stdout.flush()

    announcing = asyncio.create_task(announce())
    try:
        await run(agent, MeshSettings(), started=started)
    finally:
        announcing.cancel()


def main() -> None:
    """Entry point: ``--concurrency`` tasks at once."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=64)
    arguments = parser.parse_args()
    asyncio.run(_main(arguments.concurrency))


if __name__ == "__main__":
    main()
