"""The example agent of docs/agents.md, run exactly as written, as a process of its own."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from pathlib import Path

from google.protobuf import json_format
from google.rpc import code_pb2

from sutazai.ops.supervisor.environment import settings_environment
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.settings import MeshSettings
from tests.harness.waiting import wait_for
from tests.sdk.coordinator import Coordinator

GUIDE = Path(__file__).parents[2] / "docs" / "agents.md"
EXAMPLE = re.compile(r"<!-- example: word_agent\.py[^>]*-->\n```python\n(?P<code>.*?)```", re.S)


def example_code() -> str:
    found = EXAMPLE.search(GUIDE.read_text(encoding="utf-8"))
    assert found is not None, "docs/agents.md lost its example block"
    return found["code"]


async def test_the_guide_example_runs_tasks_and_drains_on_sigterm(
    mesh_settings: MeshSettings, tmp_path: Path
) -> None:
    script = tmp_path / "word_agent.py"
    script.write_text(example_code(), encoding="utf-8")
    instance = uuid.uuid4().hex[:12]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SUTAZAI_")},
        **settings_environment(mesh_settings),
        "SUTAZAI_AGENT_INSTANCE_ID": instance,
    }
    nc = await connect_nats(mesh_settings, name="sutazai-tests-docs-example")
    coordinator = Coordinator(nc, "words", instance)
    await coordinator.start()
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE
    )
    try:
        counted = await coordinator.assign("words.count", {"text": "to be or not to be"})
        refused = await coordinator.assign("words.count", {"txt": "typo"})

        final = await coordinator.final(counted, timeout=60)
        assert json_format.MessageToDict(final.succeeded.result) == {
            "words": 6,
            "longest": "not",
        }
        assert coordinator.of(counted, "progress")[0].progress.message == "6 words"
        bad = await coordinator.final(refused, timeout=60)
        assert (bad.failed.error.code, bad.failed.retryable) == (code_pb2.INVALID_ARGUMENT, False)
        assert await coordinator.heartbeat() is not None

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
        await wait_for(lambda: _gone(coordinator), timeout=10, message="the heartbeat key deleted")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await coordinator.close()
        await nc.close()


async def _gone(coordinator: Coordinator) -> bool:
    return await coordinator.heartbeat() is None
