"""OpenAI's request and response shapes, mapped onto the mesh's inference model: no I/O.

A request is read field by field: every field OpenAI defines is either mapped onto the inference
request (model, messages, sampling options), accepted because it changes nothing here (``n: 1``,
zero penalties, ``user``), or refused with 400 naming it. Fields OpenAI does not define are
refused too (as OpenAI itself does), so no option is ever silently ignored. Two common
extensions of OpenAI-compatible servers (llama.cpp server, vLLM) are honoured because the mesh
supports them: ``top_k`` and ``repeat_penalty``.

Ranges the inference domain checks (temperature, top_p, max tokens, stop sequences, sizes) are
checked there, as for a gRPC call; its field violations are reported under the OpenAI
parameter that set the field (:func:`param_of`).
"""

from __future__ import annotations

import base64
import json
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sutazai.services.inference.domain import ChatMessage, ModelInfo, Role, Sampling
from sutazai.services.inference.openai_api.errors import ApiError

MAX_TOKEN_PARAMS = ("max_completion_tokens", "max_tokens")
"""OpenAI's two names for the reply's token limit (``max_tokens`` is the deprecated one)."""


_ROLES = {
    "system": Role.SYSTEM,
    # OpenAI's newer name for system instructions.
    "developer": Role.SYSTEM,
    "user": Role.USER,
    "assistant": Role.ASSISTANT,
}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A ``POST /chat/completions`` body, validated."""

    model: str
    messages: tuple[ChatMessage, ...]
    sampling: Sampling = field(default_factory=Sampling)
    stream: bool = False
    include_usage: bool = False
    """``stream_options.include_usage``: a last chunk with the token counts."""
    max_tokens_param: str = "max_completion_tokens"
    """Which of OpenAI's names the caller used for the token limit (errors name that one)."""


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """A ``POST /embeddings`` body, validated."""

    model: str
    inputs: tuple[str, ...]
    base64: bool = False
    """``encoding_format: base64``: each vector as base64 of little-endian float32s (what the
    official Python client asks for by default)."""


# Fields read by the chat parser (others are refused as unknown).
_CHAT_MAPPED = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "repeat_penalty",
        "stream",
        "stream_options",
    }
)
# Fields accepted only with the value that asks for nothing beyond a plain completion.
_CHAT_NEUTRAL: Mapping[str, tuple[object, ...]] = {
    "n": (1,),
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "logprobs": (False,),
    "logit_bias": ({},),
    "tools": ([],),
    "tool_choice": ("none",),
    "functions": ([],),
    "function_call": ("none",),
    "parallel_tool_calls": (),
    "response_format": ({"type": "text"},),
    "store": (False,),
    "metadata": ({},),
    "modalities": (["text"],),
    "service_tier": ("auto", "default"),
    "top_logprobs": (),
    "audio": (),
    "prediction": (),
    "reasoning_effort": (),
    "web_search_options": (),
    "prompt_cache_key": (),
    "safety_identifier": (),
    "verbosity": (),
}
# Fields with no effect on the answer: an end-user id for the provider's abuse monitoring.
_CHAT_IGNORED = frozenset({"user"})

_MESSAGE_FIELDS = frozenset({"role", "content"})


def parse_chat_request(body: object) -> ChatRequest:
    """The chat completion request in ``body`` (decoded JSON).

    Raises:
        ApiError: 400 naming the first field that is missing, malformed or not supported.

    """
    fields = _object(body)
    for name, value in fields.items():
        if value is None or name in _CHAT_MAPPED or name in _CHAT_IGNORED:
            continue
        if name not in _CHAT_NEUTRAL:
            raise ApiError(
                400,
                f"Unrecognized request argument supplied: {name}",
                param=name,
                code="unknown_parameter",
            )
        if not _neutral(value, _CHAT_NEUTRAL[name]):
            raise ApiError(
                400,
                f"{name}={json.dumps(value)[:64]} is not supported by this server",
                param=name,
                code="unsupported_parameter",
            )
    model = _model(fields)
    messages = _messages(fields.get("messages"))
    max_tokens_param, max_tokens = _max_tokens(fields)
    sampling = Sampling(
        temperature=_number(fields, "temperature"),
        top_p=_number(fields, "top_p"),
        top_k=_integer(fields, "top_k"),
        max_tokens=max_tokens,
        stop=_stop(fields.get("stop")),
        seed=_integer(fields, "seed"),
        repeat_penalty=_number(fields, "repeat_penalty"),
    )
    stream = _boolean(fields, "stream")
    include_usage = _stream_options(fields.get("stream_options"), stream)
    return ChatRequest(
        model=model,
        messages=messages,
        sampling=sampling,
        stream=stream,
        include_usage=include_usage,
        max_tokens_param=max_tokens_param,
    )


