"""Calls to ``InferenceService`` through the edge, as the caller; failures as OpenAI errors.

Every call goes through Envoy (the mesh's one way in) with the caller's own bearer token, so
the inference service sees the real user (its guard, roles, per-user limits and audit), and
with the request id Envoy gave the HTTP request, so one id follows the call through both hops.
Nothing is stored: like OpenAI's API, each request carries the whole conversation.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from sutazai.client.statuses import violations
from sutazai.inference.v1 import inference_service_pb2 as pb
from sutazai.inference.v1.inference_service_pb2_grpc import InferenceServiceStub
from sutazai.runtime import context as rpc_context
from sutazai.runtime.interceptors import PropagatingClientInterceptor
from sutazai.services.openai.domain import (
    ChatRequest,
    EmbeddingRequest,
    ModelEntry,
    Role,
    param_of,
)
from sutazai.services.openai.errors import ApiError

_ROLES = {
    Role.SYSTEM: pb.MESSAGE_ROLE_SYSTEM,
    Role.USER: pb.MESSAGE_ROLE_USER,
    Role.ASSISTANT: pb.MESSAGE_ROLE_ASSISTANT,
}
FINISH_REASONS = {pb.FINISH_REASON_STOP: "stop", pb.FINISH_REASON_LENGTH: "length"}
_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class Delta:
    """Text generated since the previous delta."""

    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The end of a reply."""

    model: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Embeddings:
    """The vectors of an embeddings request."""

    model: str
    vectors: list[list[float]]
    prompt_tokens: int


class Inference:
    """The inference service, reached through the edge on ``channel`` (one per process)."""

    def __init__(
        self, channel: grpc.aio.Channel, *, unary_timeout: float, generation_timeout: float
    ) -> None:
        """Call over ``channel``.

        Unary calls get ``unary_timeout`` seconds, a whole generation ``generation_timeout``.
        """
        self._stub = InferenceServiceStub(channel)
        self._unary_timeout = unary_timeout
        self._generation_timeout = generation_timeout

    async def models(self, token: str) -> list[ModelEntry]:
        """Every model of every backend."""
        try:
            reply: pb.ListModelsResponse = await self._stub.ListModels(
                pb.ListModelsRequest(), timeout=self._unary_timeout, metadata=_metadata(token)
            )
        except grpc.aio.AioRpcError as exc:
            raise api_error(exc) from exc
        return [ModelEntry(name=m.name, backend=m.backend) for m in reply.models]

    async def generate(
        self, token: str, request: ChatRequest
    ) -> AsyncGenerator[Delta | Finished, None]:
        """The reply to ``request``, delta by delta, then :class:`Finished`.

        Always the streaming call, also for a non-streaming completion: a stream has no
        whole-call timeout at the edge (a unary call is cut at 15 s, shorter than a long
        generation), and stopping to read it (the HTTP client went away) cancels generation.

        Raises:
            ApiError: the call failed, before or after text started to flow.

        """
        call = self._stub.GenerateStream(
            _generate_request(request),
            timeout=self._generation_timeout,
            metadata=_metadata(token),
        )
        try:
            async for event in call:
                kind = event.WhichOneof("event")
                if kind == "delta":
                    yield Delta(event.delta.text)
                elif kind == "done":
                    done = event.done
                    yield Finished(
                        model=done.model,
                        finish_reason=FINISH_REASONS.get(done.finish_reason, "stop"),
                        prompt_tokens=done.usage.prompt_tokens,
                        completion_tokens=done.usage.completion_tokens,
                    )
                    return
                elif kind == "error":
                    # The same status follows as the call's; read it from there.
                    continue
        except grpc.aio.AioRpcError as exc:
            raise api_error(exc, request) from exc
        finally:
            call.cancel()
        raise ApiError(503, "the reply ended without finishing", kind="server_error")

    async def embed(self, token: str, request: EmbeddingRequest) -> Embeddings:
        """One vector per input."""
        try:
            reply: pb.EmbedResponse = await self._stub.Embed(
                pb.EmbedRequest(model=request.model, inputs=request.inputs),
                timeout=self._unary_timeout,
                metadata=_metadata(token),
            )
        except grpc.aio.AioRpcError as exc:
            raise api_error(exc) from exc
        return Embeddings(
            model=reply.model,
            vectors=[list(e.values) for e in reply.embeddings],
            prompt_tokens=reply.prompt_tokens,
        )


