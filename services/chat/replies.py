"""One chat turn: the conversation, its trimmed history, the cache, the model, the store.

A turn is stored only once it has a reply: a refused or failed call (bad input, unknown model,
backend down) leaves the user's conversations exactly as they were, so retrying is harmless.
A streamed reply the caller cancels is the exception: what was generated is stored, marked
``cancelled``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from dataclasses import dataclass

import structlog

from sutazai.runtime.faults import RpcStatusError, failed_precondition, not_found, unavailable
from sutazai.runtime.settings import ChatSettings
from sutazai.services.chat.cache import ReplyCache
from sutazai.services.chat.domain import (
    MAX_UPSTREAM_MESSAGES,
    CachedReply,
    FinishReason,
    Options,
    Role,
    Turn,
    cache_key,
    parse_conversation_id,
    trim_history,
)
from sutazai.services.chat.errors import ConversationFullError
from sutazai.services.chat.metrics import ChatMetrics
from sutazai.services.chat.store import ChatStore, NewConversation, NewReply
from sutazai.services.chat.upstream import Delta, Done, Generation, InferenceClient

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Ask:
    """A validated request for one turn."""

    user_id: str
    authorization: str
    """The caller's own ``authorization`` header, forwarded to the inference service."""
    message: str
    model: str
    conversation_id: str
    options: Options
    system_prompt: str
    no_cache: bool


@dataclass(frozen=True, slots=True)
class Turnout:
    """A turn ready to answer: where it goes, what the model is sent, its cache key."""

    ask: Ask
    conversation: uuid.UUID | NewConversation
    model: str
    turns: tuple[Turn, ...]
    options: Options
    """The options sent (``max_tokens`` always set)."""
    cache_key: str | None
    """``None`` when the call skips the cache."""
    started: float
    """``time.monotonic()`` when the call arrived."""

    @property
    def conversation_id(self) -> uuid.UUID:
        """The conversation's id (a new one's is chosen before it is stored)."""
        if isinstance(self.conversation, NewConversation):
            return self.conversation.conversation_id
        return self.conversation

    def elapsed_ms(self) -> float:
        """Milliseconds since the call arrived."""
        return (time.monotonic() - self.started) * 1e3


@dataclass(frozen=True, slots=True)
class Answer:
    """A stored reply."""

    conversation_id: uuid.UUID
    message_id: uuid.UUID
    reply: NewReply


