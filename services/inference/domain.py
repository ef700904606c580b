"""What a generation is, what a backend must do, and which requests are acceptable: no I/O.

A backend (the embedded llama.cpp runtime, an Ollama server, an OpenAI-compatible server)
implements :class:`Backend`; the engine (:mod:`.engine`) puts each behind its own circuit
breaker and bounded slots. The limits below are the ones the proto comments state; what a
particular backend cannot honour it reports with :meth:`Backend.unsupported`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

MAX_MESSAGES = 256
MAX_CONTENT_CHARS = 32_768
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 64
MAX_MODEL_NAME_CHARS = 256
MAX_EMBED_INPUTS = 64
MAX_EMBED_INPUT_CHARS = 8_192
MAX_BACKEND_NAME_CHARS = 64
MAX_TOKENS = 4096
MAX_TOP_K = 1000
MAX_SEED = 2**32 - 2
"""llama.cpp takes 32-bit seeds, and 2**32 - 1 (LLAMA_DEFAULT_SEED) means "random"."""


class Role(enum.Enum):
    """Who wrote a message."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class BackendKind(enum.Enum):
    """What runs a model."""

    EMBEDDED = "embedded"
    OLLAMA = "ollama"
    OPENAI_COMPATIBLE = "openai_compatible"


class FinishReason(enum.Enum):
    """Why generation ended."""

    STOP = "stop"
    LENGTH = "length"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of a conversation."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling options; ``None`` (or no stop sequence) leaves the model's default."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    repeat_penalty: float | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model a backend offers."""

    name: str
    backend: str
    kind: BackendKind
    loaded: bool
    context_tokens: int = 0
    size_bytes: int = 0
    embeddings: bool = False


@dataclass(frozen=True, slots=True)
class TextChunk:
    """Text a backend generated since its previous chunk."""

    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    """A backend's reply is complete."""

    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


BackendEvent = TextChunk | Finished


@dataclass(frozen=True, slots=True)
class Embedded:
    """One vector per input, in order, and the tokens the inputs took."""

    vectors: list[list[float]]
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class Timing:
    """Timings of one call, measured on the inference service."""

    time_to_first_token_ms: float
    total_ms: float
    tokens_per_second: float
    queued_ms: float


@dataclass(frozen=True, slots=True)
class Delta:
    """New text for the caller."""

    text: str


@dataclass(frozen=True, slots=True)
class Done:
    """The end of a reply, with its counts and timings."""

    model: str
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    timing: Timing


GenerationEvent = Delta | Done


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """The answer to an embedding request."""

    model: str
    vectors: list[list[float]] = field(default_factory=list)
    prompt_tokens: int = 0


class Backend(Protocol):
    """A place models run. Implementations do the I/O; the engine adds breaker and limits.

    Failures are :class:`~.errors.InferenceError` subclasses: ``BackendUnavailableError`` for
    the backend's own failures (they count against its breaker), ``ModelNotFoundError`` and
    ``OptionRejectedError`` for the request's.
    """

    @property
    def name(self) -> str:
        """Its name, e.g. ``embedded``."""

    @property
    def kind(self) -> BackendKind:
        """What it is."""

    @property
    def url(self) -> str:
        """Where it is, without credentials; empty for the embedded backend."""

    def known_models(self) -> Sequence[str]:
        """Models it offers without being asked (configured or local)."""

    def unsupported(self, model: str, options: Sampling) -> dict[str, str]:
        """Field violations for the options this backend cannot honour (empty if none)."""

    async def list_models(self) -> list[ModelInfo]:
        """Every model it offers now."""

    def generate(
        self, model: str, messages: Sequence[ChatMessage], options: Sampling, *, stream: bool
    ) -> AsyncGenerator[BackendEvent, None]:
        """Text chunks then exactly one :class:`Finished`; stop at once when closed.

        With ``stream`` false the backend may answer in one chunk.
        """

    async def embed(self, model: str, inputs: Sequence[str]) -> Embedded:
        """One vector per input."""

    async def load(self, model: str) -> ModelInfo:
        """Load and warm up ``model`` (a no-op when it is loaded)."""

    async def unload(self, model: str) -> ModelInfo:
        """Free ``model``'s memory once calls in flight on it have finished."""

    async def close(self) -> None:
        """Release connections, threads and models."""


