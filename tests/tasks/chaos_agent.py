"""The agent of the chaos tests: principal ``chaos`` (tests/harness/mesh.toml), a real SDK agent.

Run as ``python -m tests.tasks.chaos_agent`` with the mesh's settings, the principal's
credentials file and ``SUTAZAI_AGENT_INSTANCE_ID`` in the environment (what
:func:`tests.tasks.chaos.chaos_component` gives it), and ``CHAOS_DIR``: where it leaves traces
the tests read (one empty file each, so that concurrent writers never share one):

- ``started/<task id>.<attempt>.<agent id>`` when a handler starts;
- ``done/<task id>.<attempt>.<agent id>.<nonce>`` when a handler returns its result (the result
  carries the same nonce): a handler that ran twice to completion leaves two.

Task types:

- ``chaos.hold``: runs until ``CHAOS_DIR/release/<task id>`` exists (the test decides when).
- ``chaos.record``: sleeps ``payload.seconds`` (default 0.2), then succeeds.
- ``chaos.fail``: always fails (retryable) until ``CHAOS_DIR/healed/<task id>`` exists.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

from sutazai.runtime.logging import configure_logging
from sutazai.runtime.settings import MeshSettings
from sutazai.sdk import Agent, AgentSettings, TaskContext, run
from tests.harness.waiting import wait_for

NAME = "chaos"
DIRECTORY_VARIABLE = "CHAOS_DIR"
CONCURRENCY_VARIABLE = "CHAOS_CONCURRENCY"
POLL_SECONDS = 0.05
HOLD_SECONDS = 24 * 3600.0


def _directory() -> Path:
    return Path(os.environ[DIRECTORY_VARIABLE])


def _mark(kind: str, name: str) -> None:
    folder = _directory() / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).touch()


def _completed(task: TaskContext) -> dict[str, Any]:
    nonce = uuid.uuid4().hex
    _mark("done", f"{task.task_id}.{task.attempt}.{task.agent_id}.{nonce}")
    return {"agent": task.agent_id, "attempt": task.attempt, "nonce": nonce}


async def hold(task: TaskContext) -> dict[str, Any]:
    """Succeeds once the test releases the task."""
    _mark("started", f"{task.task_id}.{task.attempt}.{task.agent_id}")
    release = _directory() / "release" / task.task_id
    # Until the deadline cancels it, at the latest.
    await wait_for(release.exists, timeout=HOLD_SECONDS, interval=POLL_SECONDS, message="release")
    return _completed(task)


async def record(task: TaskContext) -> dict[str, Any]:
    """Succeeds after ``payload.seconds``."""
    _mark("started", f"{task.task_id}.{task.attempt}.{task.agent_id}")
    seconds = task.payload.get("seconds", 0.2)
    await asyncio.sleep(float(seconds) if isinstance(seconds, int | float) else 0.2)
    return _completed(task)


async def fail(task: TaskContext) -> dict[str, Any]:
    """Fails, retryable, until the test heals the task."""
    _mark("started", f"{task.task_id}.{task.attempt}.{task.agent_id}")
    if not (_directory() / "healed" / task.task_id).exists():
        raise RuntimeError(f"chaos.fail refuses attempt {task.attempt}")
    return _completed(task)


def build_agent(settings: AgentSettings) -> Agent:
    """The chaos agent with its three handlers."""
    agent = Agent(
        NAME, settings=settings, max_concurrency=int(os.environ.get(CONCURRENCY_VARIABLE, "2"))
    )
    agent.register("chaos.hold", hold)
    agent.register("chaos.record", record)
    agent.register("chaos.fail", fail)
    return agent


def main() -> None:
    settings = AgentSettings()
    configure_logging(f"{NAME}.{settings.instance_id}")
    asyncio.run(run(build_agent(settings), MeshSettings()))


if __name__ == "__main__":
    main()
