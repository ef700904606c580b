"""The inference engine: picks the backend of the requested model and runs the call on it.

Every call to a backend, model listings included, goes through the backend's circuit breaker;
generations and embeddings also hold one of its slots. The requested model is always the one
used: an unknown model is :class:`ModelNotFoundError`, never a substitute. Which backend owns a
model: the embedded one's model, then the models configured for each remote backend, then what
each remote backend last listed (refreshed when an unknown name is asked for, at most every
:data:`REFRESH_SECONDS` per backend, so unknown names cannot hammer a remote server).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from sutazai.services.inference.breaker import BreakerSnapshot, BreakerState, CircuitBreaker
from sutazai.services.inference.domain import (
    Backend,
    BackendKind,
    ChatMessage,
    Delta,
    Done,
    EmbedResult,
    Finished,
    GenerationEvent,
    ModelInfo,
    Sampling,
    TextChunk,
    Timing,
    tokens_per_second,
)
from sutazai.services.inference.errors import (
    BackendUnavailableError,
    BusyError,
    InferenceError,
    ModelNotFoundError,
    OptionRejectedError,
)
from sutazai.services.inference.slots import Slots

log = structlog.get_logger(__name__)

REFRESH_SECONDS = 2.0


class Outcome:
    """How a call ended, as a metric label (a small fixed set)."""

    OK = "ok"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    """The request's fault: bad option, unknown model on the backend."""
    BUSY = "busy"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished generation, for metrics."""

    backend: str
    model: str
    outcome: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token_seconds: float | None = None
    total_seconds: float = 0.0
    queued_seconds: float = 0.0


class Recorder(Protocol):
    """Where finished calls and breaker changes are recorded (Prometheus in the service)."""

    def record(self, call: CallRecord) -> None:
        """Record one finished call."""

    def breaker_changed(self, backend: str, state: BreakerState) -> None:
        """Record a breaker's new state."""


@dataclass(frozen=True, slots=True)
class BackendLimits:
    """A backend's concurrency and breaker settings."""

    max_concurrency: int
    max_queue: int
    failure_threshold: int
    cooldown_seconds: float


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """A backend as ListBackends shows it."""

    name: str
    kind: BackendKind
    url: str
    breaker: BreakerSnapshot
    max_concurrency: int
    in_flight: int
    max_queue: int
    queued: int
    tokens_generated_total: int
    last_tokens_per_second: float


@dataclass(slots=True)
class _Runtime:
    backend: Backend
    breaker: CircuitBreaker
    slots: Slots
    listed: dict[str, ModelInfo] = field(default_factory=dict)
    listed_at: float | None = None
    tokens_total: int = 0
    last_tps: float = 0.0