def message_violations(messages: Sequence[ChatMessage | None]) -> dict[str, str]:
    """Violations of the conversation rules (``None`` stands for an unknown role)."""
    if not messages:
        return {"messages": "at least one message is required"}
    if len(messages) > MAX_MESSAGES:
        return {"messages": f"at most {MAX_MESSAGES} messages"}
    violations: dict[str, str] = {}
    for index, message in enumerate(messages):
        if message is None:
            violations[f"messages[{index}].role"] = "must be SYSTEM, USER or ASSISTANT"
            continue
        if not 0 < len(message.content) <= MAX_CONTENT_CHARS:
            violations[f"messages[{index}].content"] = (
                f"must be 1 to {MAX_CONTENT_CHARS} characters"
            )
        elif not message.content.strip():
            violations[f"messages[{index}].content"] = "must not be only whitespace"
    last = messages[-1]
    if last is not None and last.role is not Role.USER:
        violations.setdefault(
            f"messages[{len(messages) - 1}].role", "the last message must be the user's"
        )
    return violations


def option_violations(options: Sampling) -> dict[str, str]:
    """Violations of the ranges every backend shares (the proto comments)."""
    violations: dict[str, str] = {}
    if options.temperature is not None and not 0.0 <= options.temperature <= 2.0:
        violations["options.temperature"] = "must be 0 to 2"
    if options.top_p is not None and not 0.0 < options.top_p <= 1.0:
        violations["options.top_p"] = "must be greater than 0 and at most 1"
    if options.top_k is not None and not 1 <= options.top_k <= MAX_TOP_K:
        violations["options.top_k"] = f"must be 1 to {MAX_TOP_K}"
    if options.max_tokens is not None and not 1 <= options.max_tokens <= MAX_TOKENS:
        violations["options.max_tokens"] = f"must be 1 to {MAX_TOKENS}"
    if options.repeat_penalty is not None and not 0.5 <= options.repeat_penalty <= 2.0:
        violations["options.repeat_penalty"] = "must be 0.5 to 2"
    if len(options.stop) > MAX_STOP_SEQUENCES:
        violations["options.stop"] = f"at most {MAX_STOP_SEQUENCES} sequences"
    else:
        for index, sequence in enumerate(options.stop):
            if not 0 < len(sequence) <= MAX_STOP_CHARS:
                violations[f"options.stop[{index}]"] = f"must be 1 to {MAX_STOP_CHARS} characters"
    return violations


def name_violation(
    field_name: str, value: str, limit: int = MAX_MODEL_NAME_CHARS
) -> dict[str, str]:
    """A violation if a model or backend name is too long or not printable."""
    if len(value) > limit:
        return {field_name: f"at most {limit} characters"}
    if value and not value.isprintable():
        return {field_name: "must be printable characters"}
    return {}


def embed_violations(inputs: Sequence[str]) -> dict[str, str]:
    """Violations of the embedding input rules."""
    if not inputs:
        return {"inputs": "at least one input is required"}
    if len(inputs) > MAX_EMBED_INPUTS:
        return {"inputs": f"at most {MAX_EMBED_INPUTS} inputs"}
    return {
        f"inputs[{index}]": f"must be 1 to {MAX_EMBED_INPUT_CHARS} characters"
        for index, text in enumerate(inputs)
        if not 0 < len(text) <= MAX_EMBED_INPUT_CHARS
    }


def uint32_seed_violation(options: Sampling, backend: str) -> dict[str, str]:
    """llama.cpp-based backends take 32-bit seeds; others would be changed silently.

    2**32 - 1 is refused too: llama.cpp reads it as "pick a random seed", so it would not
    reproduce anything.
    """
    if options.seed is not None and not 0 <= options.seed <= MAX_SEED:
        return {"options.seed": f"the {backend} backend takes seeds 0 to {MAX_SEED}"}
    return {}


def tokens_per_second(tokens: int, first: float | None, last: float | None) -> float:
    """Generated tokens per second from the first token to the last (0 when not measurable)."""
    if tokens < 2 or first is None or last is None or last <= first:
        return 0.0
    rate = (tokens - 1) / (last - first)
    return rate if math.isfinite(rate) else 0.0


def generation_violations(
    model: str, messages: Sequence[ChatMessage | None], options: Sampling
) -> dict[str, str]:
    """Every violation of a generation request: model name, conversation, options.

    The one check of a generation, whether it came over gRPC, NATS or the OpenAI-compatible API.
    """
    return {
        **name_violation("model", model),
        **message_violations(messages),
        **option_violations(options),
    }


def embedding_violations(model: str, inputs: Sequence[str]) -> dict[str, str]:
    """Every violation of an embedding request: model name and inputs."""
    return {**name_violation("model", model), **embed_violations(inputs)}
