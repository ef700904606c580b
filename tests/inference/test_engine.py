"""The engine: model routing, breaker and slots around a backend, timings and records."""

import asyncio
from collections.abc import AsyncGenerator, Sequence

import pytest

from sutazai.services.inference.breaker import BreakerState
from sutazai.services.inference.domain import (
    BackendEvent,
    BackendKind,
    ChatMessage,
    Delta,
    Done,
    Embedded,
    Finished,
    FinishReason,
    ModelInfo,
    Role,
    Sampling,
    TextChunk,
)
from sutazai.services.inference.engine import BackendLimits, CallRecord, Inference
from sutazai.services.inference.errors import (
    BackendUnavailableError,
    BreakerOpenError,
    BusyError,
    ModelNotFoundError,
    OptionRejectedError,
)
from tests.harness.waiting import wait_for

ASK = [ChatMessage(Role.USER, "hi")]
LIMITS = BackendLimits(max_concurrency=1, max_queue=1, failure_threshold=2, cooldown_seconds=60)


class FakeBackend:
    def __init__(self, name: str, models: Sequence[str], *, remote: bool = False) -> None:
        self._name = name
        self._models = list(models)
        self.remote = remote
        self.down = False
        self.gate: asyncio.Event | None = None
        self.closed_generations = 0
        self.listings = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> BackendKind:
        return BackendKind.OLLAMA if self.remote else BackendKind.EMBEDDED

    @property
    def url(self) -> str:
        return "http://fake" if self.remote else ""

    def known_models(self) -> Sequence[str]:
        return () if self.remote else self._models

    def unsupported(self, model: str, options: Sampling) -> dict[str, str]:
        return {"options.top_k": "not here"} if options.top_k is not None else {}

    async def list_models(self) -> list[ModelInfo]:
        self.listings += 1
        if self.down:
            raise BackendUnavailableError(self._name, "refused")
        return [ModelInfo(m, self._name, self.kind, loaded=True) for m in self._models]

    async def generate(
        self, model: str, messages: Sequence[ChatMessage], options: Sampling, *, stream: bool
    ) -> AsyncGenerator[BackendEvent, None]:
        if self.down:
            raise BackendUnavailableError(self._name, "refused")
        try:
            yield TextChunk("Hel")
            if self.gate is not None:
                await self.gate.wait()
            yield TextChunk("lo")
            yield Finished(FinishReason.STOP, prompt_tokens=5, completion_tokens=2)
        finally:
            self.closed_generations += 1

    async def embed(self, model: str, inputs: Sequence[str]) -> Embedded:
        return Embedded([[1.0, 2.0] for _ in inputs], prompt_tokens=len(inputs))

    async def load(self, model: str) -> ModelInfo:
        return ModelInfo(model, self._name, self.kind, loaded=True)

    async def unload(self, model: str) -> ModelInfo:
        return ModelInfo(model, self._name, self.kind, loaded=False)

    async def close(self) -> None:
        pass


class Recorder:
    def __init__(self) -> None:
        self.calls: list[CallRecord] = []
        self.breakers: list[tuple[str, BreakerState]] = []

    def record(self, call: CallRecord) -> None:
        self.calls.append(call)

    def breaker_changed(self, backend: str, state: BreakerState) -> None:
        self.breakers.append((backend, state))


def engine(*backends: FakeBackend, recorder: Recorder | None = None) -> Inference:
    return Inference(
        [(b, LIMITS) for b in backends],
        default_model="local",
        default_embedding_model="",
        recorder=recorder or Recorder(),
    )


async def run(inference: Inference, model: str, options: Sampling | None = None) -> list[object]:
    return [e async for e in inference.generate(model, ASK, options or Sampling())]