def parse_embedding_request(body: object) -> EmbeddingRequest:
    """The embeddings request in ``body`` (decoded JSON).

    Raises:
        ApiError: 400 naming the first field that is missing, malformed or not supported.

    """
    fields = _object(body)
    for name, value in fields.items():
        if value is None or name in {"model", "input", "encoding_format", "user"}:
            continue
        if name == "dimensions":
            raise ApiError(
                400,
                "dimensions is not supported: models embed at their own size",
                param=name,
                code="unsupported_parameter",
            )
        raise ApiError(
            400,
            f"Unrecognized request argument supplied: {name}",
            param=name,
            code="unknown_parameter",
        )
    encoding = fields.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise ApiError(400, "encoding_format must be 'float' or 'base64'", param="encoding_format")
    raw = fields.get("input")
    if isinstance(raw, str):
        inputs: tuple[str, ...] = (raw,)
    elif isinstance(raw, list) and raw and all(isinstance(i, str) for i in raw):
        inputs = tuple(raw)
    elif isinstance(raw, list) and raw:
        # Token arrays need the model's tokenizer on the caller's side; the mesh takes text.
        raise ApiError(
            400,
            "input must be a string or a list of strings (token arrays are not supported)",
            param="input",
            code="unsupported_parameter",
        )
    else:
        raise ApiError(400, "input must be a non-empty string or list of strings", param="input")
    return EmbeddingRequest(model=_model(fields), inputs=inputs, base64=encoding == "base64")


def param_of(inference_field: str, request: ChatRequest | None = None) -> str:
    """The OpenAI parameter behind a field the inference domain named in a violation.

    ``options.temperature`` → ``temperature``; ``options.max_tokens`` → the limit's name the
    caller used; ``inputs[2]`` → ``input``; message fields keep their path.
    """
    name = inference_field.removeprefix("options.")
    if name == "max_tokens" and request is not None:
        return request.max_tokens_param
    if name.startswith("inputs"):
        return "input"
    return name


def new_completion_id() -> str:
    """A fresh completion id, ``chatcmpl-`` and 24 hex digits (OpenAI's form)."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def completion_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, object]:
    """A ``chat.completion`` object."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_body(prompt_tokens, completion_tokens),
        "system_fingerprint": None,
    }


def chunk_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    delta: Mapping[str, object],
    finish_reason: str | None = None,
) -> dict[str, object]:
    """A ``chat.completion.chunk`` object with one choice."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish_reason}
        ],
        "system_fingerprint": None,
    }


def usage_chunk_body(
    *, completion_id: str, created: int, model: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, object]:
    """The last chunk of a stream with ``include_usage``: no choices, the token counts."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_body(prompt_tokens, completion_tokens),
        "system_fingerprint": None,
    }


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's ``usage`` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def model_body(model: ModelInfo) -> dict[str, object]:
    """A ``model`` object; ``owned_by`` is the backend that runs it, ``created`` unknown (0)."""
    return {"id": model.name, "object": "model", "created": 0, "owned_by": model.backend}


def models_body(models: Sequence[ModelInfo]) -> dict[str, object]:
    """The ``list`` of models."""
    return {"object": "list", "data": [model_body(m) for m in models]}


