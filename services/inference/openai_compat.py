"""The OpenAI-compatible backend: chat completions (JSON, or SSE streaming), models, embeddings.

The paths ``/chat/completions``, ``/models`` and ``/embeddings`` are under the configured base
URL (which includes ``/v1``). Works with llama.cpp's server (``python -m llama_cpp.server``
in the tests), vLLM and LM Studio.
OpenAI's API has no ``top_k`` or ``repeat_penalty``: a server that honours them says so in the
settings (``extra_options``); otherwise a request setting them is refused, never silently sent
to a server that would ignore them. Streamed replies carry no usage on every server: the
completion count is then the number of content chunks (one per token on llama.cpp's server)
and the prompt count 0 (unknown).
"""

from __future__ import annotations

import stat
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import httpx

from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.settings import OpenAIBackendSettings
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
)
from sutazai.services.inference.errors import BackendUnavailableError, NotSupportedError
from sutazai.services.inference.remote import (
    check_status,
    http_client,
    integer,
    json_object,
    lines,
    public_url,
    transport_errors,
)

NAME = "openai"
SSE_DATA = "data:"
SSE_DONE = "[DONE]"


class OpenAICompatibleBackend:
    """Models served by an OpenAI-compatible server."""

    def __init__(
        self,
        settings: OpenAIBackendSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        headers = {}
        if settings.api_key_file is not None:
            headers["authorization"] = f"Bearer {_api_key(settings.api_key_file)}"
        self._client = http_client(
            settings, headers=headers, transport=transport, keep_userinfo=not headers
        )
        self._url = public_url(settings.url or "")

    @property
    def name(self) -> str:
        """``openai``."""
        return NAME

    @property
    def kind(self) -> BackendKind:
        """OpenAI-compatible."""
        return BackendKind.OPENAI_COMPATIBLE

    @property
    def url(self) -> str:
        """The base URL without credentials."""
        return self._url

    def known_models(self) -> Sequence[str]:
        """The models configured for this backend."""
        return self._settings.models

    def unsupported(self, model: str, options: Sampling) -> dict[str, str]:
        """``top_k`` and ``repeat_penalty`` unless the server is configured to honour them."""
        violations = {}
        extra = set(self._settings.extra_options)
        if options.top_k is not None and "top_k" not in extra:
            violations["options.top_k"] = (
                "this OpenAI-compatible backend does not honour top_k "
                "(SUTAZAI_INFERENCE__OPENAI__EXTRA_OPTIONS)"
            )
        if options.repeat_penalty is not None and "repeat_penalty" not in extra:
            violations["options.repeat_penalty"] = (
                "this OpenAI-compatible backend does not honour repeat_penalty "
                "(SUTAZAI_INFERENCE__OPENAI__EXTRA_OPTIONS)"
            )
        return violations

    async def list_models(self) -> list[ModelInfo]:
        """``GET /models``."""
        with transport_errors(NAME):
            response = await self._client.get("models")
            await check_status(NAME, "", response)
        data = json_object(NAME, response.content).get("data")
        if not isinstance(data, list):
            raise BackendUnavailableError(NAME, "the model list has no 'data' array")
        return [
            ModelInfo(
                name=entry["id"],
                backend=NAME,
                kind=BackendKind.OPENAI_COMPATIBLE,
                loaded=True,
                embeddings=True,
            )
            for entry in data
            if isinstance(entry, dict) and isinstance(entry.get("id"), str)
        ]

    async def generate(
        self, model: str, messages: Sequence[ChatMessage], options: Sampling, *, stream: bool
    ) -> AsyncGenerator[BackendEvent, None]:
        """``POST /chat/completions``: SSE chunks when streaming, one JSON object otherwise."""
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role.value, "content": m.content} for m in messages],
            "stream": stream,
            **_options(options),
        }
        with transport_errors(NAME):
            request = self._client.build_request("POST", "chat/completions", json=body)
            response = await self._client.send(request, stream=True)
            try:
                await check_status(NAME, model, response)
                if stream:
                    async for event in _streamed(response):
                        yield event
                else:
                    await response.aread()
                    for event in _whole(json_object(NAME, response.content)):
                        yield event
            finally:
                # Closing the connection is how the server learns to stop generating.
                await response.aclose()

    async def embed(self, model: str, inputs: Sequence[str]) -> Embedded:
        """``POST /embeddings`` with a list of inputs."""
        with transport_errors(NAME):
            response = await self._client.post(
                "embeddings", json={"model": model, "input": list(inputs)}
            )
            await check_status(NAME, model, response)
        body = json_object(NAME, response.content)
        data = body.get("data")
        if not isinstance(data, list) or len(data) != len(inputs):
            raise BackendUnavailableError(NAME, "the reply does not hold one embedding per input")
        ordered = sorted(
            (e for e in data if isinstance(e, dict)), key=lambda e: integer(e.get("index"))
        )
        vectors = [_vector(entry.get("embedding")) for entry in ordered]
        if len(vectors) != len(inputs):
            raise BackendUnavailableError(NAME, "the reply does not hold one embedding per input")
        usage = body.get("usage")
        prompt_tokens = integer(usage.get("prompt_tokens")) if isinstance(usage, dict) else 0
        return Embedded(vectors, prompt_tokens)

    async def load(self, model: str) -> ModelInfo:
        """A listed model of a remote server is loaded as far as the API can tell."""
        return ModelInfo(model, NAME, BackendKind.OPENAI_COMPATIBLE, loaded=True, embeddings=True)

    async def unload(self, model: str) -> ModelInfo:
        """OpenAI's API has no way to unload a model."""
        raise NotSupportedError(
            f"the OpenAI-compatible backend cannot unload {model!r}: the API has no such call"
        )

    async def close(self) -> None:
        """Close the connections."""
        await self._client.aclose()


