"""The built-in text agent, on the session mesh's inference service (the embedded model).

The agent runs in the test's process (connected as ``admin`` until the supervisor runs agents
as their own principals); the test plays the coordinator.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2
from nats.aio.client import Client

from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.settings import MeshSettings
from sutazai.sdk import AgentSettings
from sutazai.services.textagent.agent import AGENT_NAME, build_agent
from tests.sdk.coordinator import Coordinator

ARTICLE = (
    "The city council voted on Tuesday to build a new public library in the old train "
    "station. The library will have a children's reading room, a cafe and study spaces. "
    "Construction starts next spring and should take two years. The council said the project "
    "will cost twelve million dollars, paid by a state grant."
)


@pytest.fixture
async def coordinator(mesh_services: MeshSettings) -> AsyncIterator[Coordinator]:
    nc: Client = await connect_nats(mesh_services, name="sutazai-tests-textagent")
    instance = uuid.uuid4().hex[:12]
    agent = build_agent(AgentSettings(instance_id=instance, heartbeat_seconds=1.0))
    await agent.start(nc)
    playing = Coordinator(nc, AGENT_NAME, instance)
    await playing.start()
    yield playing
    await playing.close()
    await agent.stop()
    await nc.close()


async def test_summarize_returns_a_real_summary_from_the_embedded_model(
    coordinator: Coordinator,
) -> None:
    task_id = await coordinator.assign(
        "text.summarize", {"text": ARTICLE, "max_words": 30}, deadline_seconds=120
    )

    final = await coordinator.final(task_id, timeout=120)

    assert final.WhichOneof("event") == "succeeded", final
    result = json_format.MessageToDict(final.succeeded.result)
    assert result["summary"].strip()
    assert result["summary"].strip() != ARTICLE
    assert result["model"] == "smollm2-135m-instruct"
    assert result["words"] == len(result["summary"].split())
    assert result["usage"]["completion_tokens"] > 0
    assert coordinator.of(task_id, "progress")


async def test_generate_answers_a_prompt(coordinator: Coordinator) -> None:
    task_id = await coordinator.assign(
        "text.generate",
        {"prompt": "Say hello.", "max_tokens": 4, "temperature": 0},
        deadline_seconds=120,
    )

    final = await coordinator.final(task_id, timeout=120)

    result = json_format.MessageToDict(final.succeeded.result)
    assert result["text"].strip()
    assert result["usage"]["completion_tokens"] <= 4


async def test_an_invalid_payload_fails_for_good_naming_the_fields(
    coordinator: Coordinator,
) -> None:
    task_id = await coordinator.assign("text.generate", {"prompt": "", "max_tokens": 1.5})

    final = await coordinator.final(task_id)

    assert final.failed.retryable is False
    assert final.failed.error.code == code_pb2.INVALID_ARGUMENT
    bad_request = error_details_pb2.BadRequest()
    assert final.failed.error.details[0].Unpack(bad_request)
    assert {v.field for v in bad_request.field_violations} == {"prompt", "max_tokens"}


async def test_a_model_the_service_lacks_fails_for_good(coordinator: Coordinator) -> None:
    task_id = await coordinator.assign("text.generate", {"prompt": "Hi", "model": "nope"})

    final = await coordinator.final(task_id, timeout=60)

    assert final.failed.error.code == code_pb2.NOT_FOUND
    assert final.failed.retryable is False
