"""The Python agent SDK: declare capabilities and async handlers; the SDK does the rest.

::

    agent = Agent("echo", settings=AgentSettings(), max_concurrency=4)

    @agent.handler("echo.say")
    async def say(task: TaskContext) -> dict[str, object]:
        await task.report_progress(0.5, "halfway")
        return {"said": task.payload.get("text", "")}

    asyncio.run(run(agent, MeshSettings()))

The wire contract it implements is ``nats/README.md`` ("Tasks and agents"); the guide is
``docs/agents.md``.
"""

from sutazai.sdk.agent import Agent, Handler, Result
from sutazai.sdk.context import TaskContext
from sutazai.sdk.errors import AgentDefinitionError, AgentSdkError, InvalidPayloadError, TaskError
from sutazai.sdk.runner import run
from sutazai.sdk.settings import AgentSettings

__all__ = [
    "Agent",
    "AgentDefinitionError",
    "AgentSdkError",
    "AgentSettings",
    "Handler",
    "InvalidPayloadError",
    "Result",
    "TaskContext",
    "TaskError",
    "run",
]
