"""An agent process for the crash tests: ``tester`` whose ``test.work`` never finishes.

Run as ``python -m tests.sdk.agent_process`` with the mesh's settings and
``SUTAZAI_AGENT_*`` in the environment; it is meant to be killed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sutazai.runtime.settings import MeshSettings
from sutazai.sdk import Agent, AgentSettings, TaskContext, run


async def work(task: TaskContext) -> dict[str, Any]:
    await asyncio.Event().wait()
    return {"by": "the killed instance"}


def main() -> None:
    agent = Agent("tester", settings=AgentSettings())
    agent.register("test.work", work)
    asyncio.run(run(agent, MeshSettings()))


if __name__ == "__main__":
    main()
