"""The Ollama backend: ``/api/chat`` (NDJSON streaming), ``/api/tags``, ``/api/embed``.

Follows Ollama's API documentation (github.com/ollama/ollama, docs/api.md). Every sampling
option of the mesh has an Ollama equivalent (``num_predict`` for max tokens), so all are
forwarded as set; none is dropped (the original proxy ignored model, top_p, top_k and seed,
ORIGINAL_SYSTEM §3.4). Loading is Ollama's documented "empty messages" call, unloading the same
with ``keep_alive: 0``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

import httpx

from sutazai.runtime.settings import OllamaBackendSettings
from sutazai.services.inference.domain import (
    BackendEvent,
    BackendKind,
    ChatMessage,
    Embedded,
    Finished,
    FinishReason,
    ModelInfo,
    Sampling,
    TextChunk,
    uint32_seed_violation,
)
from sutazai.services.inference.errors import BackendUnavailableError
from sutazai.services.inference.remote import (
    check_status,
    http_client,
    integer,
    json_object,
    lines,
    public_url,
    transport_errors,
)

NAME = "ollama"


class OllamaBackend:
    """Models served by an Ollama server."""

    def __init__(
        self,
        settings: OllamaBackendSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._client = http_client(settings, transport=transport)
        self._url = public_url(settings.url or "")

    @property
    def name(self) -> str:
        """``ollama``."""
        return NAME

    @property
    def kind(self) -> BackendKind:
        """Ollama."""
        return BackendKind.OLLAMA

    @property
    def url(self) -> str:
        """The server's URL without credentials."""
        return self._url

    def known_models(self) -> Sequence[str]:
        """The models configured for this backend."""
        return self._settings.models

    def unsupported(self, model: str, options: Sampling) -> dict[str, str]:
        """Ollama honours every option; its llama.cpp runner takes 32-bit seeds."""
        return uint32_seed_violation(options, NAME)

    async def list_models(self) -> list[ModelInfo]:
        """``GET /api/tags``."""
        with transport_errors(NAME):
            response = await self._client.get("api/tags")
            await check_status(NAME, "", response)
        body = json_object(NAME, response.content)
        models = body.get("models")
        if not isinstance(models, list):
            raise BackendUnavailableError(NAME, "the model list has no 'models' array")
        found = []
        for entry in models:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                found.append(
                    ModelInfo(
                        name=entry["name"],
                        backend=NAME,
                        kind=BackendKind.OLLAMA,
                        loaded=True,
                        size_bytes=integer(entry.get("size")),
                        embeddings=True,
                    )
                )
        return found

    async def generate(
        self, model: str, messages: Sequence[ChatMessage], options: Sampling, *, stream: bool
    ) -> AsyncGenerator[BackendEvent, None]:
        """``POST /api/chat``: one NDJSON object per token, the last with ``done: true``."""
        body = {
            "model": model,
            "messages": [{"role": m.role.value, "content": m.content} for m in messages],
            "stream": stream,
            "options": _options(options),
        }
        with transport_errors(NAME):
            request = self._client.build_request("POST", "api/chat", json=body)
            response = await self._client.send(request, stream=True)
            try:
                await check_status(NAME, model, response)
                if not stream:
                    await response.aread()
                    for event in _chat_events(json_object(NAME, response.content)):
                        yield event
                        if isinstance(event, Finished):
                            return
                    raise BackendUnavailableError(NAME, "the reply is not 'done'")
                async for line in lines(NAME, response):
                    for event in _chat_events(json_object(NAME, line)):
                        yield event
                        if isinstance(event, Finished):
                            return
            finally:
                # Closing the connection is how Ollama learns to stop generating.
                await response.aclose()
        raise BackendUnavailableError(NAME, "the reply ended before 'done'")

    async def embed(self, model: str, inputs: Sequence[str]) -> Embedded:
        """``POST /api/embed`` with a list of inputs."""
        with transport_errors(NAME):
            response = await self._client.post(
                "api/embed", json={"model": model, "input": list(inputs)}
            )
            await check_status(NAME, model, response)
        body = json_object(NAME, response.content)
        vectors = _vectors(body.get("embeddings"), len(inputs))
        return Embedded(vectors, integer(body.get("prompt_eval_count")))

    async def load(self, model: str) -> ModelInfo:
        """``POST /api/chat`` with no messages: Ollama loads the model into memory."""
        await self._empty_chat(model, keep_alive=None)
        return ModelInfo(model, NAME, BackendKind.OLLAMA, loaded=True, embeddings=True)

    async def unload(self, model: str) -> ModelInfo:
        """``POST /api/chat`` with no messages and ``keep_alive: 0``: Ollama unloads it."""
        await self._empty_chat(model, keep_alive=0)
        return ModelInfo(model, NAME, BackendKind.OLLAMA, loaded=False, embeddings=True)

    async def _empty_chat(self, model: str, keep_alive: int | None) -> None:
        body: dict[str, Any] = {"model": model, "messages": [], "stream": False}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        with transport_errors(NAME):
            response = await self._client.post("api/chat", json=body)
            await check_status(NAME, model, response)
        reply = json_object(NAME, response.content)
        if reply.get("done") is not True:
            raise BackendUnavailableError(NAME, "the load/unload reply is not done")

    async def close(self) -> None:
        """Close the connections."""
        await self._client.aclose()


def _options(options: Sampling) -> dict[str, Any]:
    """The mesh's options under Ollama's names; only those set (the rest: model defaults)."""
    mapped: dict[str, Any] = {}
    if options.temperature is not None:
        mapped["temperature"] = options.temperature
    if options.top_p is not None:
        mapped["top_p"] = options.top_p
    if options.top_k is not None:
        mapped["top_k"] = options.top_k
    if options.max_tokens is not None:
        mapped["num_predict"] = options.max_tokens
    if options.stop:
        mapped["stop"] = list(options.stop)
    if options.seed is not None:
        mapped["seed"] = options.seed
    if options.repeat_penalty is not None:
        mapped["repeat_penalty"] = options.repeat_penalty
    return mapped


def _chat_events(body: dict[str, Any]) -> list[BackendEvent]:
    """One ``/api/chat`` object as events; an ``error`` object is the backend's failure.

    A streamed chunk carries text; the last object (``done: true``) carries the counts, and
    when not streaming the whole text as well.
    """
    error = body.get("error")
    if error is not None:
        raise BackendUnavailableError(NAME, f"error while generating: {str(error)[:300]}")
    message = body.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    events: list[BackendEvent] = []
    if isinstance(content, str) and content:
        events.append(TextChunk(content))
    if body.get("done") is True:
        reason = FinishReason.LENGTH if body.get("done_reason") == "length" else FinishReason.STOP
        events.append(
            Finished(
                reason=reason,
                prompt_tokens=integer(body.get("prompt_eval_count")),
                completion_tokens=integer(body.get("eval_count")),
            )
        )
    elif not isinstance(content, str):
        raise BackendUnavailableError(NAME, "a chat chunk has no message content")
    return events


def _vectors(value: object, expected: int) -> list[list[float]]:
    if not isinstance(value, list) or len(value) != expected:
        raise BackendUnavailableError(NAME, "the reply does not hold one embedding per input")
    vectors = []
    for vector in value:
        if not isinstance(vector, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in vector
        ):
            raise BackendUnavailableError(NAME, "an embedding is not a list of numbers")
        vectors.append([float(x) for x in vector])
    return vectors
