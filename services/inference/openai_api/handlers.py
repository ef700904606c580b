"""HTTP handlers of ``/openai/v1``: bodies in, OpenAI's JSON or server-sent events out.

Each handler bounds and decodes the body, parses it (:mod:`.domain`), calls the engine as the
request's caller (:mod:`.calls`: the bearer token Envoy verified is verified again there, with
the role and rate limit of the gRPC method the endpoint stands for) and renders OpenAI's
shapes. Every refusal is an :class:`~.errors.ApiError` rendered as OpenAI's error object with
its HTTP status.

A stream answers 200 with ``text/event-stream`` only once the first event of the reply is in:
a call refused before any text (an unknown model, a bad option, a full queue, a backend down)
still gets its real status. A failure after that ends the stream with one ``data:
{"error": {...}}`` event (what OpenAI's clients raise from) and no ``[DONE]``; a finished one
ends with ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Final

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sutazai.runtime import context as rpc_context
from sutazai.services.inference.domain import Delta, Done, GenerationEvent
from sutazai.services.inference.openai_api.calls import EngineCalls
from sutazai.services.inference.openai_api.domain import (
    SSE_KEEPALIVE,
    ChatRequest,
    chunk_body,
    completion_body,
    embeddings_body,
    model_body,
    models_body,
    new_completion_id,
    parse_chat_request,
    parse_embedding_request,
    sse_event,
    usage_chunk_body,
)
from sutazai.services.inference.openai_api.errors import ApiError, timed_out

log = structlog.get_logger(__name__)

API_PREFIX: Final = "/openai/v1"
HEALTH_PATH: Final = "/healthz"
"""Envoy's health check (on the socket only: no edge route leads here)."""


