"""The OpenAI-compatible adapter's parsing and refusals (the real server: test_inference_e2e)."""

import json
from pathlib import Path

import httpx
import pytest

from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.settings import OpenAIBackendSettings
from sutazai.services.inference.domain import (
    ChatMessage,
    Finished,
    FinishReason,
    Role,
    Sampling,
    TextChunk,
)
from sutazai.services.inference.errors import BackendUnavailableError, NotSupportedError
from sutazai.services.inference.openai_compat import OpenAICompatibleBackend

ASK = [ChatMessage(Role.USER, "hi")]


def backend(
    handler: httpx.MockTransport | None = None, **settings: object
) -> OpenAICompatibleBackend:
    config = OpenAIBackendSettings(url="http://user:secret@llm.test:8080/v1?x=1", **settings)
    return OpenAICompatibleBackend(config, transport=handler)


def sse(*chunks: object) -> bytes:
    lines = [f"data: {json.dumps(c) if not isinstance(c, str) else c}\n\n" for c in chunks]
    return "".join(lines).encode()


def chunk(content: str | None, finish: str | None = None) -> dict[str, object]:
    delta = {} if content is None else {"content": content}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def test_streamed_chunks_then_the_finish() -> None:
    sent: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        sent.append(json.loads(request.content))
        body = sse(
            {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]},
            chunk("Hel"),
            chunk("lo"),
            chunk(None, "length"),
            "[DONE]",
        )
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    llm = backend(httpx.MockTransport(handler), extra_options=("top_k",))
    options = Sampling(temperature=0.1, top_p=0.5, top_k=3, max_tokens=2, stop=("x",), seed=9)
    events = [e async for e in llm.generate("m", ASK, options, stream=True)]

    assert events == [
        TextChunk("Hel"),
        TextChunk("lo"),
        Finished(FinishReason.LENGTH, prompt_tokens=0, completion_tokens=2),
    ]
    assert sent[0] == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "temperature": 0.1,
        "top_p": 0.5,
        "max_tokens": 2,
        "stop": ["x"],
        "seed": 9,
        "top_k": 3,
    }


async def test_a_stream_cut_before_done_is_a_backend_failure() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=sse(chunk("Hel")))

    with pytest.raises(BackendUnavailableError, match=r"\[DONE\]"):
        _ = [
            e
            async for e in backend(httpx.MockTransport(handler)).generate(
                "m", ASK, Sampling(), stream=True
            )
        ]


async def test_a_whole_reply_carries_usage() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "choices": [{"index": 0, "message": {"content": "Hi!"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 2},
            },
        )

    llm = backend(httpx.MockTransport(handler))
    events = [e async for e in llm.generate("m", ASK, Sampling(), stream=False)]
    assert events == [TextChunk("Hi!"), Finished(FinishReason.STOP, 7, 2)]


def test_options_outside_openai_are_refused_unless_declared() -> None:
    plain = backend()
    violations = plain.unsupported("m", Sampling(top_k=3, repeat_penalty=1.1))
    assert set(violations) == {"options.top_k", "options.repeat_penalty"}
    assert (
        backend(extra_options=("top_k", "repeat_penalty")).unsupported(
            "m", Sampling(top_k=3, repeat_penalty=1.1)
        )
        == {}
    )
    assert plain.unsupported("m", Sampling(seed=2**40)) == {}


def test_the_url_shown_carries_no_credentials() -> None:
    assert backend().url == "http://llm.test:8080/v1"


async def test_unload_is_not_supported() -> None:
    with pytest.raises(NotSupportedError):
        await backend().unload("m")


def test_the_api_key_file_must_be_private(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-test\n")
    key.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        backend(api_key_file=key)
    key.write_text("   \n")
    key.chmod(0o600)
    with pytest.raises(ConfigurationError, match="no key"):
        backend(api_key_file=key)


async def test_the_api_key_is_sent_as_a_bearer(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-test\n")
    key.chmod(0o600)
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["authorization"])
        return httpx.Response(200, json={"data": [{"id": "m"}]})

    models = await backend(httpx.MockTransport(handler), api_key_file=key).list_models()
    assert [m.name for m in models] == ["m"]
    assert sent == ["Bearer sk-test"]


async def test_embeddings_are_put_back_in_input_order() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/embeddings"
        assert json.loads(request.content) == {"model": "m", "input": ["a", "b"]}
        return httpx.Response(
            200,
            json={
                "data": [
                    {"index": 1, "embedding": [0.0, 1.0]},
                    {"index": 0, "embedding": [1.0, 0.0]},
                ],
                "usage": {"prompt_tokens": 2},
            },
        )

    result = await backend(httpx.MockTransport(handler)).embed("m", ["a", "b"])
    assert result.vectors == [[1.0, 0.0], [0.0, 1.0]]
    assert result.prompt_tokens == 2


async def test_per_token_vectors_are_not_openai_embeddings() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"index": 0, "embedding": [[1.0], [2.0]]}]})

    with pytest.raises(BackendUnavailableError, match="not a list of numbers"):
        await backend(httpx.MockTransport(handler)).embed("m", ["a"])
