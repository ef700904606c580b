"""The client's inference and chat calls against a stand-in edge (a real grpc.aio server).

The stand-in serves ``InferenceService`` and ``ChatService`` (and ``AuthService.Refresh``); the
client reaches it as it reaches Envoy, through ``settings.envoy.port``. Statuses a "service"
sends are built with ``sutazai.runtime.faults`` (so they carry the rich status, as the real
services' do); the ones the "edge" sends are plain.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from google.rpc import status_pb2

from sutazai.auth.v1 import auth_service_pb2_grpc as auth_grpc
from sutazai.chat.v1 import chat_service_pb2 as chat_pb
from sutazai.chat.v1 import chat_service_pb2_grpc as chat_grpc
from sutazai.client import (
    CallFailed,
    ConnectionState,
    MemoryTokenStore,
    MeshClient,
    MeshUnavailable,
    SessionEnded,
)
from sutazai.inference.v1 import inference_service_pb2 as inf_pb
from sutazai.inference.v1 import inference_service_pb2_grpc as inf_grpc
from sutazai.runtime import faults
from tests.client.test_streams import Refresher, settings_for, signed_in
from tests.harness import wait_for

pytestmark = pytest.mark.integration

DEADLINE = 10.0
MODEL = "smollm2-135m-instruct"


def token_of(context: grpc.aio.ServicerContext) -> str:
    return str(dict(context.invocation_metadata() or ()).get("authorization", ""))


async def refuse(context: grpc.aio.ServicerContext, fault: faults.RpcStatusError) -> None:
    """Abort as a mesh service does: with the rich status."""
    await context.abort_with_status(fault.to_status())


class Inference(inf_grpc.InferenceServiceServicer):
    """Fixed models and backends; records every request and deadline."""

    def __init__(self) -> None:
        self.requests: list[object] = []
        self.deadlines: list[float | None] = []
        self.backend_down = False
        self.cancelled = asyncio.Event()

    def _seen(self, request: object, context: grpc.aio.ServicerContext) -> None:
        self.requests.append(request)
        self.deadlines.append(context.time_remaining())

    async def ListModels(  # noqa: N802
        self, request: inf_pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> inf_pb.ListModelsResponse:
        self._seen(request, context)
        return inf_pb.ListModelsResponse(
            models=[inf_pb.Model(name=MODEL, backend="embedded", loaded=True)],
            default_model=MODEL,
        )

    async def ListBackends(  # noqa: N802
        self, request: inf_pb.ListBackendsRequest, context: grpc.aio.ServicerContext
    ) -> inf_pb.ListBackendsResponse:
        self._seen(request, context)
        if self.backend_down:
            await refuse(context, faults.unavailable("backend ollama: breaker open", 5.0))
        return inf_pb.ListBackendsResponse(
            backends=[inf_pb.Backend(name="embedded", max_concurrency=1, in_flight=1)]
        )

    async def LoadModel(  # noqa: N802
        self, request: inf_pb.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> inf_pb.LoadModelResponse:
        self._seen(request, context)
        if token_of(context) != "Bearer operator":
            await refuse(
                context,
                faults.permission_denied(
                    "needs operator", reason="ROLE_REQUIRED", domain="sutazai.auth"
                ),
            )
        return inf_pb.LoadModelResponse(model=inf_pb.Model(name=request.model), load_ms=12.5)

    async def UnloadModel(  # noqa: N802
        self, request: inf_pb.UnloadModelRequest, context: grpc.aio.ServicerContext
    ) -> inf_pb.UnloadModelResponse:
        self._seen(request, context)
        if request.model != MODEL:
            await refuse(context, faults.not_found("model", request.model))
        return inf_pb.UnloadModelResponse(model=inf_pb.Model(name=request.model, loaded=False))

    async def ResetBreaker(  # noqa: N802
        self, request: inf_pb.ResetBreakerRequest, context: grpc.aio.ServicerContext
    ) -> inf_pb.ResetBreakerResponse:
        self._seen(request, context)
        return inf_pb.ResetBreakerResponse(
            backend=inf_pb.Backend(
                name=request.backend,
                breaker=inf_pb.Breaker(state=inf_pb.BREAKER_STATE_CLOSED),
            )
        )

    async def GenerateStream(  # noqa: N802
        self, request: inf_pb.GenerateStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[inf_pb.GenerateStreamResponse]:
        self._seen(request, context)
        yield inf_pb.GenerateStreamResponse(delta=inf_pb.TextDelta(text="Hel"))
        yield inf_pb.GenerateStreamResponse(delta=inf_pb.TextDelta(text="lo"))
        yield inf_pb.GenerateStreamResponse(
            done=inf_pb.GenerateDone(model=MODEL, finish_reason=inf_pb.FINISH_REASON_STOP)
        )


class Chat(chat_grpc.ChatServiceServicer):
    """A scripted chat service: the message text says what the stream does."""

    def __init__(self, conversations: int = 0) -> None:
        self.requests: list[object] = []
        self.deadlines: list[float | None] = []
        self.tokens: list[str] = []
        self.stream_cancelled = asyncio.Event()
        self.conversations = [
            chat_pb.Conversation(conversation_id=f"c{i:03d}", title=f"chat {i}")
            for i in range(conversations)
        ]
        self.page_sizes: list[int] = []

    def _seen(self, request: object, context: grpc.aio.ServicerContext) -> None:
        self.requests.append(request)
        self.deadlines.append(context.time_remaining())
        self.tokens.append(token_of(context))

    async def Chat(  # noqa: N802
        self, request: chat_pb.ChatRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb.ChatResponse:
        self._seen(request, context)
        if not request.message.strip():
            await refuse(context, faults.invalid_argument({"message": "must not be empty"}))
        return chat_pb.ChatResponse(
            conversation_id=request.conversation_id or "new", reply="Hi!", model=MODEL
        )

    async def ChatStream(  # noqa: N802
        self, request: chat_pb.ChatStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chat_pb.ChatStreamResponse]:
        self._seen(request, context)
        if request.message == "stale" and token_of(context) != "Bearer fresh":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "token expired")
        yield chat_pb.ChatStreamResponse(
            started=chat_pb.ChatStarted(conversation_id="conv-1", model=MODEL)
        )
        yield chat_pb.ChatStreamResponse(delta=inf_pb.TextDelta(text="Hello"))
        if request.message == "hang":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.stream_cancelled.set()
                raise
        if request.message in {"fail", "fail-ok"}:
            fault = faults.unavailable("backend embedded failed mid-reply")
            yield chat_pb.ChatStreamResponse(
                error=status_pb2.Status(code=fault.code.value[0], message=fault.message)
            )
            if request.message == "fail":
                await refuse(context, fault)
            return
        yield chat_pb.ChatStreamResponse(delta=inf_pb.TextDelta(text=" there"))
        yield chat_pb.ChatStreamResponse(
            done=chat_pb.ChatDone(message_id="m-2", finish_reason=inf_pb.FINISH_REASON_STOP)
        )

    async def BatchChat(  # noqa: N802
        self, request: chat_pb.BatchChatRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb.BatchChatResponse:
        self._seen(request, context)
        return chat_pb.BatchChatResponse(
            items=[
                chat_pb.BatchChatItem(index=i, response=chat_pb.ChatResponse(reply=p.upper()))
                for i, p in enumerate(request.prompts)
            ]
        )

    async def ListConversations(  # noqa: N802
        self, request: chat_pb.ListConversationsRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb.ListConversationsResponse:
        self._seen(request, context)
        self.page_sizes.append(request.page_size)
        start = int(request.page_token or 0)
        end = start + request.page_size
        return chat_pb.ListConversationsResponse(
            conversations=self.conversations[start:end],
            next_page_token=str(end) if end < len(self.conversations) else "",
        )

    async def GetConversation(  # noqa: N802
        self, request: chat_pb.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb.GetConversationResponse:
        self._seen(request, context)
        if request.conversation_id != "mine":
            await refuse(context, faults.not_found("conversation", request.conversation_id))
        return chat_pb.GetConversationResponse(
            conversation=chat_pb.Conversation(conversation_id="mine", message_count=2),
            messages=[
                chat_pb.ChatMessage(role=inf_pb.MESSAGE_ROLE_USER, content="Hi"),
                chat_pb.ChatMessage(role=inf_pb.MESSAGE_ROLE_ASSISTANT, content="Hello"),
            ],
        )

    async def DeleteConversation(  # noqa: N802
        self, request: chat_pb.DeleteConversationRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb.DeleteConversationResponse:
        self._seen(request, context)
        return chat_pb.DeleteConversationResponse(messages_deleted=4)

    async def GetCacheStats(  # noqa: N802
        self, request: chat_pb.GetCacheStatsRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb.GetCacheStatsResponse:
        self._seen(request, context)
        return chat_pb.GetCacheStatsResponse(hits=3, misses=1, hit_rate=0.75, keys=2)

    async def ClearCache(  # noqa: N802
        self, request: chat_pb.ClearCacheRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb.ClearCacheResponse:
        self._seen(request, context)
        return chat_pb.ClearCacheResponse(keys_deleted=2)


class Edge:
    """The stand-in edge and its services."""

    def __init__(self, server: grpc.aio.Server, port: int, inference: Inference, chat: Chat):
        self.server = server
        self.port = port
        self.inference = inference
        self.chat = chat


@asynccontextmanager
async def stand_in_edge() -> AsyncIterator[Edge]:
    """The stand-in edge on a free loopback port, stopped on the way out."""
    inference, chat = Inference(), Chat(conversations=250)
    server = grpc.aio.server()
    inf_grpc.add_InferenceServiceServicer_to_server(inference, server)
    chat_grpc.add_ChatServiceServicer_to_server(chat, server)
    auth_grpc.add_AuthServiceServicer_to_server(Refresher(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Edge(server, port, inference, chat)
    finally:
        await server.stop(grace=None)


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    async with stand_in_edge() as started:
        yield started


def client_of(edge: Edge, tmp_path: Path, access_token: str = "operator") -> MeshClient:  # noqa: S107
    return MeshClient(
        settings_for(tmp_path, edge.port),
        tokens=signed_in(access_token),
        call_timeout=5.0,
        generation_timeout=120.0,
    )


async def test_inference_calls_are_typed_and_carry_the_session(edge: Edge, tmp_path: Path) -> None:
    async with client_of(edge, tmp_path) as client:
        models = await client.list_models()
        assert models.default_model == MODEL
        assert [b.name for b in await client.list_backends()] == ["embedded"]
        loaded = await client.load_model(MODEL)
        assert (loaded.model.name, loaded.load_ms) == (MODEL, 12.5)
        assert not (await client.unload_model(MODEL)).loaded
        reset = await client.reset_breaker("ollama")
        assert reset.breaker.state == inf_pb.BREAKER_STATE_CLOSED
        generated = [
            event
            async for event in client.generate_stream(
                [inf_pb.Message(role=inf_pb.MESSAGE_ROLE_USER, content="Hi")],
                model=MODEL,
                options=inf_pb.SamplingOptions(max_tokens=4),
            )
        ]
    assert "".join(e.delta.text for e in generated) == "Hello"
    assert generated[-1].WhichOneof("event") == "done"
    sent = edge.inference.requests[-1]
    assert isinstance(sent, inf_pb.GenerateStreamRequest)
    assert (sent.model, sent.options.max_tokens) == (MODEL, 4)
    # Loading waits for a model: the longer deadline; listing keeps the short one.
    list_deadline, load_deadline = edge.inference.deadlines[0], edge.inference.deadlines[2]
    assert list_deadline is not None
    assert list_deadline <= 5.0
    assert load_deadline is not None
    assert load_deadline > 60.0


async def test_refusals_map_to_the_client_errors(edge: Edge, tmp_path: Path) -> None:
    async with client_of(edge, tmp_path, access_token="user") as client:
        with pytest.raises(CallFailed) as denied:
            await client.load_model(MODEL)
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(CallFailed) as missing:
            await client.unload_model("nope")
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(CallFailed) as invalid:
            await client.chat("   ")
        assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert invalid.value.violations == {"message": "must not be empty"}


async def test_a_backend_unavailable_is_not_a_lost_mesh(edge: Edge, tmp_path: Path) -> None:
    """UNAVAILABLE from the service (its backend's breaker) raises, but the mesh is there."""
    states: list[ConnectionState] = []
    edge.inference.backend_down = True
    async with client_of(edge, tmp_path) as client:
        client.on_connection_change(states.append)
        with pytest.raises(MeshUnavailable, match="breaker open"):
            await client.list_backends()
        assert states == []
        await edge.server.stop(grace=None)
        with pytest.raises(MeshUnavailable):
            await client.list_models()
        assert [s.connected for s in states] == [False]


async def test_chat_and_batch_chat_send_every_option(edge: Edge, tmp_path: Path) -> None:
    options = inf_pb.SamplingOptions(temperature=0.2, max_tokens=16, seed=7)
    async with client_of(edge, tmp_path) as client:
        reply = await client.chat(
            "Hello",
            model=MODEL,
            conversation_id="c1",
            options=options,
            system_prompt="Be brief.",
            no_cache=True,
        )
        items = await client.batch_chat(["a", "b"], model=MODEL, no_cache=True)
    assert (reply.conversation_id, reply.reply) == ("c1", "Hi!")
    sent = edge.chat.requests[0]
    assert sent == chat_pb.ChatRequest(
        message="Hello",
        model=MODEL,
        conversation_id="c1",
        options=options,
        system_prompt="Be brief.",
        no_cache=True,
    )
    assert [item.response.reply for item in items] == ["A", "B"]
    assert edge.chat.tokens == ["Bearer operator", "Bearer operator"]
    # A chat waits for the model: the generation deadline, not the 5 s one.
    assert all(d is not None and d > 60.0 for d in edge.chat.deadlines)


async def test_chat_stream_yields_started_deltas_then_done(edge: Edge, tmp_path: Path) -> None:
    async with client_of(edge, tmp_path) as client:
        events = [event async for event in client.chat_stream("Hi", model=MODEL)]
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds == ["started", "delta", "delta", "done"]
    assert events[0].started.conversation_id == "conv-1"
    assert "".join(e.delta.text for e in events) == "Hello there"


@pytest.mark.parametrize("message", ["fail", "fail-ok"])
async def test_an_error_event_ends_the_stream_with_its_status(
    edge: Edge, tmp_path: Path, message: str
) -> None:
    """The event is raised, not yielded; with or without the call's own status after it."""
    seen: list[str] = []
    states: list[ConnectionState] = []
    async with client_of(edge, tmp_path) as client:
        client.on_connection_change(states.append)

        async def read() -> None:
            async for event in client.chat_stream(message):
                seen.append(str(event.WhichOneof("event")))

        with pytest.raises(MeshUnavailable, match="failed mid-reply"):
            await read()
    assert seen == ["started", "delta"]
    assert states == []  # the service answered: the mesh is there


async def test_closing_a_chat_stream_cancels_the_call(edge: Edge, tmp_path: Path) -> None:
    async with client_of(edge, tmp_path) as client:
        stream = client.chat_stream("hang")
        assert isinstance(stream, AsyncIterator)
        first = await anext(stream)
        assert first.WhichOneof("event") == "started"
        assert (await anext(stream)).delta.text == "Hello"
        await stream.aclose()  # type: ignore[attr-defined]
        await wait_for(edge.chat.stream_cancelled.is_set, DEADLINE, message="call cancelled")


async def test_cancelling_the_reader_of_a_chat_stream_cancels_the_call(
    edge: Edge, tmp_path: Path
) -> None:
    async with client_of(edge, tmp_path) as client:
        got: list[str] = []

        async def read() -> None:
            async for event in client.chat_stream("hang"):
                got.append(event.delta.text)

        reader = asyncio.create_task(read())
        await wait_for(lambda: "Hello" in got, DEADLINE, message="reply started")
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        await wait_for(edge.chat.stream_cancelled.is_set, DEADLINE, message="call cancelled")


async def test_a_refused_token_renews_once_before_the_reply_starts(
    edge: Edge, tmp_path: Path
) -> None:
    async with client_of(edge, tmp_path, access_token="stale") as client:
        events = [event async for event in client.chat_stream("stale")]
    assert events[-1].WhichOneof("event") == "done"
    assert edge.chat.tokens == ["Bearer stale", "Bearer fresh"]  # one reply generated


async def test_a_chat_stream_without_a_session_ends_at_once(edge: Edge, tmp_path: Path) -> None:
    client = MeshClient(settings_for(tmp_path, edge.port), tokens=MemoryTokenStore())
    async with client:
        with pytest.raises(SessionEnded):
            async for _ in client.chat_stream("Hi"):
                pass  # pragma: no cover - never reached
    assert edge.chat.requests == []


async def test_conversations_are_listed_across_pages_or_one_page(
    edge: Edge, tmp_path: Path
) -> None:
    async with client_of(edge, tmp_path) as client:
        everything = await client.list_conversations()
        assert len(everything) == 250
        assert everything[0].conversation_id == "c000"
        assert edge.chat.page_sizes == [100, 100, 100]
        some = await client.list_conversations(limit=120)
        assert [c.conversation_id for c in some][-1] == "c119"
        assert edge.chat.page_sizes[-2:] == [100, 20]
        page = await client.list_conversations_page(page_size=10, page_token="240")
        assert len(page.conversations) == 10
        assert page.next_page_token == ""
        got = await client.get_conversation("mine")
        assert [m.content for m in got.messages] == ["Hi", "Hello"]
        with pytest.raises(CallFailed) as other:
            await client.get_conversation("theirs")
        assert other.value.code == grpc.StatusCode.NOT_FOUND
        assert await client.delete_conversation("mine") == 4


async def test_cache_stats_and_clear(edge: Edge, tmp_path: Path) -> None:
    async with client_of(edge, tmp_path) as client:
        stats = await client.cache_stats()
        assert (stats.hits, stats.misses, stats.hit_rate) == (3, 1, 0.75)
        assert await client.clear_cache() == 2
