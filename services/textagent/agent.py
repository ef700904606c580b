"""The built-in text agent (``[agents.text]`` in ``deploy/mesh.toml``).

Run by the supervisor as principal ``text`` (grant ``inference_call``), or by hand:
``python -m sutazai.services.textagent.agent`` with the mesh's settings in the environment.
"""

from __future__ import annotations

import asyncio
from typing import Final

from sutazai.runtime.logging import configure_logging
from sutazai.runtime.settings import MeshSettings
from sutazai.sdk import Agent, AgentSettings, run
from sutazai.services.textagent.handlers import generate, summarize

AGENT_NAME: Final = "text"
"""The table of ``deploy/mesh.toml`` (``[agents.text]``) and the agent's NATS principal."""
MAX_CONCURRENCY: Final = 4
"""Tasks at once: the inference service queues what its slots cannot run yet."""


def build_agent(settings: AgentSettings) -> Agent:
    """The text agent, with its two handlers, not started."""
    agent = Agent(AGENT_NAME, settings=settings, max_concurrency=MAX_CONCURRENCY)
    agent.register("text.generate", generate)
    agent.register("text.summarize", summarize)
    return agent


async def run_agent(mesh: MeshSettings, instance_id: str) -> None:
    """Run instance ``instance_id`` (its supervisor slot) until SIGTERM/SIGINT, then drain."""
    await run(build_agent(AgentSettings(instance_id=instance_id)), mesh)


def main() -> None:
    """Entry point of ``python -m sutazai.services.textagent.agent``."""
    configure_logging(AGENT_NAME)
    asyncio.run(run(build_agent(AgentSettings()), MeshSettings()))


if __name__ == "__main__":
    main()