def edge_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """What the channel to the edge carries: the request id and the remaining deadline."""
    return [PropagatingClientInterceptor()]


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    metadata = [("authorization", f"Bearer {token}")]
    # The unary interceptor adds the request id itself; the stream call needs it here too.
    request_id = rpc_context.request_id.get()
    if request_id is not None:
        metadata.append((rpc_context.REQUEST_ID_HEADER, request_id))
    return tuple(metadata)


def _generate_request(request: ChatRequest) -> pb.GenerateStreamRequest:
    sampling = request.sampling
    options = pb.SamplingOptions(stop=sampling.stop)
    if sampling.temperature is not None:
        options.temperature = sampling.temperature
    if sampling.top_p is not None:
        options.top_p = sampling.top_p
    if sampling.top_k is not None:
        _set_unsigned(options, "top_k", sampling.top_k, request)
    if sampling.max_tokens is not None:
        _set_unsigned(options, "max_tokens", sampling.max_tokens, request)
    if sampling.seed is not None:
        if not -(2**63) <= sampling.seed < 2**63:
            raise ApiError(400, "seed is out of range", param="seed")
        options.seed = sampling.seed
    if sampling.repeat_penalty is not None:
        options.repeat_penalty = sampling.repeat_penalty
    return pb.GenerateStreamRequest(
        model=request.model,
        messages=[pb.Message(role=_ROLES[m.role], content=m.content) for m in request.messages],
        options=options,
    )


def _set_unsigned(options: pb.SamplingOptions, name: str, value: int, request: ChatRequest) -> None:
    # The proto field is uint32: a negative or huge value would not even encode.
    if not 1 <= value < 2**32:
        raise ApiError(
            400, f"{param_of(name, request)} must be at least 1", param=param_of(name, request)
        )
    setattr(options, name, value)


_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error", None),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error", None),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error", None),
    grpc.StatusCode.UNAUTHENTICATED: (401, "invalid_request_error", "invalid_api_key"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error", "permission_denied"),
    grpc.StatusCode.NOT_FOUND: (404, "invalid_request_error", "not_found"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error", "rate_limit_exceeded"),
    grpc.StatusCode.UNAVAILABLE: (503, "server_error", "service_unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "server_error", "timeout"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "server_error", "not_implemented"),
}


def api_error(exc: grpc.aio.AioRpcError, request: ChatRequest | None = None) -> ApiError:
    """The OpenAI error a failed inference call stands for.

    INVALID_ARGUMENT names the parameter of its first field violation; NOT_FOUND of a model is
    OpenAI's ``model_not_found``; RESOURCE_EXHAUSTED (a full queue, a rate limit) is 429 and
    UNAVAILABLE (a backend down, its breaker open) 503, both with the server's retry delay.
    """
    code = exc.code()
    message = exc.details() or code.name
    status, kind, error_code = _STATUS.get(code, (500, "server_error", "internal_error"))
    param: str | None = None
    fields = violations(exc)
    if fields:
        field, description = next(iter(fields.items()))
        param = param_of(field, request)
        message = f"{param}: {description}" if len(fields) == 1 else message
    if code == grpc.StatusCode.NOT_FOUND and "model" in message.lower():
        param, error_code = "model", "model_not_found"
    return ApiError(
        status,
        message,
        kind=kind,
        param=param,
        code=error_code,
        retry_after_seconds=_retry_after(exc),
    )


def _retry_after(exc: grpc.aio.AioRpcError) -> float | None:
    for key, value in exc.trailing_metadata() or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
                return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None