async def test_the_requested_model_runs_on_its_backend() -> None:
    local, remote = FakeBackend("embedded", ["local"]), FakeBackend("ollama", ["big"], remote=True)
    recorder = Recorder()
    inference = engine(local, remote, recorder=recorder)

    events = await run(inference, "big")

    assert [e for e in events if isinstance(e, Delta)] == [Delta("Hel"), Delta("lo")]
    done = events[-1]
    assert isinstance(done, Done)
    assert (done.model, done.completion_tokens, done.prompt_tokens) == ("big", 2, 5)
    assert done.timing.total_ms >= done.timing.time_to_first_token_ms >= 0
    assert recorder.calls[-1].backend == "ollama"
    assert recorder.calls[-1].outcome == "ok"
    assert inference.backend("ollama").tokens_generated_total == 2  # type: ignore[union-attr]


async def test_an_empty_model_is_the_default() -> None:
    events = await run(engine(FakeBackend("embedded", ["local"])), "")
    assert isinstance(events[-1], Done)
    assert events[-1].model == "local"


async def test_an_unknown_model_is_not_found_never_a_substitute() -> None:
    remote = FakeBackend("ollama", ["big"], remote=True)
    inference = engine(FakeBackend("embedded", ["local"]), remote)
    with pytest.raises(ModelNotFoundError):
        await run(inference, "nope")
    listings = remote.listings
    with pytest.raises(ModelNotFoundError):
        await run(inference, "nope-again")
    assert remote.listings == listings, "unknown names do not re-list a backend at once"


async def test_an_option_the_backend_cannot_honour_is_refused() -> None:
    with pytest.raises(OptionRejectedError) as refused:
        await run(engine(FakeBackend("embedded", ["local"])), "local", Sampling(top_k=3))
    assert "options.top_k" in refused.value.violations


async def test_failures_open_the_breaker_then_calls_fail_fast() -> None:
    remote = FakeBackend("ollama", ["big"], remote=True)
    recorder = Recorder()
    inference = engine(remote, recorder=recorder)
    await run(inference, "big")  # learns where "big" lives
    remote.down = True
    for _ in range(2):
        with pytest.raises(BackendUnavailableError):
            await run(inference, "big")
    with pytest.raises(BreakerOpenError):
        await run(inference, "big")
    status = inference.backend("ollama")
    assert status is not None
    assert status.breaker.state is BreakerState.OPEN
    assert status.breaker.rejected_total == 1
    assert ("ollama", BreakerState.OPEN) in recorder.breakers
    # A down backend still lists what it offered, as not loaded.
    models = await inference.list_models()
    assert [(m.name, m.loaded) for m in models] == [("big", False)]
    reset = inference.reset_breaker("ollama")
    assert reset is not None
    assert reset.breaker.state is BreakerState.CLOSED


async def test_beyond_slots_and_queue_is_busy_and_closing_frees_the_slot() -> None:
    local = FakeBackend("embedded", ["local"])
    local.gate = asyncio.Event()
    inference = engine(local)
    first = inference.generate("local", ASK, Sampling())
    assert await anext(first) == Delta("Hel")  # holds the one slot, mid-generation
    queued = asyncio.create_task(run(inference, "local"))

    def waiting() -> bool:
        backend = inference.backend("embedded")
        return backend is not None and backend.queued == 1

    await wait_for(waiting, 5.0)
    status = inference.backend("embedded")
    assert status is not None
    assert (status.in_flight, status.queued) == (1, 1)
    with pytest.raises(BusyError):
        await run(inference, "local")
    await first.aclose()  # the caller went away
    assert local.closed_generations == 1, "the backend's generation was stopped"
    local.gate.set()
    assert isinstance((await asyncio.wait_for(queued, 1))[-1], Done)
    status = inference.backend("embedded")
    assert status is not None
    assert (status.in_flight, status.queued) == (0, 0)
    assert status.breaker.consecutive_failures == 0


async def test_embed_and_operations() -> None:
    inference = engine(FakeBackend("embedded", ["local"]))
    result = await inference.embed("", ["a", "b"])
    assert (result.model, len(result.vectors)) == ("local", 2)
    info, _ = await inference.load("local")
    assert info.loaded
    assert not (await inference.unload("local")).loaded
    assert inference.reset_breaker("nope") is None
