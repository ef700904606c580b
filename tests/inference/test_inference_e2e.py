"""The inference service through Envoy: the real embedded model and a real llama_cpp.server.

Generations are tiny (a few tokens) and the model is loaded once for the session (the service
preloads it), so the module adds seconds, not minutes. The session mesh's limits
(tests/harness/mesh.py ``inference_settings``): the embedded backend runs one generation with
50 waiting; the OpenAI-compatible backend's breaker opens after two failures and tries again
after one second.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest

from sutazai.client import FileTokenStore, SessionTokens
from sutazai.inference.v1 import inference_service_pb2 as pb
from sutazai.inference.v1.inference_service_pb2_grpc import InferenceServiceStub
from sutazai.ops.supervisor.environment import settings_environment
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import MeshSettings
from tests.auth.helpers import failure, field_violations
from tests.harness.cli import run_cli
from tests.harness.waiting import wait_for
from tests.inference.conftest import LlamaServer

EMBEDDED_MODEL = "smollm2-135m-instruct"
USER_SAYS = pb.Message(role=pb.MESSAGE_ROLE_USER, content="Say hello.")
TINY = pb.SamplingOptions(max_tokens=4, temperature=0.0)
CALL_TIMEOUT = 60.0


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
async def stub(mesh_services: MeshSettings) -> AsyncIterator[InferenceServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh_services.envoy.port}") as channel:
        yield InferenceServiceStub(channel)


@pytest.fixture
async def rest(mesh_services: MeshSettings, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{mesh_services.envoy.port}",
        headers={"authorization": f"Bearer {admin_token}"},
        timeout=CALL_TIMEOUT,
    ) as client:
        yield client


async def backend(stub: InferenceServiceStub, token: str, name: str) -> pb.Backend:
    listed = await stub.ListBackends(pb.ListBackendsRequest(), metadata=bearer(token), timeout=10)
    return next(b for b in listed.backends if b.name == name)


# The embedded model ---------------------------------------------------------------------------


async def test_generate_answers_with_the_embedded_model(
    stub: InferenceServiceStub, admin_token: str
) -> None:
    reply = await stub.Generate(
        pb.GenerateRequest(messages=[USER_SAYS], options=TINY),
        metadata=bearer(admin_token),
        timeout=CALL_TIMEOUT,
    )

    assert reply.model == EMBEDDED_MODEL
    assert reply.text.strip()
    assert reply.finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_STOP)
    assert 0 < reply.usage.completion_tokens <= 4
    assert reply.usage.prompt_tokens > 3  # the chat template's tokens and the question
    assert reply.timing.total_ms >= reply.timing.time_to_first_token_ms > 0


async def test_models_lists_the_embedded_model_and_the_default(
    stub: InferenceServiceStub, admin_token: str
) -> None:
    listed = await stub.ListModels(pb.ListModelsRequest(), metadata=bearer(admin_token), timeout=10)

    assert listed.default_model == EMBEDDED_MODEL
    embedded = next(m for m in listed.models if m.name == EMBEDDED_MODEL)
    assert embedded.backend == "embedded"
    assert embedded.backend_kind == pb.BACKEND_KIND_EMBEDDED
    assert embedded.embeddings
    assert embedded.size_bytes > 50_000_000


async def test_rest_stream_is_ndjson_deltas_ending_in_done(rest: httpx.AsyncClient) -> None:
    body = {
        "model": EMBEDDED_MODEL,
        "messages": [{"role": "MESSAGE_ROLE_USER", "content": "Count: one, two,"}],
        "options": {"max_tokens": 6, "temperature": 0},
    }
    async with rest.stream("POST", "/v1/generate:stream", json=body) as response:
        assert response.status_code == 200
        lines = [json.loads(line) async for line in response.aiter_lines() if line.strip()]

    assert all("delta" in line for line in lines[:-1])
    assert len(lines) >= 2
    assert "done" in lines[-1]
    done = lines[-1]["done"]
    assert done["model"] == EMBEDDED_MODEL
    assert done["usage"]["completion_tokens"] <= 6
    assert "".join(line["delta"]["text"] for line in lines[:-1]).strip()


async def test_the_same_seed_gives_the_same_text(
    stub: InferenceServiceStub, admin_token: str
) -> None:
    options = pb.SamplingOptions(max_tokens=8, temperature=1.5, top_k=100, seed=1234)
    replies = [
        await stub.Generate(
            pb.GenerateRequest(messages=[USER_SAYS], options=options),
            metadata=bearer(admin_token),
            timeout=CALL_TIMEOUT,
        )
        for _ in range(2)
    ]
    assert replies[0].text == replies[1].text


async def test_embeddings_have_one_vector_per_input(
    stub: InferenceServiceStub, admin_token: str
) -> None:
    reply = await stub.Embed(
        pb.EmbedRequest(inputs=["the sky is blue", "grass is green"]),
        metadata=bearer(admin_token),
        timeout=CALL_TIMEOUT,
    )

    assert reply.model == EMBEDDED_MODEL
    assert len(reply.embeddings) == 2
    sizes = {len(e.values) for e in reply.embeddings}
    assert sizes == {576}, "SmolLM2-135M's hidden size"
    assert all(math.isfinite(x) for e in reply.embeddings for x in e.values)
    assert reply.embeddings[0].values != reply.embeddings[1].values
    assert reply.prompt_tokens > 0


async def test_each_call_is_measured_in_the_services_metrics(
    stub: InferenceServiceStub, admin_token: str, mesh_services: MeshSettings
) -> None:
    await stub.Generate(
        pb.GenerateRequest(messages=[USER_SAYS], options=TINY),
        metadata=bearer(admin_token),
        timeout=CALL_TIMEOUT,
    )
    nc = await connect_nats(mesh_services, name="inference-metrics-test")
    try:
        registry = await Registry.open(nc.jetstream(), mesh_services.registry)
        instance = next(i for i in await registry.list() if i.service == "inference")
    finally:
        await nc.close()
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"http://{instance.metrics_address}/metrics")).text
    labels = f'backend="embedded",model="{EMBEDDED_MODEL}"'
    for metric in (
        f"sutazai_inference_completion_tokens_total{{{labels}}}",
        f"sutazai_inference_prompt_tokens_total{{{labels}}}",
        f"sutazai_inference_time_to_first_token_seconds_count{{{labels}}}",
        f"sutazai_inference_generation_seconds_count{{{labels}}}",
        f'sutazai_inference_calls_total{{{labels},outcome="ok"}}',
    ):
        line = next((x for x in text.splitlines() if x.startswith(metric + " ")), None)
        assert line is not None, f"{metric} missing"
        assert float(line.rsplit(" ", 1)[1]) > 0


# Refusals -------------------------------------------------------------------------------------


async def test_an_unknown_model_is_not_found(
    stub: InferenceServiceStub, admin_token: str, rest: httpx.AsyncClient
) -> None:
    error = await failure(
        stub.Generate(
            pb.GenerateRequest(model="no-such-model", messages=[USER_SAYS], options=TINY),
            metadata=bearer(admin_token),
            timeout=CALL_TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in (error.details() or "")

    reply = await rest.post(
        "/v1/generate",
        json={"model": "no-such-model", "messages": [{"role": 2, "content": "hi"}]},
    )
    assert reply.status_code == 404


async def test_bad_options_are_invalid_argument_naming_each_field(
    stub: InferenceServiceStub, admin_token: str, rest: httpx.AsyncClient
) -> None:
    bad = pb.SamplingOptions(
        temperature=3.0, top_p=0.0, top_k=5000, max_tokens=0, repeat_penalty=9, stop=["a"] * 5
    )
    error = await failure(
        stub.Generate(
            pb.GenerateRequest(
                messages=[pb.Message(role=pb.MESSAGE_ROLE_ASSISTANT, content="")], options=bad
            ),
            metadata=bearer(admin_token),
            timeout=CALL_TIMEOUT,
        )
    )
    assert set(field_violations(error)) == {
        "options.temperature",
        "options.top_p",
        "options.top_k",
        "options.max_tokens",
        "options.repeat_penalty",
        "options.stop",
        "messages[0].content",
        "messages[0].role",
    }

    reply = await rest.post(
        "/v1/generate",
        json={
            "messages": [{"role": "MESSAGE_ROLE_USER", "content": "hi"}],
            "options": {"seed": -1},
        },
    )
    assert reply.status_code == 400
    violations = reply.json()["details"][0]["field_violations"]
    assert [v["field"] for v in violations] == ["options.seed"]


async def test_load_and_unload_need_an_operator(
    stub: InferenceServiceStub, user_token: str, operator_token: str
) -> None:
    for call in (
        stub.LoadModel(pb.LoadModelRequest(model=EMBEDDED_MODEL), metadata=bearer(user_token)),
        stub.UnloadModel(pb.UnloadModelRequest(model=EMBEDDED_MODEL), metadata=bearer(user_token)),
        stub.ResetBreaker(pb.ResetBreakerRequest(backend="openai"), metadata=bearer(user_token)),
    ):
        assert (await failure(call)).code() is grpc.StatusCode.PERMISSION_DENIED

    unloaded = await stub.UnloadModel(
        pb.UnloadModelRequest(model=EMBEDDED_MODEL), metadata=bearer(operator_token), timeout=60
    )
    assert not unloaded.model.loaded
    loaded = await stub.LoadModel(
        pb.LoadModelRequest(model=EMBEDDED_MODEL), metadata=bearer(operator_token), timeout=60
    )
    assert loaded.model.loaded
    assert loaded.load_ms > 0
    again = await stub.LoadModel(
        pb.LoadModelRequest(model=EMBEDDED_MODEL), metadata=bearer(operator_token), timeout=60
    )
    assert again.load_ms == 0, "loading a loaded model is a no-op"


# Concurrency ------------------------------------------------------------------------------------


async def test_a_full_queue_is_resource_exhausted_and_a_cancel_frees_the_slot(
    stub: InferenceServiceStub, admin_token: str, mesh_services: MeshSettings
) -> None:
    metadata = bearer(admin_token)
    limits = mesh_services.inference.embedded
    assert limits.max_concurrency == 1
    # A generation that would run for a long time (near-random sampling rarely ends a turn).
    endless = pb.GenerateStreamRequest(
        messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content="Write a very long story.")],
        options=pb.SamplingOptions(max_tokens=4096, temperature=2.0, top_k=1000, seed=7),
    )
    running = stub.GenerateStream(endless, metadata=metadata)
    first = await running.read()
    assert first.WhichOneof("event") == "delta"

    # The waiting calls have no message yet; start them and watch them wait.
    waiting = [
        stub.GenerateStream(
            pb.GenerateStreamRequest(messages=[USER_SAYS], options=TINY), metadata=metadata
        )
        for _ in range(limits.max_queue)
    ]
    waiting_first = [asyncio.ensure_future(call.read()) for call in waiting]

    async def queued(count: int) -> bool:
        return (await backend(stub, admin_token, "embedded")).queued == count

    await wait_for(
        lambda: queued(limits.max_queue), timeout=30, interval=0.05, message="the queue is full"
    )

    refused = await failure(
        stub.Generate(pb.GenerateRequest(messages=[USER_SAYS], options=TINY), metadata=metadata)
    )
    assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

    # A waiting call that is cancelled leaves the queue at once: keep one waiting.
    for call in waiting[1:]:
        call.cancel()
    await wait_for(lambda: queued(1), timeout=30, interval=0.05, message="one call waits")
    left = await asyncio.gather(*waiting_first[1:], return_exceptions=True)
    assert all(isinstance(outcome, BaseException) for outcome in left), "no message for them"

    running.cancel()
    # The waiting call gets the slot as soon as the cancelled one lets it go.
    first_of_waiting = await asyncio.wait_for(waiting_first[0], timeout=30)
    assert first_of_waiting.WhichOneof("event") in ("delta", "done")
    last = first_of_waiting
    while (message := await waiting[0].read()) is not grpc.aio.EOF:
        last = message
    assert last.WhichOneof("event") == "done"

    async def idle() -> bool:
        status = await backend(stub, admin_token, "embedded")
        return status.in_flight == 0 and status.queued == 0

    await wait_for(idle, timeout=10, message="the embedded backend is idle again")


# The OpenAI-compatible backend and its breaker --------------------------------------------------


async def test_openai_compatible_backend_answers_and_its_breaker_opens_and_recovers(
    stub: InferenceServiceStub,
    admin_token: str,
    operator_token: str,
    rest: httpx.AsyncClient,
    openai_backend: LlamaServer,
) -> None:
    metadata = bearer(admin_token)
    request = pb.GenerateRequest(
        model=openai_backend.model,
        messages=[USER_SAYS],
        options=pb.SamplingOptions(max_tokens=4, temperature=0.0, top_k=10, repeat_penalty=1.1),
    )

    async def answers() -> bool:
        try:
            await stub.Generate(request, metadata=metadata, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError:
            return False
        return True

    # The backend learns the server's models once its breaker lets a listing through.
    await wait_for(answers, timeout=60, interval=0.5, message="the OpenAI backend answers")
    reply = await stub.Generate(request, metadata=metadata, timeout=CALL_TIMEOUT)
    assert reply.model == openai_backend.model
    assert reply.text
    assert reply.usage.completion_tokens > 0
    streamed = [
        m
        async for m in stub.GenerateStream(
            pb.GenerateStreamRequest(
                model=openai_backend.model, messages=[USER_SAYS], options=TINY
            ),
            metadata=metadata,
            timeout=CALL_TIMEOUT,
        )
    ]
    assert streamed[-1].WhichOneof("event") == "done"
    assert streamed[-1].done.model == openai_backend.model
    # (No embeddings here: llama_cpp.server has no pooling option, and a causal model without
    # one gives a vector per token, which is not OpenAI's shape. The adapter's parsing of
    # /embeddings is covered in test_openai_compat.py.)

    openai_backend.stop()
    try:
        error = await failure(stub.Generate(request, metadata=metadata, timeout=CALL_TIMEOUT))
        assert error.code() is grpc.StatusCode.UNAVAILABLE

        async def opened() -> bool:
            status = await backend(stub, admin_token, "openai")
            return status.breaker.state in (pb.BREAKER_STATE_OPEN, pb.BREAKER_STATE_HALF_OPEN)

        await wait_for(opened, timeout=10, message="the breaker opens")
        status = await backend(stub, admin_token, "openai")
        assert status.breaker.failures_total >= 2
        assert status.breaker.last_error
        assert status.breaker.HasField("opened_at")

        # Never a 200 with an error text: REST callers get 503.
        reply_rest = await rest.post(
            "/v1/generate",
            json={
                "model": openai_backend.model,
                "messages": [{"role": "MESSAGE_ROLE_USER", "content": "hi"}],
                "options": {"max_tokens": 2},
            },
        )
        assert reply_rest.status_code == 503, reply_rest.text
        # Other backends are unaffected.
        assert (await backend(stub, admin_token, "embedded")).breaker.state == (
            pb.BREAKER_STATE_CLOSED
        )
    finally:
        await openai_backend.start()

    await wait_for(answers, timeout=30, interval=0.3, message="the breaker closes again")
    status = await backend(stub, admin_token, "openai")
    assert status.breaker.state == pb.BREAKER_STATE_CLOSED

    reset = await stub.ResetBreaker(
        pb.ResetBreakerRequest(backend="openai"), metadata=bearer(operator_token), timeout=10
    )
    assert reset.backend.breaker.state == pb.BREAKER_STATE_CLOSED
    missing = await failure(
        stub.ResetBreaker(pb.ResetBreakerRequest(backend="nope"), metadata=bearer(operator_token))
    )
    assert missing.code() is grpc.StatusCode.NOT_FOUND


# CLI ------------------------------------------------------------------------------------------


async def test_cli_lists_models_and_refuses_a_user_load(
    mesh_services: MeshSettings, admin_token: str, user_token: str, tmp_path: Path
) -> None:
    # The CLI reads its token from its state directory: a private one, not the session mesh's.
    state = tmp_path / f"cli-{secrets.token_hex(3)}"
    env = {**settings_environment(mesh_services), "SUTAZAI_STATE_DIR": str(state)}
    expires = datetime.now(UTC) + timedelta(minutes=5)
    FileTokenStore(state).save(SessionTokens(admin_token, "", expires))

    listed = await run_cli("models", "--json", env=env)
    assert listed.code == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["default_model"] == EMBEDDED_MODEL
    assert EMBEDDED_MODEL in {m["name"] for m in document["models"]}

    table = await run_cli("models", env=env)
    assert table.code == 0, table.stderr
    assert EMBEDDED_MODEL in table.stdout

    FileTokenStore(state).save(SessionTokens(user_token, "", expires))
    refused = await run_cli("models", "load", EMBEDDED_MODEL, env=env)
    assert refused.code != 0
    assert "PERMISSION_DENIED" in refused.stderr + refused.stdout
