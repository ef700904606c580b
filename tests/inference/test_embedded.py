"""The embedded backend in-process with the real SmolLM2 model (tiny generations, no server)."""

import asyncio
import os
import threading
from collections.abc import AsyncIterator

import pytest

from sutazai.runtime.settings import EmbeddedBackendSettings
from sutazai.services.inference import embedded
from sutazai.services.inference.domain import (
    ChatMessage,
    Finished,
    FinishReason,
    Role,
    Sampling,
    TextChunk,
)
from sutazai.services.inference.embedded import EmbeddedBackend
from sutazai.services.inference.errors import ModelNotFoundError, OptionRejectedError
from tests.harness.waiting import wait_for

MODEL = "smollm2-135m-instruct"
ASK = [ChatMessage(Role.USER, "Name three colours.")]
GREEDY = Sampling(temperature=0.0, max_tokens=12)


@pytest.fixture(scope="module")
async def llm() -> AsyncIterator[EmbeddedBackend]:
    backend = EmbeddedBackend(EmbeddedBackendSettings(n_threads=1, n_ctx=512))
    await backend.load(MODEL)
    yield backend
    await backend.close()


async def generate(
    llm: EmbeddedBackend, options: Sampling, messages: list[ChatMessage] = ASK
) -> tuple[str, Finished]:
    events = [e async for e in llm.generate(MODEL, messages, options, stream=True)]
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert all(isinstance(e, TextChunk) for e in events[:-1])
    return "".join(e.text for e in events[:-1] if isinstance(e, TextChunk)), finished


async def test_max_tokens_ends_with_length_and_exact_counts(llm: EmbeddedBackend) -> None:
    text, finished = await generate(llm, Sampling(temperature=0.0, max_tokens=5))
    assert text.strip()
    assert finished.reason is FinishReason.LENGTH
    assert finished.completion_tokens == 5
    assert finished.prompt_tokens > 5


async def test_a_stop_sequence_ends_the_text_before_it(llm: EmbeddedBackend) -> None:
    full, _ = await generate(llm, GREEDY)
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    text, finished = await generate(llm, Sampling(temperature=0.0, max_tokens=12, stop=(stop,)))
    assert finished.reason is FinishReason.STOP
    assert stop not in text
    assert full.startswith(text)
    assert text == full[: full.index(stop)]


async def test_a_seed_reproduces_sampling_whatever_ran_before(llm: EmbeddedBackend) -> None:
    options = Sampling(temperature=1.5, top_k=200, max_tokens=10, seed=42)
    other = [ChatMessage(Role.USER, "Something else entirely.")]
    await generate(llm, GREEDY, other)
    after_another, _ = await generate(llm, options)
    after_the_same, _ = await generate(llm, options)  # the context holds this very prompt
    assert after_another == after_the_same
    greedy = Sampling(temperature=0.0, max_tokens=32)
    await generate(llm, greedy, other)
    greedy_after_another, _ = await generate(llm, greedy)
    greedy_after_the_same, _ = await generate(llm, greedy)
    assert greedy_after_another == greedy_after_the_same


async def test_closing_the_stream_stops_generation_and_frees_the_model(
    llm: EmbeddedBackend,
) -> None:
    endless = Sampling(temperature=2.0, top_k=1000, max_tokens=500, seed=3)
    stream = llm.generate(
        MODEL, [ChatMessage(Role.USER, "Tell a long story.")], endless, stream=True
    )
    assert isinstance(await anext(stream), TextChunk)
    await asyncio.wait_for(stream.aclose(), timeout=10)
    # The one model copy is back: a new generation runs at once.
    _, finished = await asyncio.wait_for(generate(llm, GREEDY), timeout=30)
    assert finished.completion_tokens > 0


async def test_a_conversation_longer_than_the_context_is_refused(llm: EmbeddedBackend) -> None:
    long = [ChatMessage(Role.USER, "word " * 2000)]
    with pytest.raises(OptionRejectedError) as refused:
        await generate(llm, GREEDY, long)
    assert "messages" in refused.value.violations


async def test_embeddings_are_one_vector_per_input(llm: EmbeddedBackend) -> None:
    result = await llm.embed(MODEL, ["red", "a longer sentence about green grass"])
    assert [len(v) for v in result.vectors] == [576, 576]
    assert result.vectors[0] != result.vectors[1]
    assert result.prompt_tokens >= 2


async def test_another_model_name_is_not_found(llm: EmbeddedBackend) -> None:
    with pytest.raises(ModelNotFoundError):
        await generate_other(llm)


async def generate_other(llm: EmbeddedBackend) -> None:
    async for _ in llm.generate("gpt-4", ASK, GREEDY, stream=True):
        pass


async def test_unload_then_use_loads_again(llm: EmbeddedBackend) -> None:
    assert not (await llm.unload(MODEL)).loaded
    assert not (await llm.list_models())[0].loaded
    _, finished = await generate(llm, Sampling(temperature=0.0, max_tokens=2))
    assert finished.completion_tokens == 2
    assert (await llm.list_models())[0].loaded


async def test_a_replica_is_only_ever_run_by_its_own_thread(llm: EmbeddedBackend) -> None:
    """llama.cpp's OpenMP team belongs to the calling thread: one thread per copy keeps one."""
    runners: set[str] = set()
    real_run = embedded._run

    def recording_run(*args: object) -> None:
        runners.add(threading.current_thread().name)
        real_run(*args)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(embedded, "_run", recording_run)
        for _ in range(3):
            # Leave each stream after its first piece, while its thread is still generating,
            # and start the next at once; and generate while an embedding keeps another thread
            # busy: a shared pool hands such calls whichever of its threads is free.
            stream = llm.generate(MODEL, ASK, Sampling(temperature=0.0, max_tokens=50), stream=True)
            await anext(stream)
            await stream.aclose()
            await asyncio.gather(llm.embed(MODEL, ["a colour"]), generate(llm, GREEDY))

    assert runners == {"llama-0_0"}


def _threads() -> set[str]:
    return set(os.listdir("/proc/self/task"))


async def test_an_embedding_leaves_no_thread_of_its_own_behind() -> None:
    """libgomp throttles every OpenMP team while it manages more threads than there are CPUs.

    A thread that ran an embedding kept its team alive, and generation ran 30 % slower from
    then on (docs/benchmarks.md): the embedding's threads must end with it.
    """
    backend = EmbeddedBackend(EmbeddedBackendSettings(n_threads=2, n_ctx=512))
    try:
        await backend.load(MODEL)
        await generate(backend, GREEDY)
        before = _threads()
        result = await backend.embed(MODEL, ["a colour", "another colour"])
        assert len(result.vectors) == 2
        await wait_for(
            lambda: _threads() <= before, 10, 0.01, message="the embedding's threads ended"
        )
        # And the replica's own thread (with its team) is still the one that generates.
        await generate(backend, GREEDY)
        assert _threads() <= before
    finally:
        await backend.close()
