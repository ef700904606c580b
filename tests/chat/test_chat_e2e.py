"""The chat service through Envoy, on the real mesh with the embedded model.

Replies are tiny (a few tokens). The chat service calls the inference service through the edge
with the caller's token, so everything here crosses Envoy twice. The session mesh's embedded
backend runs one generation with 50 waiting (tests/harness/mesh.py; test_chat_load.py fills
them).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.auth.v1.auth_service_pb2_grpc import AuthServiceStub
from sutazai.chat.v1 import chat_service_pb2 as pb
from sutazai.chat.v1.chat_service_pb2_grpc import ChatServiceStub
from sutazai.inference.v1 import inference_service_pb2 as inference_pb
from sutazai.runtime.settings import MeshSettings
from tests.auth.helpers import bearer, failure, field_violations
from tests.harness.llama import LlamaServer
from tests.harness.waiting import wait_for

EMBEDDED_MODEL = "smollm2-135m-instruct"
TINY = inference_pb.SamplingOptions(max_tokens=4, temperature=0.0)
CALL_TIMEOUT = 60.0


def unique(text: str) -> str:
    """A prompt no other test (or earlier run) sent, so the cache cannot answer it by accident."""
    return f"{text} [{secrets.token_hex(4)}]"


@pytest.fixture
async def chat(mesh_services: MeshSettings) -> AsyncIterator[ChatServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh_services.envoy.port}") as channel:
        yield ChatServiceStub(channel)


@pytest.fixture
async def rest(mesh_services: MeshSettings, user_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{mesh_services.envoy.port}",
        headers={"authorization": f"Bearer {user_token}"},
        timeout=CALL_TIMEOUT,
    ) as client:
        yield client


async def ask(chat: ChatServiceStub, token: str, message: str, **fields: object) -> pb.ChatResponse:
    fields.setdefault("options", TINY)
    return await chat.Chat(
        pb.ChatRequest(message=message, **fields),  # type: ignore[arg-type]
        metadata=bearer(token),
        timeout=CALL_TIMEOUT,
    )


async def conversation_ids(chat: ChatServiceStub, token: str) -> set[str]:
    found: set[str] = set()
    page_token = ""
    while True:
        page = await chat.ListConversations(
            pb.ListConversationsRequest(page_size=100, page_token=page_token),
            metadata=bearer(token),
            timeout=10,
        )
        found |= {c.conversation_id for c in page.conversations}
        if not page.next_page_token:
            return found
        page_token = page.next_page_token


# Answers --------------------------------------------------------------------------------------


async def test_rest_chat_returns_a_real_answer_and_stores_the_turn(
    rest: httpx.AsyncClient, chat: ChatServiceStub, user_token: str
) -> None:
    message = unique("Say hello.")
    reply = await rest.post(
        "/v1/chat", json={"message": message, "options": {"max_tokens": 4, "temperature": 0}}
    )

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["reply"].strip()
    assert body["model"] == EMBEDDED_MODEL
    assert body["cached"] is False
    assert body["finish_reason"] in ("FINISH_REASON_STOP", "FINISH_REASON_LENGTH")
    assert 0 < body["usage"]["completion_tokens"] <= 4
    assert body["latency_ms"] > 0

    stored = await chat.GetConversation(
        pb.GetConversationRequest(conversation_id=body["conversation_id"]),
        metadata=bearer(user_token),
        timeout=10,
    )
    assert [(m.role, m.content) for m in stored.messages] == [
        (inference_pb.MESSAGE_ROLE_USER, message),
        (inference_pb.MESSAGE_ROLE_ASSISTANT, body["reply"]),
    ]
    assert stored.messages[1].message_id == body["message_id"]
    assert stored.messages[1].model == EMBEDDED_MODEL
    assert stored.messages[1].usage.completion_tokens == body["usage"]["completion_tokens"]
    assert stored.conversation.message_count == 2
    assert stored.conversation.title == message


async def test_rest_stream_is_ndjson_started_deltas_then_done(
    rest: httpx.AsyncClient, chat: ChatServiceStub, user_token: str
) -> None:
    body = {"message": unique("Count: one, two,"), "options": {"max_tokens": 6, "temperature": 0}}
    async with rest.stream("POST", "/v1/chat:stream", json=body) as response:
        assert response.status_code == 200
        lines = [json.loads(line) async for line in response.aiter_lines() if line.strip()]

    assert "started" in lines[0]
    assert lines[0]["started"]["model"] == EMBEDDED_MODEL
    assert lines[0]["started"]["cached"] is False
    deltas = lines[1:-1]
    assert deltas
    assert all("delta" in line for line in deltas)
    assert "done" in lines[-1]
    done = lines[-1]["done"]
    assert done["usage"]["completion_tokens"] <= 6
    assert done["time_to_first_token_ms"] > 0
    text = "".join(line["delta"]["text"] for line in deltas)

    stored = await chat.GetConversation(
        pb.GetConversationRequest(conversation_id=lines[0]["started"]["conversation_id"]),
        metadata=bearer(user_token),
        timeout=10,
    )
    assert stored.messages[-1].content == text
    assert stored.messages[-1].message_id == done["message_id"]


async def test_the_same_request_twice_is_cached_the_second_time_but_not_a_shared_prefix(
    rest: httpx.AsyncClient, chat: ChatServiceStub, operator_token: str
) -> None:
    before = await chat.GetCacheStats(
        pb.GetCacheStatsRequest(), metadata=bearer(operator_token), timeout=10
    )
    # The original cached by the first 200 characters of the prompt (ORIGINAL_SYSTEM §3.4).
    start = unique("Tell me about the sea.") + " " + "Waves roll in. " * 20
    assert len(start) > 200
    request = {"message": start + "Answer briefly.", "options": {"max_tokens": 4, "temperature": 0}}

    first = (await rest.post("/v1/chat", json=request)).json()
    second = (await rest.post("/v1/chat", json=request)).json()
    other = (
        await rest.post("/v1/chat", json={**request, "message": start + "Now answer at length."})
    ).json()
    stream_request = {**request, "options": {"max_tokens": 4, "temperature": 0}}
    async with rest.stream("POST", "/v1/chat:stream", json=stream_request) as response:
        streamed = [json.loads(line) async for line in response.aiter_lines() if line.strip()]

    assert first["cached"] is False
    assert second["cached"] is True
    assert second["reply"] == first["reply"]
    assert second["usage"] == first["usage"], "the original generation's counts"
    assert second["conversation_id"] != first["conversation_id"], "each call its own turn"
    assert other["cached"] is False
    assert streamed[0]["started"]["cached"] is True
    assert "".join(x["delta"]["text"] for x in streamed if "delta" in x) == first["reply"]
    assert "done" in streamed[-1]

    after = await chat.GetCacheStats(
        pb.GetCacheStatsRequest(), metadata=bearer(operator_token), timeout=10
    )
    assert after.hits >= before.hits + 2
    assert after.misses >= before.misses + 2
    assert after.keys >= 2
    assert after.memory_bytes > 0
    assert 0 < after.hit_rate < 1
    assert after.ttl_seconds == 3600


async def test_no_cache_neither_reads_nor_writes(chat: ChatServiceStub, user_token: str) -> None:
    message = unique("Name a colour.")
    first = await ask(chat, user_token, message, no_cache=True)
    second = await ask(chat, user_token, message)
    third = await ask(chat, user_token, message, no_cache=True)

    assert not first.cached
    assert not second.cached, "the no_cache reply was not written"
    assert not third.cached, "nor is the cached one read"


async def test_a_conversation_continues_with_its_history(
    chat: ChatServiceStub, user_token: str
) -> None:
    first = await ask(chat, user_token, unique("My name is Ada."), system_prompt="You are terse.")
    follow_up = unique("What is my name?")
    alone = await ask(chat, user_token, follow_up, no_cache=True)
    second = await ask(
        chat, user_token, follow_up, conversation_id=first.conversation_id, no_cache=True
    )

    assert second.conversation_id == first.conversation_id
    # The same message costs more prompt tokens inside the conversation: its history was sent.
    assert second.usage.prompt_tokens > alone.usage.prompt_tokens + 5
    stored = await chat.GetConversation(
        pb.GetConversationRequest(conversation_id=first.conversation_id),
        metadata=bearer(user_token),
        timeout=10,
    )
    assert [m.role for m in stored.messages] == [
        inference_pb.MESSAGE_ROLE_SYSTEM,
        inference_pb.MESSAGE_ROLE_USER,
        inference_pb.MESSAGE_ROLE_ASSISTANT,
        inference_pb.MESSAGE_ROLE_USER,
        inference_pb.MESSAGE_ROLE_ASSISTANT,
    ]
    assert stored.messages[0].content == "You are terse."
    assert stored.conversation.message_count == 5


async def test_list_pages_most_recent_first_get_and_delete(
    chat: ChatServiceStub, user_token: str
) -> None:
    older = await ask(chat, user_token, unique("First conversation."))
    newer = await ask(chat, user_token, unique("Second conversation."))

    first_page = await chat.ListConversations(
        pb.ListConversationsRequest(page_size=1), metadata=bearer(user_token), timeout=10
    )
    assert [c.conversation_id for c in first_page.conversations] == [newer.conversation_id]
    assert first_page.next_page_token
    second_page = await chat.ListConversations(
        pb.ListConversationsRequest(page_size=1, page_token=first_page.next_page_token),
        metadata=bearer(user_token),
        timeout=10,
    )
    assert [c.conversation_id for c in second_page.conversations] == [older.conversation_id]
    listed = first_page.conversations[0]
    assert listed.model == EMBEDDED_MODEL
    assert listed.message_count == 2
    assert listed.updated_at.ToDatetime() >= listed.created_at.ToDatetime()

    deleted = await chat.DeleteConversation(
        pb.DeleteConversationRequest(conversation_id=newer.conversation_id),
        metadata=bearer(user_token),
        timeout=10,
    )
    assert deleted.messages_deleted == 2
    assert newer.conversation_id not in await conversation_ids(chat, user_token)
    gone = await failure(
        chat.GetConversation(
            pb.GetConversationRequest(conversation_id=newer.conversation_id),
            metadata=bearer(user_token),
        )
    )
    assert gone.code() is grpc.StatusCode.NOT_FOUND


async def test_another_users_conversation_is_not_found(
    chat: ChatServiceStub, user_token: str, admin_token: str
) -> None:
    mine = await ask(chat, user_token, unique("A private question."))
    theirs = bearer(admin_token)  # another account (an admin: roles give no way in either)

    for call in (
        chat.GetConversation(
            pb.GetConversationRequest(conversation_id=mine.conversation_id), metadata=theirs
        ),
        chat.DeleteConversation(
            pb.DeleteConversationRequest(conversation_id=mine.conversation_id), metadata=theirs
        ),
        chat.Chat(
            pb.ChatRequest(message="hi", conversation_id=mine.conversation_id, options=TINY),
            metadata=theirs,
        ),
    ):
        error = await failure(call)
        assert error.code() is grpc.StatusCode.NOT_FOUND
    assert mine.conversation_id not in await conversation_ids(chat, admin_token)
    still = await chat.GetConversation(
        pb.GetConversationRequest(conversation_id=mine.conversation_id),
        metadata=bearer(user_token),
        timeout=10,
    )
    assert still.conversation.message_count == 2


# Refusals -------------------------------------------------------------------------------------


async def test_bad_input_is_invalid_argument_naming_each_field_and_stores_nothing(
    chat: ChatServiceStub, rest: httpx.AsyncClient, user_token: str
) -> None:
    before = await conversation_ids(chat, user_token)
    metadata = bearer(user_token)

    cases: list[tuple[pb.ChatRequest, set[str]]] = [
        (pb.ChatRequest(message=""), {"message"}),
        (pb.ChatRequest(message=" \n\t"), {"message"}),
        (pb.ChatRequest(message="x" * 32_769), {"message"}),
        (pb.ChatRequest(message="hi", conversation_id="nope"), {"conversation_id"}),
        (
            pb.ChatRequest(
                message="hi", conversation_id=mine_placeholder(), system_prompt="Be terse."
            ),
            {"system_prompt"},
        ),
        (
            pb.ChatRequest(
                message="hi",
                options=inference_pb.SamplingOptions(
                    temperature=3, top_p=0, top_k=0, max_tokens=5000, repeat_penalty=9
                ),
            ),
            {
                "options.temperature",
                "options.top_p",
                "options.top_k",
                "options.max_tokens",
                "options.repeat_penalty",
            },
        ),
    ]
    for request, fields in cases:
        error = await failure(chat.Chat(request, metadata=metadata, timeout=CALL_TIMEOUT))
        assert set(field_violations(error)) == fields, request
        stream = chat.ChatStream(
            pb.ChatStreamRequest(
                message=request.message,
                conversation_id=request.conversation_id,
                system_prompt=request.system_prompt,
                options=request.options,
            ),
            metadata=metadata,
            timeout=CALL_TIMEOUT,
        )
        streamed = await failure(stream.read())
        assert set(field_violations(streamed)) == fields

    reply = await rest.post("/v1/chat", json={"message": "   "})
    assert reply.status_code == 400
    violations = reply.json()["details"][0]["field_violations"]
    assert [v["field"] for v in violations] == ["message"]
    malformed = await rest.get("/v1/conversations/not-a-uuid")
    assert malformed.status_code == 400
    paged = await rest.get("/v1/conversations", params={"page_size": 101, "page_token": "zz"})
    assert paged.status_code == 400
    assert {v["field"] for v in paged.json()["details"][0]["field_violations"]} == {
        "page_size",
        "page_token",
    }

    assert await conversation_ids(chat, user_token) == before, "nothing stored"


def mine_placeholder() -> str:
    """A well-formed conversation id (the system prompt is refused before it is looked up)."""
    return "00000000-0000-4000-8000-000000000000"


async def test_an_unknown_model_is_not_found_and_stores_nothing(
    chat: ChatServiceStub, rest: httpx.AsyncClient, user_token: str
) -> None:
    before = await conversation_ids(chat, user_token)
    error = await failure(
        chat.Chat(
            pb.ChatRequest(message="hi", model="no-such-model", options=TINY),
            metadata=bearer(user_token),
            timeout=CALL_TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in (error.details() or "")
    streamed = await rest.post("/v1/chat:stream", json={"message": "hi", "model": "no-such-model"})
    assert streamed.status_code == 404, "a failure before the reply starts is an HTTP error"
    assert await conversation_ids(chat, user_token) == before


async def test_batch_answers_each_prompt_and_refuses_more_than_fifty(
    chat: ChatServiceStub, user_token: str
) -> None:
    prompts = [unique("Say yes."), unique("Say no.")]
    batch = await chat.BatchChat(
        pb.BatchChatRequest(prompts=prompts, options=TINY),
        metadata=bearer(user_token),
        timeout=CALL_TIMEOUT,
    )
    assert [item.index for item in batch.items] == [0, 1]
    assert all(item.status.code == 0 for item in batch.items), batch
    assert all(item.response.reply for item in batch.items)
    assert len({item.response.conversation_id for item in batch.items}) == 2

    too_many = await failure(
        chat.BatchChat(
            pb.BatchChatRequest(prompts=["hi"] * 51, options=TINY),
            metadata=bearer(user_token),
            timeout=CALL_TIMEOUT,
        )
    )
    assert set(field_violations(too_many)) == {"prompts"}
    blank = await failure(
        chat.BatchChat(
            pb.BatchChatRequest(prompts=["hi", ""], options=TINY), metadata=bearer(user_token)
        )
    )
    assert set(field_violations(blank)) == {"prompts[1]"}


async def test_batch_items_fail_one_by_one_with_their_own_status(
    chat: ChatServiceStub, user_token: str
) -> None:
    batch = await chat.BatchChat(
        pb.BatchChatRequest(prompts=["hi"], model="no-such-model", options=TINY),
        metadata=bearer(user_token),
        timeout=CALL_TIMEOUT,
    )
    assert batch.items[0].status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "no-such-model" in batch.items[0].status.message
    assert not batch.items[0].HasField("response")


# The cache, for operators ------------------------------------------------------------------------


async def test_only_operators_see_and_clear_the_cache_and_clearing_is_audited(
    chat: ChatServiceStub,
    user_token: str,
    operator_token: str,
    admin_token: str,
    mesh_services: MeshSettings,
) -> None:
    for call in (
        chat.ClearCache(pb.ClearCacheRequest(), metadata=bearer(user_token)),
        chat.GetCacheStats(pb.GetCacheStatsRequest(), metadata=bearer(user_token)),
    ):
        assert (await failure(call)).code() is grpc.StatusCode.PERMISSION_DENIED

    message = unique("Cache me.")
    await ask(chat, user_token, message)
    assert (await ask(chat, user_token, message)).cached

    cleared = await chat.ClearCache(
        pb.ClearCacheRequest(), metadata=bearer(operator_token), timeout=10
    )
    assert cleared.keys_deleted >= 1
    stats = await chat.GetCacheStats(
        pb.GetCacheStatsRequest(), metadata=bearer(operator_token), timeout=10
    )
    assert stats.keys == 0
    assert stats.hits >= 1, "the counters are not cache entries"
    assert not (await ask(chat, user_token, message)).cached

    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh_services.envoy.port}") as channel:
        auth = AuthServiceStub(channel)

        async def audited() -> bool:
            events = await auth.ListAuditEvents(
                auth_pb.ListAuditEventsRequest(
                    action="/sutazai.chat.v1.ChatService/ClearCache", page_size=50
                ),
                metadata=bearer(admin_token),
                timeout=10,
            )
            outcomes = {e.outcome for e in events.events}
            return {"ok", "PERMISSION_DENIED"} <= outcomes

        await wait_for(audited, timeout=10, message="ClearCache calls in the audit log")


# Cancellation and failures ------------------------------------------------------------------------


async def test_a_cancelled_stream_stops_generating_and_stores_the_partial_reply(
    chat: ChatServiceStub, user_token: str
) -> None:
    metadata = bearer(user_token)
    # A generation that would run for a long time (near-random sampling rarely ends a turn).
    call = chat.ChatStream(
        pb.ChatStreamRequest(
            message=unique("Write a very long story."),
            options=inference_pb.SamplingOptions(
                max_tokens=4096, temperature=2.0, top_k=1000, seed=7
            ),
            no_cache=True,
        ),
        metadata=metadata,
    )
    started = await call.read()
    assert started.WhichOneof("event") == "started"
    conversation_id = started.started.conversation_id
    received = ""
    while len(received) < 3:
        message = await call.read()
        assert message.WhichOneof("event") == "delta"
        received += message.delta.text
    call.cancel()

    async def stored() -> pb.GetConversationResponse | None:
        try:
            return await chat.GetConversation(
                pb.GetConversationRequest(conversation_id=conversation_id),
                metadata=metadata,
                timeout=10,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise

    await wait_for(stored, timeout=15, interval=0.1, message="the partial reply is stored")
    conversation = await stored()
    assert conversation is not None
    partial = conversation.messages[-1]
    assert partial.role == inference_pb.MESSAGE_ROLE_ASSISTANT
    assert partial.content.startswith(received)
    assert partial.usage.completion_tokens < 4096

    # The generation stopped at once: the next reply does not wait behind 4096 tokens.
    quick = await ask(chat, user_token, unique("Say hi."), no_cache=True)
    assert quick.reply


async def test_a_backend_failure_keeps_its_status_unavailable_is_503(
    chat: ChatServiceStub,
    user_token: str,
    rest: httpx.AsyncClient,
    openai_backend: LlamaServer,
) -> None:
    # no_cache: the cache would answer the same request without asking the backend.
    request = pb.ChatRequest(
        message="Say hi.", model=openai_backend.model, options=TINY, no_cache=True
    )

    async def answers() -> bool:
        try:
            await chat.Chat(request, metadata=bearer(user_token), timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError:
            return False
        return True

    await wait_for(answers, timeout=60, interval=0.5, message="the OpenAI backend answers")
    before = await conversation_ids(chat, user_token)
    openai_backend.stop()
    try:
        error = await failure(chat.Chat(request, metadata=bearer(user_token), timeout=CALL_TIMEOUT))
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        body = {"message": "Say hi.", "model": openai_backend.model, "no_cache": True}
        unary = await rest.post("/v1/chat", json=body)
        assert unary.status_code == 503, unary.text
        streamed = await rest.post("/v1/chat:stream", json=body)
        assert streamed.status_code == 503, streamed.text
        assert await conversation_ids(chat, user_token) == before, "failed turns store nothing"
    finally:
        await openai_backend.start()
    await wait_for(answers, timeout=60, interval=0.5, message="the OpenAI backend is back")


async def test_concurrent_turns_of_one_conversation_are_all_stored(
    chat: ChatServiceStub, user_token: str
) -> None:
    first = await ask(chat, user_token, unique("Start."))
    replies = await asyncio.gather(
        *(
            ask(chat, user_token, unique(f"Turn {i}."), conversation_id=first.conversation_id)
            for i in range(2)
        )
    )
    assert {r.conversation_id for r in replies} == {first.conversation_id}
    stored = await chat.GetConversation(
        pb.GetConversationRequest(conversation_id=first.conversation_id),
        metadata=bearer(user_token),
        timeout=10,
    )
    assert stored.conversation.message_count == len(stored.messages) == 6
