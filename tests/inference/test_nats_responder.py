"""The inference service answers agents over NATS (``sutazai.inference.generate``).

Against the session mesh: the inference service runs as its own principal, so these also show
its grant (subscribe the subject, answer with ``allow_responses``). The caller here is ``admin``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from google.rpc import code_pb2, error_details_pb2
from nats.aio.client import Client

from sutazai.inference.v1 import inference_service_pb2 as pb
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import MeshSettings
from tests.harness.waiting import wait_for

SUBJECT = "sutazai.inference.generate"
SAY_HELLO = pb.Message(role=pb.MESSAGE_ROLE_USER, content="Say hello.")


@pytest.fixture
async def nc(mesh_services: MeshSettings) -> AsyncIterator[Client]:
    client = await connect_nats(mesh_services, name="sutazai-tests-inference-nats")
    yield client
    await client.close()


async def ask(nc: Client, data: bytes, headers: dict[str, str] | None = None) -> pb.GenerateReply:
    reply = await nc.request(SUBJECT, data, timeout=60, headers=headers)
    return pb.GenerateReply.FromString(reply.data)


async def test_a_request_gets_a_real_generation(nc: Client) -> None:
    request = pb.GenerateRequest(
        messages=[SAY_HELLO], options=pb.SamplingOptions(max_tokens=4, temperature=0.0)
    )

    reply = await ask(nc, request.SerializeToString(), {"Sutazai-Timeout-Ms": "60000"})

    assert reply.status.code == code_pb2.OK
    assert reply.response.model == "smollm2-135m-instruct"
    assert reply.response.text.strip()
    assert 0 < reply.response.usage.completion_tokens <= 4


async def test_invalid_requests_get_the_statuses_grpc_would(nc: Client) -> None:
    empty = await ask(nc, pb.GenerateRequest().SerializeToString())
    garbage = await ask(nc, b"\xff\xff\xff")
    unknown = await ask(
        nc, pb.GenerateRequest(model="no-such-model", messages=[SAY_HELLO]).SerializeToString()
    )
    bad_header = await ask(
        nc,
        pb.GenerateRequest(messages=[SAY_HELLO]).SerializeToString(),
        {"Sutazai-Timeout-Ms": "soon"},
    )

    assert empty.status.code == code_pb2.INVALID_ARGUMENT
    bad_request = error_details_pb2.BadRequest()
    assert empty.status.details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["messages"]
    assert not empty.HasField("response")
    assert garbage.status.code == code_pb2.INVALID_ARGUMENT
    assert unknown.status.code == code_pb2.NOT_FOUND
    assert bad_header.status.code == code_pb2.INVALID_ARGUMENT
    assert "Sutazai-Timeout-Ms" in bad_header.status.message


async def test_a_request_out_of_time_is_deadline_exceeded(nc: Client) -> None:
    request = pb.GenerateRequest(messages=[SAY_HELLO], options=pb.SamplingOptions(max_tokens=256))

    reply = await ask(nc, request.SerializeToString(), {"Sutazai-Timeout-Ms": "1"})

    assert reply.status.code == code_pb2.DEADLINE_EXCEEDED


async def test_requests_are_counted_in_the_metrics(nc: Client, mesh_services: MeshSettings) -> None:
    # The counter is in the service's own registry, served where its registry entry says.
    registry = await Registry.open(nc.jetstream(), mesh_services.registry)
    instances = [i for i in await registry.list() if i.service == "inference"]
    assert instances
    assert instances[0].metrics_address
    await ask(nc, pb.GenerateRequest().SerializeToString())

    async def counted() -> bool:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://{instances[0].metrics_address}/metrics")).text
        return 'sutazai_inference_nats_requests_total{outcome="invalid_argument"}' in text

    await wait_for(counted, timeout=10, message="the NATS request counter")