class OpenAIHandlers:
    """The endpoints, over the engine's :class:`~.calls.EngineCalls`."""

    def __init__(
        self,
        calls: EngineCalls,
        *,
        max_body_bytes: int,
        generation_timeout: float,
        keepalive_seconds: float = 15.0,
    ) -> None:
        """Answer with ``calls``.

        Bodies over ``max_body_bytes`` are refused (413); a generation gets
        ``generation_timeout`` seconds in all (504 beyond, or an error event once streaming); a
        stream gets an SSE comment after ``keepalive_seconds`` without an event.
        """
        self._calls = calls
        self._max_body_bytes = max_body_bytes
        self._generation_timeout = generation_timeout
        self._keepalive_seconds = keepalive_seconds
        self.serving = True
        """Whether the health check passes (false while the instance drains)."""

    def stop_serving(self) -> None:
        """Fail the health check from now on (the instance is draining)."""
        self.serving = False

    def routes(self) -> list[Route]:
        """The routes of the API and the health check."""
        return [
            Route(HEALTH_PATH, self.health, methods=["GET"]),
            Route(f"{API_PREFIX}/models", _answering(self.list_models), methods=["GET"]),
            Route(
                f"{API_PREFIX}/models/{{model:path}}",
                _answering(self.get_model),
                methods=["GET"],
            ),
            Route(
                f"{API_PREFIX}/chat/completions",
                _answering(self.chat_completions),
                methods=["POST"],
            ),
            Route(f"{API_PREFIX}/embeddings", _answering(self.embeddings), methods=["POST"]),
        ]

    async def health(self, request: Request) -> Response:
        """200 while serving, 503 while draining."""
        return Response(status_code=200 if self.serving else 503)

    async def list_models(self, request: Request) -> Response:
        """``GET /models``."""
        return JSONResponse(models_body(await self._calls.models(request.headers)))

    async def get_model(self, request: Request) -> Response:
        """``GET /models/{model}``: 404 for a model no backend offers."""
        name = request.path_params["model"]
        for model in await self._calls.models(request.headers):
            if model.name == name:
                return JSONResponse(model_body(model))
        raise ApiError(
            404,
            f"The model '{name[:256]}' does not exist",
            param="model",
            code="model_not_found",
        )

    async def chat_completions(self, request: Request) -> Response:
        """``POST /chat/completions``: one JSON reply, or SSE chunks with ``stream: true``."""
        chat = parse_chat_request(await self._json(request))
        completion_id, created = new_completion_id(), int(time.time())
        events = self._calls.generate(request.headers, chat)
        if not chat.stream:
            try:
                async with asyncio.timeout(self._generation_timeout):
                    body = await _whole_reply(events, chat, completion_id, created)
            except TimeoutError:
                raise timed_out() from None
            finally:
                await events.aclose()
            return JSONResponse(body)
        deadline = asyncio.get_running_loop().time() + self._generation_timeout
        # Wait for the first event, so a refusal still gets its own HTTP status.
        try:
            async with asyncio.timeout_at(deadline):
                first = await _next_or_none(events)
        except TimeoutError:
            first = timed_out()
        if isinstance(first, ApiError):
            await events.aclose()
            raise first
        # From here the response owns the generation: a generator it never got to start is
        # closed by the event loop once it is dropped, like any other.
        return StreamingResponse(
            self._sse(first, events, deadline, chat, completion_id, created),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def embeddings(self, request: Request) -> Response:
        """``POST /embeddings``."""
        embed = parse_embedding_request(await self._json(request))
        result = await self._calls.embed(request.headers, embed)
        return JSONResponse(
            embeddings_body(embed, result.model, result.vectors, result.prompt_tokens)
        )

    async def _json(self, request: Request) -> object:
        """The decoded body, at most ``max_body_bytes`` of it."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            raise _too_large(self._max_body_bytes)
        body = bytearray()
        try:
            async for piece in request.stream():
                body += piece
                if len(body) > self._max_body_bytes:
                    raise _too_large(self._max_body_bytes)
        except ClientDisconnect:
            raise ApiError(400, "the request body was cut short") from None
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}"[:300]) from exc

    async def _sse(
        self,
        first: Delta | Done | None,
        events: AsyncGenerator[GenerationEvent, None],
        deadline: float,
        chat: ChatRequest,
        completion_id: str,
        created: int,
    ) -> AsyncIterator[bytes]:
        model = chat.model

        def chunk(delta: dict[str, object], finish_reason: str | None = None) -> bytes:
            return sse_event(
                chunk_body(
                    completion_id=completion_id,
                    created=created,
                    model=model,
                    delta=delta,
                    finish_reason=finish_reason,
                )
            )

        yield chunk({"role": "assistant", "content": ""})
        # One reader task per stream hands the events over a queue, and a ticker adds a
        # keep-alive after a quiet spell: per token that is a queue hand-off, where a wait
        # with a timeout per token made a task and a timer for each (docs/benchmarks.md).
        queue: asyncio.Queue[_Relayed] = asyncio.Queue(RELAY_BUFFER)
        quiet = _Quiet(self._keepalive_seconds)
        helpers = [
            asyncio.ensure_future(_relay(events, queue, deadline)),
            asyncio.ensure_future(quiet.tick(queue)),
        ]
        event: _Relayed = first
        try:
            while True:
                if event is _KEEPALIVE:
                    yield SSE_KEEPALIVE
                elif isinstance(event, ApiError):
                    log.info("openai.stream_failed", status=event.status, error=event.message)
                    yield sse_event(event.body())
                    return
                elif event is None:
                    yield sse_event(
                        ApiError(
                            503, "the reply ended without finishing", kind="server_error"
                        ).body()
                    )
                    return
                elif isinstance(event, Done):
                    model = event.model or model
                    yield chunk({}, event.reason.value)
                    if chat.include_usage:
                        yield sse_event(
                            usage_chunk_body(
                                completion_id=completion_id,
                                created=created,
                                model=model,
                                prompt_tokens=event.prompt_tokens,
                                completion_tokens=event.completion_tokens,
                            )
                        )
                    yield sse_event("[DONE]")
                    return
                elif isinstance(event, Delta) and event.text:
                    yield chunk({"content": event.text})
                quiet.sent()
                event = await queue.get()
        finally:
            # The client went away (or the stream ended): stop generating at once.
            for helper in helpers:
                helper.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*helpers, return_exceptions=True)
            with contextlib.suppress(BaseException):
                await events.aclose()


RELAY_BUFFER = 64
"""Events read ahead of a slow client before the reader waits (a little read-ahead keeps the
upstream flowing; more would only hold tokens in memory)."""


class _KeepAlive:
    """The marker the ticker queues when a stream has been quiet for a while."""


_KEEPALIVE = _KeepAlive()
_Relayed = Delta | Done | ApiError | None | _KeepAlive


async def _relay(
    events: AsyncGenerator[GenerationEvent, None], queue: asyncio.Queue[_Relayed], deadline: float
) -> None:
    """Queue every event of ``events`` up to and including the last (``None`` at its end).

    A generation still going at ``deadline`` (the loop's clock) ends with a 504 error event.
    """
    try:
        async with asyncio.timeout_at(deadline):
            while True:
                event = await _next_or_none(events)
                await queue.put(event)
                if not isinstance(event, Delta):
                    return
    except TimeoutError:
        await queue.put(timed_out())
    except Exception:
        # A failure that is not the engine's (those are ApiErrors): the stream must still end.
        log.exception("openai.relay_failed")
        await queue.put(ApiError(500, "internal error", kind="server_error"))


class _Quiet:
    """When a stream last sent something; queues a keep-alive after ``seconds`` of quiet."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()

    def sent(self) -> None:
        """Something went out just now."""
        self._last = self._loop.time()

    async def tick(self, queue: asyncio.Queue[_Relayed]) -> None:
        """Queue a keep-alive whenever nothing went out for ``seconds``; until cancelled."""
        while True:
            await asyncio.sleep(max(0.0, self._last + self._seconds - self._loop.time()))
            if self._loop.time() - self._last >= self._seconds:
                await queue.put(_KEEPALIVE)
                self._last = self._loop.time()


def _answering(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` with the request id bound and its :class:`ApiError` rendered."""

    async def endpoint(request: Request) -> Response:
        request_id = request.headers.get(rpc_context.REQUEST_ID_HEADER, "")[:128] or None
        token = rpc_context.request_id.set(request_id)
        try:
            with structlog.contextvars.bound_contextvars(request_id=request_id):
                try:
                    return await handler(request)
                except ApiError as exc:
                    return error_response(exc)
        finally:
            rpc_context.request_id.reset(token)

    return endpoint


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such path, wrong method) in OpenAI's shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return error_response(ApiError(405, f"{request.method} is not allowed here"))
    if status == 404:
        return error_response(
            ApiError(404, f"no such endpoint: {request.url.path[:256]}", code="not_found")
        )
    return error_response(ApiError(status, str(exc)[:256], kind="server_error"))


def error_response(error: ApiError) -> JSONResponse:
    """``error`` in OpenAI's shape with its status (and ``Retry-After`` when known)."""
    headers = {}
    if error.retry_after_seconds is not None:
        headers["retry-after"] = str(max(1, math.ceil(error.retry_after_seconds)))
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def _whole_reply(
    events: AsyncGenerator[GenerationEvent, None],
    chat: ChatRequest,
    completion_id: str,
    created: int,
) -> dict[str, object]:
    parts: list[str] = []
    async for event in events:
        if isinstance(event, Delta):
            parts.append(event.text)
            continue
        return completion_body(
            completion_id=completion_id,
            created=created,
            model=event.model or chat.model,
            text="".join(parts),
            finish_reason=event.reason.value,
            prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens,
        )
    raise ApiError(503, "the reply ended without finishing", kind="server_error")


async def _next_or_none(
    events: AsyncGenerator[GenerationEvent, None],
) -> Delta | Done | ApiError | None:
    """The next event; a failure as its :class:`ApiError`; ``None`` at the end."""
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None
    except ApiError as exc:
        return exc


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than {limit} bytes", code="request_too_large")