class Replies:
    """Prepares, answers and stores turns."""

    def __init__(
        self,
        store: ChatStore,
        cache: ReplyCache,
        inference: InferenceClient,
        settings: ChatSettings,
        metrics: ChatMetrics,
    ) -> None:
        self._store = store
        self._cache = cache
        self._inference = inference
        self._settings = settings
        self._metrics = metrics
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def cache(self) -> ReplyCache:
        """The reply cache (stats and clearing)."""
        return self._cache

    async def prepare(self, ask: Ask) -> Turnout:
        """The conversation, model and trimmed messages of a turn; nothing is stored.

        Raises:
            RpcStatusError: NOT_FOUND (the conversation is not the caller's), or the inference
                service's status when its model list cannot be read.

        """
        started = time.monotonic()
        history: list[Turn] = []
        system: Turn | None = None
        conversation: uuid.UUID | NewConversation
        conversation_model = ""
        if ask.conversation_id:
            conversation_id = parse_conversation_id(ask.conversation_id)
            found = await self._store.conversation(ask.user_id, conversation_id)
            if found is None:
                raise not_found("conversation", ask.conversation_id)
            conversation = conversation_id
            conversation_model = found.model
            stored = await self._store.history(conversation_id, MAX_UPSTREAM_MESSAGES)
            system, history = stored.system, stored.turns
        else:
            conversation = NewConversation(uuid.uuid4(), ask.system_prompt)
            if ask.system_prompt:
                system = Turn(Role.SYSTEM, ask.system_prompt)
        models = await self._inference.models(
            ask.authorization, wanted=ask.model or conversation_model
        )
        model = ask.model or conversation_model or models.default_model
        # An unlisted model is the inference service's to refuse (NOT_FOUND); until then it
        # gets the default window.
        window = models.context_tokens.get(model) or self._settings.default_context_tokens
        options = ask.options
        if options.max_tokens is None:
            options = dataclasses.replace(options, max_tokens=self._settings.default_max_tokens)
        reply_tokens = options.max_tokens or self._settings.default_max_tokens
        trimmed = trim_history(
            system,
            history,
            Turn(Role.USER, ask.message),
            context_tokens=window,
            reply_tokens=min(reply_tokens, window // 2),
        )
        if trimmed.dropped:
            self._metrics.trimmed.inc(trimmed.dropped)
        key = None
        if not ask.no_cache:
            scope = "" if self._settings.cache_shared_between_users else ask.user_id
            key = cache_key(scope, model, trimmed.turns, options)
        return Turnout(ask, conversation, model, trimmed.turns, options, key, started)

    async def cached(self, turnout: Turnout) -> CachedReply | None:
        """The cached reply of this exact request, if any (never for ``no_cache``)."""
        if turnout.cache_key is None:
            return None
        reply = await self._cache.get(turnout.cache_key)
        self._metrics.cache_lookups.labels("hit" if reply else "miss").inc()
        return reply

    def generate(self, turnout: Turnout) -> Generation:
        """Start the model's reply (see :class:`~.upstream.Generation`)."""
        ask = turnout.ask
        return self._inference.generate(
            ask.authorization, turnout.model, turnout.turns, turnout.options
        )

    async def answer(self, turnout: Turnout) -> Answer:
        """The whole reply, from the cache or the model, stored (and cached if new).

        Raises:
            RpcStatusError: the inference service's status; NOT_FOUND if the conversation was
                deleted meanwhile; FAILED_PRECONDITION if it is full.

        """
        hit = await self.cached(turnout)
        if hit is not None:
            return await self.store(turnout, from_cache(hit, turnout.elapsed_ms()))
        parts: list[str] = []
        done: Done | None = None
        first: float | None = None
        async for event in self.generate(turnout).events():
            if isinstance(event, Delta):
                if first is None:
                    first = time.monotonic()
                parts.append(event.text)
            else:
                done = event
        if done is None:  # generate() raises rather than end without done; guard the invariant
            raise unavailable("the reply ended without finishing")
        if first is not None:
            self._metrics.first_token.observe(first - turnout.started)
        answer = await self.store(turnout, from_model(done, "".join(parts), turnout.elapsed_ms()))
        await self.remember(turnout, answer.reply)
        return answer

    async def store(self, turnout: Turnout, reply: NewReply) -> Answer:
        """Store the turn with its reply.

        Raises:
            RpcStatusError: NOT_FOUND if the conversation was deleted meanwhile;
                FAILED_PRECONDITION if it is full.

        """
        try:
            stored = await self._store.record_turn(
                turnout.ask.user_id, turnout.conversation, turnout.ask.message, reply
            )
        except ConversationFullError as exc:
            raise failed_precondition(str(exc)) from exc
        if stored is None:
            raise not_found("conversation", str(turnout.conversation_id))
        self._metrics.replies.labels(
            "cache" if reply.cached else "model", reply.finish_reason
        ).inc()
        self._metrics.reply_seconds.labels("cache" if reply.cached else "model").observe(
            reply.latency_ms / 1e3
        )
        return Answer(stored[0], stored[1], reply)

    async def remember(self, turnout: Turnout, reply: NewReply) -> None:
        """Cache a complete reply the model just gave (not for ``no_cache``)."""
        if turnout.cache_key is None or reply.cached:
            return
        if reply.finish_reason not in (FinishReason.STOP, FinishReason.LENGTH):
            return
        await self._cache.put(
            turnout.cache_key,
            CachedReply(
                text=reply.content,
                model=reply.model,
                finish_reason=reply.finish_reason,
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
            ),
        )

    def store_partial(self, turnout: Turnout, text: str, completion_tokens: int) -> None:
        """Store a cancelled reply's text in the background (the caller is gone).

        Nothing is stored when no text came: the turn never happened. The task is kept until
        it ends, and :meth:`drain` waits for those still running at shutdown.
        """
        if not text:
            return
        reply = NewReply(
            content=text,
            model=turnout.model,
            prompt_tokens=0,
            completion_tokens=completion_tokens,
            latency_ms=turnout.elapsed_ms(),
            cached=False,
            finish_reason=FinishReason.CANCELLED,
        )
        task = asyncio.create_task(self._store_quietly(turnout, reply))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _store_quietly(self, turnout: Turnout, reply: NewReply) -> None:
        try:
            await self.store(turnout, reply)
        except RpcStatusError as exc:
            log.info("chat.partial_not_stored", reason=exc.message)
        except Exception:
            log.exception("chat.partial_store_failed")

    async def drain(self) -> None:
        """Wait for the partial replies still being stored."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def from_cache(hit: CachedReply, latency_ms: float) -> NewReply:
    """The reply to store for a cache hit (the original generation's token counts)."""
    return NewReply(
        content=hit.text,
        model=hit.model,
        prompt_tokens=hit.prompt_tokens,
        completion_tokens=hit.completion_tokens,
        latency_ms=latency_ms,
        cached=True,
        finish_reason=hit.finish_reason,
    )


def from_model(done: Done, text: str, latency_ms: float) -> NewReply:
    """The reply to store for a finished generation."""
    return NewReply(
        content=text,
        model=done.model,
        prompt_tokens=done.prompt_tokens,
        completion_tokens=done.completion_tokens,
        latency_ms=latency_ms,
        cached=False,
        finish_reason=done.finish_reason,
    )