class Inference:
    """Routes calls to backends behind breakers and slots, and measures them."""

    def __init__(
        self,
        backends: Sequence[tuple[Backend, BackendLimits]],
        *,
        default_model: str,
        default_embedding_model: str,
        recorder: Recorder,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._recorder = recorder
        self._default_model = default_model
        self._default_embedding_model = default_embedding_model or default_model
        self._runtimes: dict[str, _Runtime] = {}
        for backend, limits in backends:
            breaker = CircuitBreaker(
                backend.name,
                failure_threshold=limits.failure_threshold,
                cooldown_seconds=limits.cooldown_seconds,
                clock=clock,
            )
            breaker.on_change = _notifier(recorder, backend.name)
            slots = Slots(
                backend.name,
                max_concurrency=limits.max_concurrency,
                max_queue=limits.max_queue,
                clock=clock,
            )
            self._runtimes[backend.name] = _Runtime(backend, breaker, slots)

    @property
    def default_model(self) -> str:
        """The model of requests that name none."""
        return self._default_model

    # Models -------------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """Every model of every backend, by backend then name.

        A backend that cannot be listed (down, breaker open) contributes the models it last
        listed or is configured with, marked not loaded.
        """
        runtimes = list(self._runtimes.values())
        await asyncio.gather(*(self._refresh(r) for r in runtimes))
        models: list[ModelInfo] = []
        for runtime in runtimes:
            known = dict(runtime.listed)
            for name in runtime.backend.known_models():
                known.setdefault(
                    name,
                    ModelInfo(name, runtime.backend.name, runtime.backend.kind, loaded=False),
                )
            models.extend(known[name] for name in sorted(known))
        return models

    async def _refresh(self, runtime: _Runtime) -> None:
        """List a backend through its breaker; on failure keep what it listed before."""
        try:
            permit = runtime.breaker.admit()
        except BackendUnavailableError:
            runtime.listed = {name: _not_loaded(info) for name, info in runtime.listed.items()}
            return
        try:
            listed = await runtime.backend.list_models()
        except BackendUnavailableError as exc:
            permit.fail(exc.reason)
            log.warning("inference.list_failed", backend=runtime.backend.name, error=exc.reason)
            runtime.listed = {name: _not_loaded(info) for name, info in runtime.listed.items()}
            return
        except BaseException:
            permit.release()
            raise
        permit.succeed()
        runtime.listed = {m.name: m for m in listed}
        runtime.listed_at = self._clock()

    async def _resolve(self, model: str) -> _Runtime:
        """The backend that owns ``model``.

        Raises:
            ModelNotFoundError: no backend offers it.
        """
        found = self._owner(model)
        if found is not None:
            return found
        stale = [
            r
            for r in self._runtimes.values()
            if r.listed_at is None or self._clock() - r.listed_at >= REFRESH_SECONDS
        ]
        await asyncio.gather(*(self._refresh(r) for r in stale))
        found = self._owner(model)
        if found is None:
            raise ModelNotFoundError(model)
        return found

    def _owner(self, model: str) -> _Runtime | None:
        for runtime in self._runtimes.values():
            if model in runtime.backend.known_models():
                return runtime
        for runtime in self._runtimes.values():
            if model in runtime.listed:
                return runtime
        return None

    # Generation ---------------------------------------------------------------------------

    async def generate(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        options: Sampling,
        *,
        stream: bool = True,
    ) -> AsyncIterator[GenerationEvent]:
        """Deltas, then one :class:`Done`. Closing the iterator stops generation at once.

        Raises:
            ModelNotFoundError, OptionRejectedError, BusyError, BackendUnavailableError.
        """
        started = self._clock()
        name = model or self._default_model
        runtime = await self._resolve(name)
        backend = runtime.backend
        violations = backend.unsupported(name, options)
        if violations:
            raise OptionRejectedError(violations)
        record = _Measure(backend.name, name, started, self._clock)
        try:
            permit = runtime.breaker.admit()
        except BackendUnavailableError:
            self._recorder.record(record.finish(Outcome.UNAVAILABLE))
            raise
        finished: Finished | None = None
        try:
            async with runtime.slots.hold() as queued:
                record.queued = queued
                events = backend.generate(name, messages, options, stream=stream)
                # Closed on every exit, so an early stop reaches the backend at once.
                async with contextlib.aclosing(events):
                    async for event in events:
                        if isinstance(event, TextChunk):
                            if not event.text:
                                continue
                            record.token()
                            yield Delta(event.text)
                        else:
                            finished = event
                            break
            if finished is None:
                raise BackendUnavailableError(backend.name, "the reply ended without finishing")
        except BackendUnavailableError as exc:
            permit.fail(exc.reason)
            self._recorder.record(record.finish(Outcome.UNAVAILABLE))
            raise
        except InferenceError as exc:
            permit.release()
            self._recorder.record(record.finish(_outcome_of(exc)))
            raise
        except BaseException:
            # Cancelled by the caller (or its deadline), or closed early.
            permit.release()
            self._recorder.record(record.finish(Outcome.CANCELLED))
            raise
        permit.succeed()
        done = record.done(finished)
        runtime.tokens_total += done.completion_tokens
        if done.timing.tokens_per_second:
            runtime.last_tps = done.timing.tokens_per_second
        self._recorder.record(record.finish(Outcome.OK, finished))
        yield done

    async def embed(self, model: str, inputs: Sequence[str]) -> EmbedResult:
        """One vector per input from ``model`` (the default embedding model if empty).

        Raises:
            ModelNotFoundError, BusyError, BackendUnavailableError, NotSupportedError.
        """
        name = model or self._default_embedding_model
        runtime = await self._resolve(name)
        permit = runtime.breaker.admit()
        try:
            async with runtime.slots.hold():
                result = await runtime.backend.embed(name, inputs)
        except BackendUnavailableError as exc:
            permit.fail(exc.reason)
            raise
        except BaseException:
            permit.release()
            raise
        permit.succeed()
        return EmbedResult(name, result.vectors, result.prompt_tokens)

    # Operations ---------------------------------------------------------------------------

    async def load(self, model: str) -> tuple[ModelInfo, float]:
        """Load and warm up ``model``; returns it and the milliseconds it took (0 if loaded)."""
        runtime = await self._resolve(model)
        permit = runtime.breaker.admit()
        started = self._clock()
        try:
            info_before = await self._info(runtime, model)
            if info_before.loaded:
                permit.release()
                return info_before, 0.0
            info = await runtime.backend.load(model)
        except BackendUnavailableError as exc:
            permit.fail(exc.reason)
            raise
        except BaseException:
            permit.release()
            raise
        permit.succeed()
        return info, (self._clock() - started) * 1e3

    async def unload(self, model: str) -> ModelInfo:
        """Free ``model``'s memory once its calls in flight are done."""
        runtime = await self._resolve(model)
        permit = runtime.breaker.admit()
        try:
            info = await runtime.backend.unload(model)
        except BackendUnavailableError as exc:
            permit.fail(exc.reason)
            raise
        except BaseException:
            permit.release()
            raise
        permit.succeed()
        return info

    async def _info(self, runtime: _Runtime, model: str) -> ModelInfo:
        for info in await runtime.backend.list_models():
            if info.name == model:
                return info
        raise ModelNotFoundError(model)

    def backends(self) -> list[BackendStatus]:
        """Every backend with its breaker and concurrency, by name."""
        return [self._status(self._runtimes[name]) for name in sorted(self._runtimes)]

    def backend(self, name: str) -> BackendStatus | None:
        """One backend, or ``None`` if no backend has that name."""
        runtime = self._runtimes.get(name)
        return None if runtime is None else self._status(runtime)

    def reset_breaker(self, name: str) -> BackendStatus | None:
        """Close ``name``'s breaker; ``None`` if no backend has that name."""
        runtime = self._runtimes.get(name)
        if runtime is None:
            return None
        runtime.breaker.reset()
        return self._status(runtime)

    def _status(self, runtime: _Runtime) -> BackendStatus:
        return BackendStatus(
            name=runtime.backend.name,
            kind=runtime.backend.kind,
            url=runtime.backend.url,
            breaker=runtime.breaker.snapshot(),
            max_concurrency=runtime.slots.max_concurrency,
            in_flight=runtime.slots.in_flight,
            max_queue=runtime.slots.max_queue,
            queued=runtime.slots.queued,
            tokens_generated_total=runtime.tokens_total,
            last_tokens_per_second=runtime.last_tps,
        )

    async def close(self) -> None:
        """Close every backend."""
        for runtime in self._runtimes.values():
            with contextlib.suppress(Exception):
                await runtime.backend.close()


class _Measure:
    """Timings of one generation as it runs."""

    def __init__(self, backend: str, model: str, started: float, clock: Callable[[], float]):
        self.backend = backend
        self.model = model
        self.started = started
        self.clock = clock
        self.queued = 0.0
        self.first: float | None = None
        self.last: float | None = None
        self.chunks = 0

    def token(self) -> None:
        now = self.clock()
        if self.first is None:
            self.first = now
        self.last = now
        self.chunks += 1

    def done(self, finished: Finished) -> Done:
        end = self.clock()
        completion = finished.completion_tokens
        # Tokens per second over the span between the first and the last text, from the
        # backend's own count (a chunk may hold several tokens).
        rate = tokens_per_second(completion, self.first, self.last)
        return Done(
            model=self.model,
            reason=finished.reason,
            prompt_tokens=finished.prompt_tokens,
            completion_tokens=completion,
            timing=Timing(
                time_to_first_token_ms=(
                    0.0 if self.first is None else (self.first - self.started) * 1e3
                ),
                total_ms=(end - self.started) * 1e3,
                tokens_per_second=rate,
                queued_ms=self.queued * 1e3,
            ),
        )

    def finish(self, outcome: str, finished: Finished | None = None) -> CallRecord:
        return CallRecord(
            backend=self.backend,
            model=self.model,
            outcome=outcome,
            prompt_tokens=finished.prompt_tokens if finished else 0,
            completion_tokens=finished.completion_tokens if finished else self.chunks,
            time_to_first_token_seconds=(None if self.first is None else self.first - self.started),
            total_seconds=self.clock() - self.started,
            queued_seconds=self.queued,
        )


def _outcome_of(exc: InferenceError) -> str:
    if isinstance(exc, BusyError):
        return Outcome.BUSY
    return Outcome.REJECTED


def _not_loaded(info: ModelInfo) -> ModelInfo:
    return ModelInfo(
        info.name,
        info.backend,
        info.kind,
        loaded=False,
        context_tokens=info.context_tokens,
        size_bytes=info.size_bytes,
        embeddings=info.embeddings,
    )


def _notifier(recorder: Recorder, backend: str) -> Callable[[BreakerState], None]:
    def changed(state: BreakerState) -> None:
        log.warning("inference.breaker", backend=backend, state=state.value)
        recorder.breaker_changed(backend, state)

    return changed
