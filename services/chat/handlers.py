"""gRPC handlers of ``sutazai.chat.v1.ChatService``: validation, the caller, translation.

Every request is checked against the proto's rules first (each violation named by its field,
nothing stored on a refusal). Every call acts for the token's ``sub``: another user's
conversation is NOT_FOUND, exactly like one that never existed.

``ChatStream`` sends ``started`` only once the reply's first text (or a cached reply) is there:
a failure before that (backend down, unknown model) is the bare status, which REST callers get
as an HTTP error (503, 404) rather than a 200 stream. After ``started``, a failure is an
``error`` event followed by the same status (FIELD_GUIDE §1.3). A caller who cancels stops the
generation at once; what was generated is stored.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from redis.exceptions import RedisError

from sutazai.chat.v1 import chat_service_pb2 as pb
from sutazai.chat.v1 import chat_service_pb2_grpc as pb_grpc
from sutazai.inference.v1 import inference_service_pb2 as inference_pb
from sutazai.runtime import context as rpc_context
from sutazai.runtime.auth import require_identity
from sutazai.runtime.faults import (
    RpcStatusError,
    deadline_exceeded,
    invalid_argument,
    not_found,
    unavailable,
)
from sutazai.runtime.settings import ChatSettings
from sutazai.services.chat.domain import (
    Cursor,
    FinishReason,
    Options,
    Role,
    batch_violations,
    id_violations,
    model_violations,
    option_violations,
    page_size_of,
    parse_conversation_id,
    system_prompt_violations,
    text_violations,
)
from sutazai.services.chat.metrics import ChatMetrics
from sutazai.services.chat.replies import Answer, Ask, Replies, Turnout, from_cache, from_model
from sutazai.services.chat.store import ChatStore, Conversation, StoredMessage
from sutazai.services.chat.upstream import Delta, Done

DEADLINE_MARGIN_SECONDS = 0.5
"""BatchChat answers this long before its caller's deadline, with what it has by then."""
_REASONS = {
    FinishReason.STOP: inference_pb.FINISH_REASON_STOP,
    FinishReason.LENGTH: inference_pb.FINISH_REASON_LENGTH,
    FinishReason.CANCELLED: inference_pb.FINISH_REASON_UNSPECIFIED,
}
_ROLES = {
    Role.SYSTEM: inference_pb.MESSAGE_ROLE_SYSTEM,
    Role.USER: inference_pb.MESSAGE_ROLE_USER,
    Role.ASSISTANT: inference_pb.MESSAGE_ROLE_ASSISTANT,
}


