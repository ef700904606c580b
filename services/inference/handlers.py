"""gRPC handlers of ``sutazai.inference.v1.InferenceService``: validation and translation.

Requests are checked against the proto's rules here (every violation named by its field), then
run by the engine; the engine's errors become statuses built by :mod:`sutazai.runtime.faults`.
A stream that fails after its first delta ends with an ``error`` message (so a REST client, who
sees HTTP 200 by then, can tell a failed stream from a finished one) and the same gRPC status;
one that fails before any message is just the status (HTTP 4xx/5xx for REST).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2

from sutazai.inference.v1 import inference_service_pb2 as pb
from sutazai.inference.v1 import inference_service_pb2_grpc as pb_grpc
from sutazai.runtime.faults import (
    RpcStatusError,
    failed_precondition,
    invalid_argument,
    not_found,
    resource_exhausted,
    unavailable,
)
from sutazai.services.inference.breaker import BreakerState
from sutazai.services.inference.domain import (
    MAX_BACKEND_NAME_CHARS,
    BackendKind,
    ChatMessage,
    Delta,
    Done,
    FinishReason,
    ModelInfo,
    Role,
    Sampling,
    Timing,
    embedding_violations,
    generation_violations,
    name_violation,
)
from sutazai.services.inference.engine import BackendStatus, Inference
from sutazai.services.inference.errors import (
    BackendUnavailableError,
    BreakerOpenError,
    BusyError,
    InferenceError,
    ModelNotFoundError,
    NotSupportedError,
    OptionRejectedError,
)

_ROLES = {
    pb.MESSAGE_ROLE_SYSTEM: Role.SYSTEM,
    pb.MESSAGE_ROLE_USER: Role.USER,
    pb.MESSAGE_ROLE_ASSISTANT: Role.ASSISTANT,
}
_KINDS = {
    BackendKind.EMBEDDED: pb.BACKEND_KIND_EMBEDDED,
    BackendKind.OLLAMA: pb.BACKEND_KIND_OLLAMA,
    BackendKind.OPENAI_COMPATIBLE: pb.BACKEND_KIND_OPENAI_COMPATIBLE,
}
_REASONS = {FinishReason.STOP: pb.FINISH_REASON_STOP, FinishReason.LENGTH: pb.FINISH_REASON_LENGTH}
_BREAKER_STATES = {
    BreakerState.CLOSED: pb.BREAKER_STATE_CLOSED,
    BreakerState.OPEN: pb.BREAKER_STATE_OPEN,
    BreakerState.HALF_OPEN: pb.BREAKER_STATE_HALF_OPEN,
}


class InferenceHandlers(pb_grpc.InferenceServiceServicer):
    """Validates requests, runs them on the engine, renders the answers."""

    def __init__(self, engine: Inference) -> None:
        self._engine = engine

    async def ListModels(  # noqa: N802 - generated servicer method name
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        """Every model of every backend."""
        models = await self._engine.list_models()
        return pb.ListModelsResponse(
            models=[model_proto(m) for m in models], default_model=self._engine.default_model
        )

    async def Generate(  # noqa: N802 - generated servicer method name
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateResponse:
        """The whole reply at once."""
        return await generate_response(self._engine, request)

    async def GenerateStream(  # noqa: N802 - generated servicer method name
        self, request: pb.GenerateStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateStreamResponse]:
        """Deltas as the model produces them, then ``done`` (or ``error``) last."""
        messages, options = _parsed(request)
        started = False
        try:
            async for event in self._engine.generate(request.model, messages, options):
                if isinstance(event, Delta):
                    started = True
                    yield pb.GenerateStreamResponse(delta=pb.TextDelta(text=event.text))
                else:
                    yield pb.GenerateStreamResponse(
                        done=pb.GenerateDone(
                            model=event.model,
                            finish_reason=_REASONS[event.reason],
                            usage=pb.Usage(
                                prompt_tokens=event.prompt_tokens,
                                completion_tokens=event.completion_tokens,
                            ),
                            timing=_timing(event.timing),
                        )
                    )
        except InferenceError as exc:
            fault = fault_of(exc)
            if started:
                yield pb.GenerateStreamResponse(error=status_proto(fault))
            raise fault from exc

    async def Embed(  # noqa: N802 - generated servicer method name
        self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedResponse:
        """One vector per input."""
        violations = embedding_violations(request.model, request.inputs)
        if violations:
            raise invalid_argument(violations)
        try:
            result = await self._engine.embed(request.model, list(request.inputs))
        except InferenceError as exc:
            raise fault_of(exc) from exc
        return pb.EmbedResponse(
            model=result.model,
            embeddings=[pb.Embedding(values=v) for v in result.vectors],
            prompt_tokens=result.prompt_tokens,
        )

    async def LoadModel(  # noqa: N802 - generated servicer method name
        self, request: pb.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.LoadModelResponse:
        """Load and warm up a model."""
        _require_model(request.model)
        try:
            info, load_ms = await self._engine.load(request.model)
        except InferenceError as exc:
            raise fault_of(exc) from exc
        return pb.LoadModelResponse(model=model_proto(info), load_ms=load_ms)

    async def UnloadModel(  # noqa: N802 - generated servicer method name
        self, request: pb.UnloadModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnloadModelResponse:
        """Free a model's memory."""
        _require_model(request.model)
        try:
            info = await self._engine.unload(request.model)
        except InferenceError as exc:
            raise fault_of(exc) from exc
        return pb.UnloadModelResponse(model=model_proto(info))

    async def ListBackends(  # noqa: N802 - generated servicer method name
        self, request: pb.ListBackendsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListBackendsResponse:
        """Every backend with its breaker and concurrency."""
        return pb.ListBackendsResponse(backends=[backend_proto(b) for b in self._engine.backends()])

    async def ResetBreaker(  # noqa: N802 - generated servicer method name
        self, request: pb.ResetBreakerRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResetBreakerResponse:
        """Close a backend's breaker."""
        violations = name_violation("backend", request.backend, MAX_BACKEND_NAME_CHARS)
        if not request.backend:
            violations = {"backend": "required"}
        if violations:
            raise invalid_argument(violations)
        status = self._engine.reset_breaker(request.backend)
        if status is None:
            raise not_found("backend", request.backend)
        return pb.ResetBreakerResponse(backend=backend_proto(status))


async def generate_response(engine: Inference, request: pb.GenerateRequest) -> pb.GenerateResponse:
    """Validate a GenerateRequest and run it on the engine: the whole reply at once.

    The one path of a generation whether it came over gRPC (``Generate``) or NATS (the agents'
    ``sutazai.inference.generate``): the same validation, slots, breakers and metrics.

    Raises:
        RpcStatusError: the request is invalid, or the engine failed (its status).

    """
    messages, options = _parsed(request)
    parts: list[str] = []
    done: Done | None = None
    try:
        async for event in engine.generate(request.model, messages, options, stream=False):
            if isinstance(event, Delta):
                parts.append(event.text)
            else:
                done = event
    except InferenceError as exc:
        raise fault_of(exc) from exc
    if done is None:  # the engine always ends with Done; this guards the invariant
        raise unavailable("the reply ended without finishing")
    return pb.GenerateResponse(
        model=done.model,
        text="".join(parts),
        finish_reason=_REASONS[done.reason],
        usage=pb.Usage(prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens),
        timing=_timing(done.timing),
    )


def _parsed(
    request: pb.GenerateRequest | pb.GenerateStreamRequest,
) -> tuple[list[ChatMessage], Sampling]:
    """The conversation and options of a request, or INVALID_ARGUMENT naming each bad field."""
    messages = [
        ChatMessage(_ROLES[m.role], m.content) if m.role in _ROLES else None
        for m in request.messages
    ]
    options = _sampling(request.options)
    violations = generation_violations(request.model, messages, options)
    if violations:
        raise invalid_argument(violations)
    return [m for m in messages if m is not None], options


def _sampling(options: pb.SamplingOptions) -> Sampling:
    return Sampling(
        temperature=options.temperature if options.HasField("temperature") else None,
        top_p=options.top_p if options.HasField("top_p") else None,
        top_k=options.top_k if options.HasField("top_k") else None,
        max_tokens=options.max_tokens if options.HasField("max_tokens") else None,
        stop=tuple(options.stop),
        seed=options.seed if options.HasField("seed") else None,
        repeat_penalty=options.repeat_penalty if options.HasField("repeat_penalty") else None,
    )


def _require_model(model: str) -> None:
    violations = name_violation("model", model) if model else {"model": "required"}
    if violations:
        raise invalid_argument(violations)


def fault_of(exc: InferenceError) -> RpcStatusError:
    """The gRPC status an engine error stands for."""
    if isinstance(exc, ModelNotFoundError):
        return not_found("model", exc.model)
    if isinstance(exc, OptionRejectedError):
        return invalid_argument(exc.violations)
    if isinstance(exc, BusyError):
        return resource_exhausted(str(exc), exc.retry_after_seconds)
    if isinstance(exc, BreakerOpenError):
        return unavailable(str(exc), exc.retry_after_seconds)
    if isinstance(exc, BackendUnavailableError):
        return unavailable(str(exc))
    if isinstance(exc, NotSupportedError):
        return failed_precondition(str(exc))
    return unavailable(str(exc))


def status_proto(fault: RpcStatusError) -> status_pb2.Status:
    """A fault as the ``google.rpc.Status`` message a stream's ``error`` event carries."""
    details = []
    for detail in fault.details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        details.append(holder)
    return status_pb2.Status(code=fault.code.value[0], message=fault.message, details=details)


def model_proto(model: ModelInfo) -> pb.Model:
    """A model as the API shows it."""
    return pb.Model(
        name=model.name,
        backend=model.backend,
        backend_kind=_KINDS[model.kind],
        loaded=model.loaded,
        context_tokens=model.context_tokens,
        size_bytes=model.size_bytes,
        embeddings=model.embeddings,
    )


def backend_proto(status: BackendStatus) -> pb.Backend:
    """A backend as the API shows it."""
    snapshot = status.breaker
    breaker = pb.Breaker(
        state=_BREAKER_STATES[snapshot.state],
        consecutive_failures=snapshot.consecutive_failures,
        failure_threshold=snapshot.failure_threshold,
        cooldown_seconds=snapshot.cooldown_seconds,
        last_error=snapshot.last_error,
        successes_total=snapshot.successes_total,
        failures_total=snapshot.failures_total,
        rejected_total=snapshot.rejected_total,
    )
    if snapshot.opened_at is not None:
        breaker.opened_at.FromDatetime(snapshot.opened_at)
    return pb.Backend(
        name=status.name,
        kind=_KINDS[status.kind],
        url=status.url,
        breaker=breaker,
        max_concurrency=status.max_concurrency,
        in_flight=status.in_flight,
        max_queue=status.max_queue,
        queued=status.queued,
        tokens_generated_total=status.tokens_generated_total,
        last_tokens_per_second=status.last_tokens_per_second,
    )


def _timing(timing: Timing) -> pb.Timing:
    return pb.Timing(
        time_to_first_token_ms=timing.time_to_first_token_ms,
        total_ms=timing.total_ms,
        tokens_per_second=timing.tokens_per_second,
        queued_ms=timing.queued_ms,
    )
