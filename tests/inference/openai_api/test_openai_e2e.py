"""The OpenAI-compatible API through Envoy, with the official ``openai`` client and raw HTTP.

The whole session mesh runs (``mesh_services``): Envoy routes ``/openai/`` to the inference
service's HTTP socket, where the API calls the engine in process as the caller; the embedded
SmolLM2 model answers for real. Generations are a few tokens long.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from sutazai.runtime.settings import MeshSettings

MODEL = "smollm2-135m-instruct"
HELLO = [{"role": "user", "content": "Say hello."}]
TIMEOUT = 60.0


def base_url(settings: MeshSettings) -> str:
    return f"http://127.0.0.1:{settings.envoy.port}/openai/v1"


@pytest.fixture
async def client(mesh_services: MeshSettings, user_token: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=base_url(mesh_services), api_key=user_token, timeout=TIMEOUT, max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def raw(mesh_services: MeshSettings, user_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=base_url(mesh_services),
        headers={"authorization": f"Bearer {user_token}"},
        timeout=TIMEOUT,
    ) as client:
        yield client


async def test_the_client_lists_the_models(client: openai.AsyncOpenAI) -> None:
    models = [m async for m in client.models.list()]

    assert MODEL in {m.id for m in models}
    assert all(m.object == "model" for m in models)
    assert (await client.models.retrieve(MODEL)).id == MODEL


async def test_a_completion_without_streaming(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        max_tokens=4,
        temperature=0,
        seed=7,  # type: ignore[arg-type]
    )

    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == MODEL
    assert reply.created > 0
    (choice,) = reply.choices
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    assert reply.usage is not None
    assert 0 < reply.usage.completion_tokens <= 4
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


async def test_max_tokens_ends_with_length(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_completion_tokens=2,
        temperature=0,
    )

    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 2


async def test_a_streamed_completion(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=6,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text.strip()
    assert with_choices[-1].choices[0].finish_reason in {"stop", "length"}
    assert chunks[-1].usage is not None
    assert 0 < chunks[-1].usage.completion_tokens <= 6


async def test_embeddings(client: openai.AsyncOpenAI) -> None:
    # The client asks for base64 by default and decodes it; the second call asks for floats.
    reply = await client.embeddings.create(model=MODEL, input=["hello", "world"])
    floats = await client.embeddings.create(model=MODEL, input="hello", encoding_format="float")

    assert [e.index for e in reply.data] == [0, 1]
    size = len(reply.data[0].embedding)
    assert size > 0
    assert len(reply.data[1].embedding) == size
    assert reply.usage.prompt_tokens > 0
    assert floats.data[0].embedding == pytest.approx(reply.data[0].embedding, rel=1e-5)


async def test_a_bad_token_is_an_authentication_error(mesh_services: MeshSettings) -> None:
    async with openai.AsyncOpenAI(
        base_url=base_url(mesh_services), api_key="not-a-token", max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            await client.models.list()

    assert raised.value.status_code == 401
    body = raised.value.body
    assert isinstance(body, dict)
    assert body.get("code") == "invalid_api_key", "Envoy's own reply in OpenAI's error shape"


async def test_an_unknown_model_is_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await client.chat.completions.create(model="no-such-model", messages=HELLO)  # type: ignore[arg-type]

    assert raised.value.code == "model_not_found"
    assert raised.value.param == "model"


async def test_an_unknown_model_is_not_found_when_streaming(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model="no-such-model",
            messages=HELLO,  # type: ignore[arg-type]
            stream=True,
        )


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"n": 2}, "n"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"max_completion_tokens": 100_000}, "max_completion_tokens"),
        ({"extra_body": {"no_such_option": 1}}, "no_such_option"),
    ],
)
async def test_a_bad_parameter_is_a_bad_request_naming_it(
    client: openai.AsyncOpenAI, options: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(model=MODEL, messages=HELLO, **options)  # type: ignore[arg-type, call-overload]

    assert raised.value.status_code == 400
    assert raised.value.param == param


async def test_sse_framing_ends_with_done(raw: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 4, "temperature": 0, "stream": True}
    async with raw.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = (await response.aread()).decode()

    events = [e for e in text.split("\n\n") if e and not e.startswith(":")]
    assert all(e.startswith("data: ") for e in events), "every event is one data line"
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] in {"stop", "length"}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


async def test_errors_have_openais_shape_and_status(raw: httpx.AsyncClient) -> None:
    not_json = await raw.post(
        "/chat/completions", content=b"{", headers={"content-type": "application/json"}
    )
    unknown = await raw.post("/chat/completions", json={"model": "nope", "messages": HELLO})
    no_route = await raw.get("/no-such-endpoint")

    assert not_json.status_code == 400
    assert set(not_json.json()["error"]) == {"message", "type", "param", "code"}
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert no_route.status_code == 404
    assert no_route.json()["error"]["code"] == "not_found"


async def test_the_edge_requires_a_token_on_the_prefix(mesh_services: MeshSettings) -> None:
    async with httpx.AsyncClient(base_url=base_url(mesh_services), timeout=TIMEOUT) as anonymous:
        reply = await anonymous.get("/models")

    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "invalid_request_error"


async def test_the_service_checks_the_token_itself_behind_the_edge(
    mesh_services: MeshSettings,
) -> None:
    """Another process on the host that reaches the HTTP socket is not let in without a token."""
    (socket,) = mesh_services.run_dir.glob("inference.*.http.sock")
    transport = httpx.AsyncHTTPTransport(uds=str(socket))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://inference", timeout=TIMEOUT
    ) as direct:
        anonymous = await direct.get("/openai/v1/models")
        forged = await direct.post(
            "/openai/v1/chat/completions",
            json={"model": MODEL, "messages": HELLO, "stream": True},
            headers={"authorization": "Bearer not-a-token"},
        )

    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    assert forged.status_code == 401