def embeddings_body(
    request: EmbeddingRequest, model: str, vectors: Sequence[Sequence[float]], prompt_tokens: int
) -> dict[str, object]:
    """The ``list`` of embeddings, as floats or base64 as the request asked."""
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": _base64_floats(vector) if request.base64 else list(vector),
            }
            for index, vector in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def sse_event(payload: Mapping[str, object] | str) -> bytes:
    """One server-sent event: ``data: <json>`` (or a literal such as ``[DONE]``)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


SSE_KEEPALIVE = b": keep-alive\n\n"
"""An SSE comment: keeps a quiet stream (a long prompt being read) under the idle limits."""


def _base64_floats(vector: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _object(body: object) -> dict[str, object]:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _model(fields: Mapping[str, object]) -> str:
    model = fields.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required (a model id from GET /models)", param="model")
    return model


def _messages(raw: object) -> tuple[ChatMessage, ...]:
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    return tuple(_message(index, item) for index, item in enumerate(raw))


def _message(index: int, raw: object) -> ChatMessage:
    where = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise ApiError(400, f"{where} must be an object", param=where)
    role = raw.get("role")
    if role not in _ROLES:
        raise ApiError(
            400,
            f"{where}.role must be one of system, developer, user, assistant "
            "(tool and function messages are not supported)",
            param=f"{where}.role",
        )
    for name, value in raw.items():
        if name not in _MESSAGE_FIELDS and value is not None:
            raise ApiError(
                400,
                f"{where}.{name} is not supported by this server",
                param=f"{where}.{name}",
                code="unsupported_parameter",
            )
    return ChatMessage(_ROLES[str(role)], _content(where, raw.get("content")))


def _content(where: str, raw: object) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and raw:
        parts: list[str] = []
        for index, part in enumerate(raw):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise ApiError(
                    400,
                    f"{where}.content[{index}]: only text parts are supported",
                    param=f"{where}.content[{index}]",
                    code="unsupported_parameter",
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise ApiError(
                    400,
                    f"{where}.content[{index}].text must be a string",
                    param=f"{where}.content[{index}].text",
                )
            parts.append(text)
        return "".join(parts)
    raise ApiError(
        400, f"{where}.content must be a string or a list of text parts", param=f"{where}.content"
    )


def _max_tokens(fields: Mapping[str, object]) -> tuple[str, int | None]:
    given = [(name, _integer(fields, name)) for name in MAX_TOKEN_PARAMS]
    present = [(name, value) for name, value in given if value is not None]
    if len(present) == 2 and present[0][1] != present[1][1]:
        raise ApiError(
            400,
            "max_tokens and max_completion_tokens disagree; send only max_completion_tokens",
            param="max_tokens",
        )
    if present:
        return present[0]
    return MAX_TOKEN_PARAMS[0], None


def _stop(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return tuple(raw)
    raise ApiError(400, "stop must be a string or a list of strings", param="stop")


def _stream_options(raw: object, stream: bool) -> bool:
    if raw is None:
        return False
    if not stream:
        raise ApiError(
            400, "stream_options is only allowed with stream: true", param="stream_options"
        )
    if not isinstance(raw, dict):
        raise ApiError(400, "stream_options must be an object", param="stream_options")
    for name in raw:
        if name != "include_usage":
            raise ApiError(
                400,
                f"stream_options.{name} is not supported by this server",
                param=f"stream_options.{name}",
                code="unsupported_parameter",
            )
    include = raw.get("include_usage", False)
    if not isinstance(include, bool):
        raise ApiError(
            400, "stream_options.include_usage must be a boolean", param="stream_options"
        )
    return include


def _number(fields: Mapping[str, object], name: str) -> float | None:
    value = fields.get(name)
    if value is None:
        return None
    # bool is an int in Python; JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"{name} must be a number", param=name)
    return float(value)


def _integer(fields: Mapping[str, object], name: str) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{name} must be an integer", param=name)
    return value


def _boolean(fields: Mapping[str, object], name: str) -> bool:
    value = fields.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be a boolean", param=name)
    return value


def _neutral(value: object, neutral: tuple[object, ...]) -> bool:
    # `1 == True` in Python: compare types too, so `n: true` is not taken for `n: 1`.
    return any(type(value) is type(n) and value == n for n in neutral) or (
        isinstance(value, float) and any(type(n) is int and value == n for n in neutral)
    )
