"""The Ollama adapter against Ollama's own documented responses (recordings/ollama/README.md).

No Ollama server can run here: an ``httpx.MockTransport`` replays the recordings and checks
what the adapter sends (paths, model, every option under Ollama's names).
"""

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from sutazai.runtime.settings import OllamaBackendSettings
from sutazai.services.inference.domain import (
    ChatMessage,
    Finished,
    FinishReason,
    Role,
    Sampling,
    TextChunk,
)
from sutazai.services.inference.errors import (
    BackendUnavailableError,
    ModelNotFoundError,
    OptionRejectedError,
)
from sutazai.services.inference.ollama import OllamaBackend

RECORDINGS = Path(__file__).parent / "recordings" / "ollama"
SETTINGS = OllamaBackendSettings(url="http://ollama.test:11434")
ASK = [ChatMessage(Role.USER, "why is the sky blue?")]

Handler = Callable[[httpx.Request], httpx.Response]


def recorded(name: str, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=(RECORDINGS / name).read_bytes())


def backend(handler: Handler) -> OllamaBackend:
    return OllamaBackend(SETTINGS, transport=httpx.MockTransport(handler))


async def collect(ollama: OllamaBackend, options: Sampling, *, stream: bool) -> list[object]:
    return [event async for event in ollama.generate("llama3.2", ASK, options, stream=stream)]


async def test_streamed_chat_gives_text_then_the_counts() -> None:
    sent: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/chat"
        sent.append(json.loads(request.content))
        return recorded("chat_stream.ndjson")

    options = Sampling(
        temperature=0.5,
        top_p=0.9,
        top_k=20,
        max_tokens=64,
        stop=("\n\n",),
        seed=42,
        repeat_penalty=1.1,
    )
    events = await collect(backend(handler), options, stream=True)

    assert events == [
        TextChunk("The"),
        Finished(FinishReason.STOP, prompt_tokens=26, completion_tokens=282),
    ]
    assert sent[0]["model"] == "llama3.2"
    assert sent[0]["stream"] is True
    assert sent[0]["messages"] == [{"role": "user", "content": "why is the sky blue?"}]
    # Every option reaches Ollama under its own name; none is dropped.
    assert sent[0]["options"] == {
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 20,
        "num_predict": 64,
        "stop": ["\n\n"],
        "seed": 42,
        "repeat_penalty": 1.1,
    }


async def test_unset_options_are_not_sent() -> None:
    sent: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return recorded("chat.json")

    events = await collect(backend(handler), Sampling(), stream=False)

    assert sent[0]["options"] == {}
    assert sent[0]["stream"] is False
    assert events == [
        TextChunk("Hello! How are you today?"),
        Finished(FinishReason.STOP, prompt_tokens=26, completion_tokens=298),
    ]


async def test_length_is_reported_as_length() -> None:
    final = json.loads((RECORDINGS / "chat.json").read_text())
    final["done_reason"] = "length"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=final)

    events = await collect(backend(handler), Sampling(max_tokens=1), stream=False)
    assert isinstance(events[-1], Finished)
    assert events[-1].reason is FinishReason.LENGTH


async def test_tags_list_the_models() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/tags"
        return recorded("tags.json")

    models = await backend(handler).list_models()

    assert [(m.name, m.size_bytes, m.loaded) for m in models] == [
        ("codellama:13b", 7365960935, True),
        ("llama3:latest", 3825819519, True),
    ]


async def test_embed_gives_one_vector_per_input() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/embed"
        assert json.loads(request.content) == {
            "model": "all-minilm",
            "input": ["Why is the sky blue?", "Why is the grass green?"],
        }
        return recorded("embed.json")

    result = await backend(handler).embed(
        "all-minilm", ["Why is the sky blue?", "Why is the grass green?"]
    )

    assert [len(v) for v in result.vectors] == [10, 10]
    assert result.vectors[0][0] == pytest.approx(0.010071029)


async def test_embed_with_the_wrong_number_of_vectors_is_a_backend_failure() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return recorded("embed.json")

    with pytest.raises(BackendUnavailableError):
        await backend(handler).embed("all-minilm", ["only one"])


async def test_load_and_unload_use_the_empty_chat() -> None:
    sent: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        return recorded("unload.json" if body.get("keep_alive") == 0 else "load.json")

    ollama = backend(handler)
    assert (await ollama.load("llama3.2")).loaded
    assert not (await ollama.unload("llama3.2")).loaded
    assert sent == [
        {"model": "llama3.2", "messages": [], "stream": False},
        {"model": "llama3.2", "messages": [], "stream": False, "keep_alive": 0},
    ]


async def test_a_missing_model_is_not_found() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return recorded("not_found.json", status=404)

    with pytest.raises(ModelNotFoundError):
        await collect(backend(handler), Sampling(), stream=True)


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_are_backend_failures_never_text(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": "server busy, please try again"})

    with pytest.raises(BackendUnavailableError, match="server busy"):
        await collect(backend(handler), Sampling(), stream=True)


async def test_a_bad_request_is_the_callers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": '"all-minilm" does not support chat'})

    with pytest.raises(OptionRejectedError):
        await collect(backend(handler), Sampling(), stream=True)


async def test_an_error_in_the_stream_is_a_backend_failure() -> None:
    first = (RECORDINGS / "chat_stream.ndjson").read_text().splitlines()[0]

    def handler(request: httpx.Request) -> httpx.Response:
        body = first + "\n" + json.dumps({"error": "llama runner process has terminated"})
        return httpx.Response(200, content=body.encode())

    events: list[object] = []

    async def consume() -> None:
        async for event in backend(handler).generate("llama3.2", ASK, Sampling(), stream=True):
            events.append(event)

    with pytest.raises(BackendUnavailableError, match="runner process"):
        await consume()
    assert events == [TextChunk("The")]


async def test_a_cut_stream_is_a_backend_failure() -> None:
    first = (RECORDINGS / "chat_stream.ndjson").read_text().splitlines()[0]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=(first + "\n").encode())

    with pytest.raises(BackendUnavailableError, match="before 'done'"):
        await collect(backend(handler), Sampling(), stream=True)


async def test_an_unreachable_server_is_a_backend_failure() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(BackendUnavailableError, match="unreachable"):
        await backend(handler).list_models()


def test_seeds_beyond_32_bits_are_refused() -> None:
    ollama = backend(lambda request: httpx.Response(500))
    assert "options.seed" in ollama.unsupported("llama3.2", Sampling(seed=2**40))
    assert ollama.unsupported("llama3.2", Sampling(seed=7, top_k=3, repeat_penalty=1.2)) == {}
