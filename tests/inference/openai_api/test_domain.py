"""OpenAI request parsing and response shapes (no server)."""

from __future__ import annotations

import base64
import struct

import pytest

from sutazai.services.inference.domain import Role
from sutazai.services.inference.openai_api.domain import (
    embeddings_body,
    param_of,
    parse_chat_request,
    parse_embedding_request,
    sse_event,
)
from sutazai.services.inference.openai_api.errors import ApiError

HELLO = [{"role": "user", "content": "hi"}]


def refusal(body: object, parse=parse_chat_request) -> ApiError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as raised:
        parse(body)
    return raised.value


def test_every_mapped_option_reaches_the_request() -> None:
    chat = parse_chat_request(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
            ],
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "max_tokens": 12,
            "stop": "END",
            "seed": 3,
            "repeat_penalty": 1.1,
            "n": 1,
            "frequency_penalty": 0,
            "presence_penalty": 0.0,
            "user": "someone",
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )

    assert chat.messages[0].role is Role.SYSTEM
    assert chat.messages[1].content == "ab"
    s = chat.sampling
    assert (s.temperature, s.top_p, s.top_k, s.max_tokens, s.stop, s.seed, s.repeat_penalty) == (
        0.5,
        0.9,
        40,
        12,
        ("END",),
        3,
        1.1,
    )
    assert chat.stream
    assert chat.include_usage
    assert chat.max_tokens_param == "max_tokens"


def test_null_fields_are_absent() -> None:
    chat = parse_chat_request({"model": "m", "messages": HELLO, "temperature": None, "n": None})
    assert chat.sampling.temperature is None


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"n": True}, "n"),
        ({"frequency_penalty": 0.1}, "frequency_penalty"),
        ({"presence_penalty": -1}, "presence_penalty"),
        ({"logprobs": True}, "logprobs"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"made_up": 1}, "made_up"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"seed": 1.5}, "seed"),
        ({"stop": [1]}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"max_tokens": 5, "max_completion_tokens": 6}, "max_tokens"),
    ],
)
def test_unsupported_or_malformed_options_are_refused_by_name(
    extra: dict[str, object], param: str
) -> None:
    error = refusal({"model": "m", "messages": HELLO, **extra})
    assert (error.status, error.param) == (400, param)


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ([{"role": "tool", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "messages[0].content[0]"),
        ([{"role": "user", "content": "x", "name": "bob"}], "messages[0].name"),
    ],
)
def test_bad_messages_are_refused_by_path(messages: object, param: str) -> None:
    assert refusal({"model": "m", "messages": messages}).param == param


def test_a_model_is_required_and_the_body_is_an_object() -> None:
    assert refusal({"messages": HELLO}).param == "model"
    assert refusal([1, 2]).status == 400


def test_inference_fields_map_back_to_openai_params() -> None:
    chat = parse_chat_request({"model": "m", "messages": HELLO, "max_completion_tokens": 3})
    assert param_of("options.temperature", chat) == "temperature"
    assert param_of("options.max_tokens", chat) == "max_completion_tokens"
    assert param_of("messages[0].content", chat) == "messages[0].content"
    assert param_of("inputs[1]") == "input"


def test_embedding_requests() -> None:
    one = parse_embedding_request({"model": "m", "input": "a"})
    many = parse_embedding_request({"model": "m", "input": ["a", "b"], "encoding_format": "base64"})

    assert one.inputs == ("a",)
    assert not one.base64
    assert many.inputs == ("a", "b")
    assert many.base64
    assert refusal({"model": "m", "input": [[1, 2]]}, parse_embedding_request).param == "input"
    assert (
        refusal({"model": "m", "input": "a", "dimensions": 8}, parse_embedding_request).param
        == "dimensions"
    )
    assert refusal({"model": "m", "input": []}, parse_embedding_request).param == "input"


def test_base64_embeddings_are_little_endian_float32() -> None:
    request = parse_embedding_request({"model": "m", "input": "a", "encoding_format": "base64"})
    body = embeddings_body(request, "m", [[1.0, -2.5]], 1)

    (item,) = body["data"]  # type: ignore[misc]
    assert struct.unpack("<2f", base64.b64decode(item["embedding"])) == (1.0, -2.5)


def test_sse_events() -> None:
    assert sse_event("[DONE]") == b"data: [DONE]\n\n"
    assert sse_event({"a": 1}) == b'data: {"a":1}\n\n'


def test_an_error_has_openais_shape() -> None:
    body = ApiError(404, "gone", param="model", code="model_not_found").body()
    assert body == {
        "error": {
            "message": "gone",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
