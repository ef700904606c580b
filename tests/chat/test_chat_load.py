"""Fifty streaming chats at once through Envoy, a full queue, and a cancel that frees the slot.

Issue 9: "50 concurrent streaming chats through Envoy complete without errors (queueing
allowed); beyond the configured queue, RESOURCE_EXHAUSTED; a cancelled stream frees its slot at
once." On the session mesh the embedded backend runs one generation at a time with
``EMBEDDED_MAX_QUEUE`` (50) waiting (tests/harness/mesh.py). One long chat holds the slot, so all
fifty chats are in flight together, waiting in the queue; the next one is refused; cancelling
the long chat lets the fifty through, one after the other. Half of them are gRPC
``ChatStream`` calls on one connection, half REST ``POST /v1/chat:stream`` (NDJSON); each is a
real generation (``no_cache``, a prompt of its own, 3 tokens at most).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from sutazai.chat.v1 import chat_service_pb2 as pb
from sutazai.chat.v1.chat_service_pb2_grpc import ChatServiceStub
from sutazai.inference.v1 import inference_service_pb2 as inference_pb
from sutazai.inference.v1.inference_service_pb2_grpc import InferenceServiceStub
from sutazai.runtime.settings import MeshSettings
from tests.auth.helpers import bearer, failure
from tests.harness.fixtures import new_account, signed_in
from tests.harness.waiting import wait_for

CHATS = 50
MAX_TOKENS = 3
# Generous: fifty real generations one after the other on one shared core.
ALL_DONE_TIMEOUT = 240.0
# A cancel reaches the model through Envoy and two services in milliseconds; the cancelled
# reply would have gone on for many seconds more.
SLOT_FREED_TIMEOUT = 5.0
# Near-random sampling with a fixed seed: a reply that runs until it is cancelled.
ENDLESS = pb.ChatStreamRequest(
    message="Write a very long story.",
    options=inference_pb.SamplingOptions(max_tokens=4096, temperature=2.0, top_k=1000, seed=7),
    no_cache=True,
)


def short_request(index: int) -> dict[str, Any]:
    """The REST body of one short, uncached chat with a prompt no other call sends."""
    return {
        "message": f"Say hello to number {index}. [{secrets.token_hex(4)}]",
        "options": {"max_tokens": MAX_TOKENS, "temperature": 0},
        "no_cache": True,
    }


@pytest.fixture
async def edge(mesh_services: MeshSettings) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh_services.envoy.port}") as channel:
        yield channel


@pytest.fixture
async def user_token(mesh_services: MeshSettings) -> str:
    """A user of its own: the fifty conversations stay out of other tests' listings."""
    return await signed_in(mesh_services, await new_account(mesh_services, "user"))


@pytest.fixture
async def rest(mesh_services: MeshSettings, user_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{mesh_services.envoy.port}",
        headers={"authorization": f"Bearer {user_token}"},
        timeout=httpx.Timeout(ALL_DONE_TIMEOUT, connect=10.0),
        # One connection per stream: the REST half does not share a connection either.
        limits=httpx.Limits(max_connections=CHATS + 4),
    ) as client:
        yield client


async def grpc_chat(chat: ChatServiceStub, token: str, index: int) -> list[str]:
    """One streamed gRPC chat; the kinds of its messages in order."""
    body = short_request(index)
    request = pb.ChatStreamRequest(
        message=body["message"],
        options=inference_pb.SamplingOptions(max_tokens=MAX_TOKENS, temperature=0.0),
        no_cache=True,
    )
    kinds = []
    async for message in chat.ChatStream(request, metadata=bearer(token)):
        kind = message.WhichOneof("event")
        assert kind != "error", message.error
        kinds.append(kind)
    return kinds


async def rest_chat(rest: httpx.AsyncClient, index: int) -> list[str]:
    """One streamed REST chat (NDJSON); the kinds of its lines in order."""
    async with rest.stream("POST", "/v1/chat:stream", json=short_request(index)) as response:
        assert response.status_code == 200, await response.aread()
        lines = [json.loads(line) async for line in response.aiter_lines() if line.strip()]
    for line in lines:
        assert "error" not in line, line
    return [next(iter(line)) for line in lines]


async def test_fifty_concurrent_streaming_chats_queue_then_all_finish_and_one_more_is_refused(
    edge: grpc.aio.Channel,
    rest: httpx.AsyncClient,
    mesh_services: MeshSettings,
    user_token: str,
    admin_token: str,
) -> None:
    limits = mesh_services.inference.embedded
    assert (limits.max_concurrency, limits.max_queue) == (1, CHATS), "the harness's limits"
    chat = ChatServiceStub(edge)
    inference = InferenceServiceStub(edge)

    async def embedded() -> inference_pb.Backend:
        listed = await inference.ListBackends(
            inference_pb.ListBackendsRequest(), metadata=bearer(admin_token), timeout=10
        )
        return next(b for b in listed.backends if b.name == "embedded")

    holder = chat.ChatStream(ENDLESS, metadata=bearer(user_token))
    assert (await holder.read()).WhichOneof("event") == "started"
    assert (await holder.read()).WhichOneof("event") == "delta"

    chats = [
        asyncio.ensure_future(grpc_chat(chat, user_token, i) if i % 2 == 0 else rest_chat(rest, i))
        for i in range(CHATS)
    ]
    try:

        async def all_waiting() -> bool:
            backend = await embedded()
            return backend.in_flight == 1 and backend.queued == CHATS

        await wait_for(all_waiting, timeout=60, interval=0.1, message="all fifty chats wait")
        assert not any(task.done() for task in chats), "a queued chat ended early"

        # Beyond the queue: refused at once, over gRPC and REST alike.
        refused = await failure(grpc_chat(chat, user_token, CHATS))
        assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        over = await rest.post("/v1/chat:stream", json=short_request(CHATS + 1))
        assert over.status_code == 429, over.text
        assert (await embedded()).queued == CHATS, "a refused call takes no place in the queue"

        # The cancelled chat gives its slot to the first waiting one straight away; left
        # running, it would hold it until its context window (1024 tokens, many seconds) is
        # full.
        holder.cancel()

        async def handed_over() -> bool:
            return (await embedded()).queued < CHATS

        await wait_for(
            handed_over, timeout=SLOT_FREED_TIMEOUT, interval=0.05, message="the slot is freed"
        )
        results = await asyncio.wait_for(asyncio.gather(*chats), timeout=ALL_DONE_TIMEOUT)
    finally:
        holder.cancel()
        for task in chats:
            task.cancel()

    for kinds in results:
        assert kinds[0] == "started", kinds
        assert kinds[-1] == "done", kinds
        assert set(kinds[1:-1]) <= {"delta"}, kinds
        assert len(kinds) - 2 <= MAX_TOKENS, kinds

    async def idle() -> bool:
        backend = await embedded()
        return backend.in_flight == 0 and backend.queued == 0

    await wait_for(idle, timeout=10, message="the embedded backend is idle again")