class ChatHandlers(pb_grpc.ChatServiceServicer):
    """Validates requests, runs turns, renders answers."""

    def __init__(
        self, replies: Replies, store: ChatStore, settings: ChatSettings, metrics: ChatMetrics
    ) -> None:
        self._replies = replies
        self._store = store
        self._settings = settings
        self._metrics = metrics

    async def Chat(  # noqa: N802 - generated servicer method name
        self, request: pb.ChatRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChatResponse:
        """One turn, the whole reply at once."""
        ask = _ask(request, context)
        turnout = await self._replies.prepare(ask)
        return _response(await self._replies.answer(turnout))

    async def ChatStream(  # noqa: N802 - generated servicer method name
        self, request: pb.ChatStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatStreamResponse]:
        """One turn, streamed: ``started``, deltas, then ``done`` or ``error``."""
        ask = _ask(request, context)
        turnout = await self._replies.prepare(ask)
        hit = await self._replies.cached(turnout)
        if hit is not None:
            yield _started(turnout, cached=True)
            if hit.text:
                yield pb.ChatStreamResponse(delta=inference_pb.TextDelta(text=hit.text))
            try:
                answer = await self._replies.store(turnout, from_cache(hit, turnout.elapsed_ms()))
            except RpcStatusError as fault:
                yield pb.ChatStreamResponse(error=fault.to_proto())
                raise
            yield _done(answer, turnout.elapsed_ms())
            return
        async for message in self._stream(turnout, context):
            yield message

    async def _stream(
        self, turnout: Turnout, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatStreamResponse]:
        generation = self._replies.generate(turnout)
        parts: list[str] = []
        state = _Progress()

        def on_done(_: object) -> None:
            # The call ended (cancelled, deadline) while the reply was coming: stop the model
            # at once, whatever our generator is waiting on, and keep what it said.
            if not state.finished:
                state.finished = True
                generation.cancel()
                self._replies.store_partial(turnout, "".join(parts), len(parts))

        context.add_done_callback(on_done)
        started = False
        try:
            done: Done | None = None
            async for event in generation.events():
                if not started:
                    started = True
                    yield _started(turnout, cached=False)
                if isinstance(event, Delta):
                    if not parts:
                        state.first_token_ms = turnout.elapsed_ms()
                        self._metrics.first_token.observe(state.first_token_ms / 1e3)
                    parts.append(event.text)
                    yield pb.ChatStreamResponse(delta=inference_pb.TextDelta(text=event.text))
                else:
                    done = event
            if done is None:  # events() raises rather than end without done
                raise unavailable("the reply ended without finishing")
            reply = from_model(done, "".join(parts), turnout.elapsed_ms())
            state.finished = True
            answer = await self._replies.store(turnout, reply)
            await self._replies.remember(turnout, reply)
            yield _done(answer, state.first_token_ms)
        except RpcStatusError as fault:
            state.finished = True
            if started:
                yield pb.ChatStreamResponse(error=fault.to_proto())
            raise
        finally:
            if not state.finished:
                on_done(None)

    async def BatchChat(  # noqa: N802 - generated servicer method name
        self, request: pb.BatchChatRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchChatResponse:
        """Up to 50 independent turns, a few at a time, each with its own status.

        A prompt refused for the caller's rate limit (RESOURCE_EXHAUSTED with a retry delay)
        waits that delay and tries again, as long as the call's deadline leaves time; an item
        still unanswered when the deadline nears is DEADLINE_EXCEEDED, and the others keep
        their replies.
        """
        options = _options(request.options)
        violations = {
            **batch_violations(request.prompts),
            **model_violations(request.model),
            **option_violations(options),
        }
        if violations:
            raise invalid_argument(violations)
        identity = require_identity()
        authorization = _authorization(context)
        remaining = rpc_context.remaining_seconds()
        budget = self._settings.batch_max_seconds
        if remaining is not None:
            budget = min(budget, remaining - DEADLINE_MARGIN_SECONDS)
        deadline = time.monotonic() + max(0.0, budget)
        slots = asyncio.Semaphore(self._settings.batch_concurrency)

        async def one(prompt: str) -> tuple[status_pb2.Status, pb.ChatResponse | None]:
            ask = Ask(
                user_id=identity.user_id,
                authorization=authorization,
                message=prompt,
                model=request.model,
                conversation_id="",
                options=options,
                system_prompt="",
                no_cache=request.no_cache,
            )
            async with slots:
                while True:
                    try:
                        turnout = await self._replies.prepare(ask)
                        answer = await self._replies.answer(turnout)
                    except RpcStatusError as fault:
                        wait = _retry_delay(fault)
                        if wait is None or time.monotonic() + wait >= deadline:
                            return fault.to_proto(), None
                        self._metrics.batch_waits.inc()
                        await asyncio.sleep(wait)
                        continue
                    return status_pb2.Status(code=code_pb2.OK), _response(answer)

        tasks = [asyncio.create_task(one(prompt)) for prompt in request.prompts]
        try:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        items = []
        late = deadline_exceeded("no time left before the call's deadline").to_proto()
        for index, task in enumerate(tasks):
            if task in pending or task.cancelled():
                status, response = late, None
            else:
                status, response = task.result()
            self._metrics.batch_items.labels(code_pb2.Code.Name(status.code)).inc()
            items.append(pb.BatchChatItem(index=index, status=status, response=response))
        return pb.BatchChatResponse(items=items)

    async def ListConversations(  # noqa: N802 - generated servicer method name
        self, request: pb.ListConversationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConversationsResponse:
        """The caller's conversations, most recently active first."""
        violations: dict[str, str] = {}
        size = 0
        try:
            size = page_size_of(request.page_size)
        except ValueError as exc:
            violations["page_size"] = str(exc)
        cursor = None
        if request.page_token:
            try:
                cursor = Cursor.parse(request.page_token)
            except ValueError as exc:
                violations["page_token"] = str(exc)
        if violations:
            raise invalid_argument(violations)
        identity = require_identity()
        # One more than asked: whether there is a next page, without a second query.
        found = await self._store.page(identity.user_id, after=cursor, limit=size + 1)
        page = found[:size]
        next_token = ""
        if len(found) > size:
            last = page[-1]
            next_token = Cursor(last.updated_at, last.conversation_id).token()
        return pb.ListConversationsResponse(
            conversations=[_conversation(c) for c in page], next_page_token=next_token
        )

    async def GetConversation(  # noqa: N802 - generated servicer method name
        self, request: pb.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetConversationResponse:
        """One of the caller's conversations with its messages."""
        conversation_id = _conversation_id(request.conversation_id)
        identity = require_identity()
        found = await self._store.conversation(identity.user_id, conversation_id)
        if found is None:
            raise not_found("conversation", request.conversation_id)
        messages = await self._store.messages(conversation_id)
        return pb.GetConversationResponse(
            conversation=_conversation(found), messages=[_message(m) for m in messages]
        )

    async def DeleteConversation(  # noqa: N802 - generated servicer method name
        self, request: pb.DeleteConversationRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteConversationResponse:
        """Delete one of the caller's conversations."""
        conversation_id = _conversation_id(request.conversation_id)
        identity = require_identity()
        deleted = await self._store.delete(identity.user_id, conversation_id)
        if deleted is None:
            raise not_found("conversation", request.conversation_id)
        return pb.DeleteConversationResponse(messages_deleted=deleted)

    async def GetCacheStats(  # noqa: N802 - generated servicer method name
        self, request: pb.GetCacheStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCacheStatsResponse:
        """Hits, misses, keys and memory of the reply cache."""
        cache = self._replies.cache
        try:
            stats = await cache.stats()
        except (RedisError, OSError) as exc:
            raise unavailable("the reply cache is unavailable (Redis)") from exc
        return pb.GetCacheStatsResponse(
            hits=stats.hits,
            misses=stats.misses,
            hit_rate=stats.hit_rate,
            keys=stats.keys,
            memory_bytes=stats.memory_bytes,
            ttl_seconds=cache.ttl_seconds,
        )

    async def ClearCache(  # noqa: N802 - generated servicer method name
        self, request: pb.ClearCacheRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClearCacheResponse:
        """Delete every cached reply (audited by the guard)."""
        try:
            deleted = await self._replies.cache.clear()
        except (RedisError, OSError) as exc:
            raise unavailable("the reply cache is unavailable (Redis)") from exc
        return pb.ClearCacheResponse(keys_deleted=deleted)


def _ask(request: pb.ChatRequest | pb.ChatStreamRequest, context: grpc.aio.ServicerContext) -> Ask:
    """The validated turn of a Chat or ChatStream request, for the caller."""
    options = _options(request.options)
    continuing = bool(request.conversation_id)
    violations = {
        **text_violations("message", request.message),
        **model_violations(request.model),
        **(id_violations(request.conversation_id) if continuing else {}),
        **system_prompt_violations(request.system_prompt, continuing=continuing),
        **option_violations(options),
    }
    if violations:
        raise invalid_argument(violations)
    identity = require_identity()
    return Ask(
        user_id=identity.user_id,
        authorization=_authorization(context),
        message=request.message,
        model=request.model,
        conversation_id=request.conversation_id,
        options=options,
        system_prompt=request.system_prompt,
        no_cache=request.no_cache,
    )


def _options(options: inference_pb.SamplingOptions) -> Options:
    return Options(
        temperature=options.temperature if options.HasField("temperature") else None,
        top_p=options.top_p if options.HasField("top_p") else None,
        top_k=options.top_k if options.HasField("top_k") else None,
        max_tokens=options.max_tokens if options.HasField("max_tokens") else None,
        stop=tuple(options.stop),
        seed=options.seed if options.HasField("seed") else None,
        repeat_penalty=options.repeat_penalty if options.HasField("repeat_penalty") else None,
    )


@dataclass(slots=True)
class _Progress:
    """A streamed reply's progress, shared with the call's done callback."""

    finished: bool = False
    """Stored, failed or already handled: the done callback has nothing left to do."""
    first_token_ms: float = 0.0


def _conversation_id(text: str) -> uuid.UUID:
    violations = id_violations(text)
    if violations:
        raise invalid_argument(violations)
    return parse_conversation_id(text)


def _authorization(context: grpc.aio.ServicerContext) -> str:
    """The caller's ``authorization`` header (the guard has verified it)."""
    metadata: Mapping[str, object] = dict(context.invocation_metadata() or ())
    value = metadata.get("authorization", "")
    return value if isinstance(value, str) else ""


def _retry_delay(fault: RpcStatusError) -> float | None:
    """The retry delay of a RESOURCE_EXHAUSTED fault, if it has one."""
    if fault.code is not grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    for detail in fault.details:
        if isinstance(detail, error_details_pb2.RetryInfo):
            return max(0.0, float(detail.retry_delay.ToNanoseconds()) / 1e9)
    return None


def _response(answer: Answer) -> pb.ChatResponse:
    reply = answer.reply
    return pb.ChatResponse(
        conversation_id=str(answer.conversation_id),
        message_id=str(answer.message_id),
        reply=reply.content,
        model=reply.model,
        cached=reply.cached,
        finish_reason=_REASONS[reply.finish_reason],
        usage=inference_pb.Usage(
            prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens
        ),
        latency_ms=reply.latency_ms,
    )


def _started(turnout: Turnout, *, cached: bool) -> pb.ChatStreamResponse:
    return pb.ChatStreamResponse(
        started=pb.ChatStarted(
            conversation_id=str(turnout.conversation_id), model=turnout.model, cached=cached
        )
    )


def _done(answer: Answer, first_token_ms: float) -> pb.ChatStreamResponse:
    reply = answer.reply
    return pb.ChatStreamResponse(
        done=pb.ChatDone(
            message_id=str(answer.message_id),
            finish_reason=_REASONS[reply.finish_reason],
            usage=inference_pb.Usage(
                prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens
            ),
            latency_ms=reply.latency_ms,
            time_to_first_token_ms=first_token_ms,
        )
    )


def _conversation(conversation: Conversation) -> pb.Conversation:
    message = pb.Conversation(
        conversation_id=str(conversation.conversation_id),
        title=conversation.title,
        model=conversation.model,
        message_count=conversation.message_count,
    )
    message.created_at.FromDatetime(conversation.created_at)
    message.updated_at.FromDatetime(conversation.updated_at)
    return message


def _message(stored: StoredMessage) -> pb.ChatMessage:
    message = pb.ChatMessage(
        message_id=str(stored.message_id),
        role=_ROLES[stored.role],
        content=stored.content,
        model=stored.model,
        latency_ms=stored.latency_ms,
        cached=stored.cached,
    )
    if stored.role is Role.ASSISTANT:
        message.usage.prompt_tokens = stored.prompt_tokens
        message.usage.completion_tokens = stored.completion_tokens
    message.created_at.FromDatetime(stored.created_at)
    return message