def _api_key(path: Path) -> str:
    """The key in ``path``, which only its owner may read (it is a credential).

    Raises:
        ConfigurationError: the file is unreadable, readable by others, or empty.
    """
    setting = "SUTAZAI_INFERENCE__OPENAI__API_KEY_FILE"
    try:
        mode = path.stat().st_mode
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"{setting} {path} is not readable: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"{setting} {path} is readable by other users (mode {stat.S_IMODE(mode):o}): "
            "chmod 600 it"
        )
    if not key:
        raise ConfigurationError(f"{setting} {path} holds no key")
    return key


def _options(options: Sampling) -> dict[str, Any]:
    """OpenAI's request fields for the options set (``unsupported`` refused the others)."""
    mapped: dict[str, Any] = {}
    if options.temperature is not None:
        mapped["temperature"] = options.temperature
    if options.top_p is not None:
        mapped["top_p"] = options.top_p
    if options.max_tokens is not None:
        mapped["max_tokens"] = options.max_tokens
    if options.stop:
        mapped["stop"] = list(options.stop)
    if options.seed is not None:
        mapped["seed"] = options.seed
    if options.top_k is not None:
        mapped["top_k"] = options.top_k
    if options.repeat_penalty is not None:
        mapped["repeat_penalty"] = options.repeat_penalty
    return mapped


def _finish_reason(value: object) -> FinishReason:
    return FinishReason.LENGTH if value == "length" else FinishReason.STOP


def _whole(body: dict[str, Any]) -> list[BackendEvent]:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BackendUnavailableError(NAME, "the reply has no choices")
    choice = choices[0]
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise BackendUnavailableError(NAME, "the reply has no message content")
    usage = body.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return [
        TextChunk(content),
        Finished(
            reason=_finish_reason(choice.get("finish_reason")),
            prompt_tokens=integer(usage.get("prompt_tokens")),
            completion_tokens=integer(usage.get("completion_tokens")),
        ),
    ]


async def _streamed(response: httpx.Response) -> AsyncGenerator[BackendEvent, None]:
    """Server-sent events: ``data: {chunk}`` lines, then ``data: [DONE]``."""
    reason: FinishReason | None = None
    chunks = 0
    usage: dict[str, Any] = {}
    async for line in lines(NAME, response):
        if not line.startswith(SSE_DATA):
            continue  # comments (": ping") and other SSE fields
        data = line[len(SSE_DATA) :].strip()
        if data == SSE_DONE:
            break
        chunk = json_object(NAME, data)
        if "error" in chunk:
            raise BackendUnavailableError(NAME, f"error while generating: {chunk['error']!s:.300}")
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            continue  # the usage-only chunk of stream_options.include_usage
        choice = choices[0] if isinstance(choices[0], dict) else {}
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str) and content:
            chunks += 1
            yield TextChunk(content)
        if choice.get("finish_reason") is not None:
            reason = _finish_reason(choice["finish_reason"])
    else:
        raise BackendUnavailableError(NAME, "the stream ended before [DONE]")
    if reason is None:
        raise BackendUnavailableError(NAME, "the stream ended without a finish reason")
    yield Finished(
        reason=reason,
        prompt_tokens=integer(usage.get("prompt_tokens")),
        completion_tokens=integer(usage.get("completion_tokens")) or chunks,
    )


def _vector(value: object) -> list[float]:
    if not isinstance(value, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in value
    ):
        raise BackendUnavailableError(NAME, "an embedding is not a list of numbers")
    return [float(x) for x in value]
