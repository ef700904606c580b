"""The inference engine, called in process for an HTTP request, as its caller.

Each call is admitted by the service's :class:`~sutazai.runtime.auth.Guard` as the gRPC method
it stands for (``/models`` as ``ListModels``, a completion as ``GenerateStream``, ``/embeddings``
as ``Embed``): the bearer token verified again, the method's role, the per-user rate limit and
the audit of refusals, exactly as a gRPC call gets them. It is then validated by the inference
domain's rules and run on the same engine (slots, breakers, metrics). Every failure becomes
an :class:`~sutazai.services.inference.openai_api.errors.ApiError`: a fault's gRPC code picks
the HTTP status, its field violations the OpenAI parameter.

Serving the API inside the inference process spares every streamed token a second process, a
second gRPC stream and a second pass through Envoy (docs/benchmarks.md, "Inference and chat").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Mapping
from typing import Final, TypeVar

import grpc
from google.rpc import error_details_pb2

from sutazai.inference.v1 import inference_service_pb2
from sutazai.runtime.auth import Guard
from sutazai.runtime.faults import RpcStatusError, invalid_argument
from sutazai.services.inference.domain import (
    EmbedResult,
    GenerationEvent,
    ModelInfo,
    embedding_violations,
    generation_violations,
)
from sutazai.services.inference.engine import Inference
from sutazai.services.inference.errors import InferenceError
from sutazai.services.inference.handlers import fault_of
from sutazai.services.inference.openai_api.domain import ChatRequest, EmbeddingRequest, param_of
from sutazai.services.inference.openai_api.errors import ApiError, timed_out

_SERVICE: Final = inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name
LIST_MODELS: Final = f"/{_SERVICE}/ListModels"
GENERATE_STREAM: Final = f"/{_SERVICE}/GenerateStream"
EMBED: Final = f"/{_SERVICE}/Embed"

_PEER: Final = "unix:"
"""The peer every request comes from: Envoy, on the instance's HTTP socket (the guard then
keys an anonymous caller on the client address Envoy forwards)."""
_INT64: Final = 2**63
T = TypeVar("T")


class EngineCalls:
    """The engine's calls for the OpenAI-compatible API, each admitted as its gRPC method."""

    def __init__(self, engine: Inference, guard: Guard | None, *, unary_timeout: float) -> None:
        """Call ``engine`` behind ``guard`` (``None`` admits everything: tests only).

        Listing models and embedding get ``unary_timeout`` seconds.
        """
        self._engine = engine
        self._guard = guard
        self._unary_timeout = unary_timeout

    async def models(self, headers: Mapping[str, str]) -> list[ModelInfo]:
        """Every model of every backend."""
        await self._admit(LIST_MODELS, headers)
        return await _within(self._unary_timeout, self._engine.list_models())

    async def generate(
        self, headers: Mapping[str, str], request: ChatRequest
    ) -> AsyncGenerator[GenerationEvent, None]:
        """The reply to ``request``, delta by delta, then one ``Done``.

        Closing the iterator stops generation at once (the HTTP client went away).

        Raises:
            ApiError: refused, invalid, or the engine failed (before or after text flowed).

        """
        await self._admit(GENERATE_STREAM, headers)
        sampling = request.sampling
        violations = generation_violations(request.model, request.messages, sampling)
        if sampling.seed is not None and not -_INT64 <= sampling.seed < _INT64:
            violations["options.seed"] = "must fit in 64 bits"
        if violations:
            raise api_error(invalid_argument(violations), request)
        try:
            async for event in self._engine.generate(request.model, request.messages, sampling):
                yield event
        except InferenceError as exc:
            raise api_error(fault_of(exc), request) from exc

    async def embed(self, headers: Mapping[str, str], request: EmbeddingRequest) -> EmbedResult:
        """One vector per input."""
        await self._admit(EMBED, headers)
        violations = embedding_violations(request.model, request.inputs)
        if violations:
            raise api_error(invalid_argument(violations))
        try:
            return await _within(
                self._unary_timeout, self._engine.embed(request.model, request.inputs)
            )
        except InferenceError as exc:
            raise api_error(fault_of(exc)) from exc

    async def _admit(self, method: str, headers: Mapping[str, str]) -> None:
        """Admit the request as a call of ``method``; its caller is then the current identity."""
        if self._guard is None:
            return
        policy = self._guard.policy(method)
        code = grpc.StatusCode.OK
        try:
            await self._guard.admit(policy, method, headers, _PEER)
        except RpcStatusError as exc:
            code = exc.code
            raise api_error(exc) from exc
        finally:
            await self._guard.settle(method, policy, code)


async def _within(seconds: float, call: Awaitable[T]) -> T:
    """``call``'s result, or OpenAI's 504 after ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            return await call
    except TimeoutError:
        raise timed_out() from None


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


def api_error(fault: RpcStatusError, request: ChatRequest | None = None) -> ApiError:
    """The OpenAI error a fault stands for.

    INVALID_ARGUMENT names the parameter of its first field violation; NOT_FOUND of a model is
    OpenAI's ``model_not_found``; RESOURCE_EXHAUSTED (a full queue, a rate limit) is 429 and
    UNAVAILABLE (a backend down, its breaker open) 503, both with the retry delay when known.
    """
    status, kind, error_code = _STATUS.get(fault.code, (500, "server_error", "internal_error"))
    message = fault.message or fault.code.name
    param: str | None = None
    retry_after: float | None = None
    fields: dict[str, str] = {}
    for detail in fault.details:
        if isinstance(detail, error_details_pb2.BadRequest):
            fields.update((v.field, v.description) for v in detail.field_violations)
        elif isinstance(detail, error_details_pb2.RetryInfo):
            delay = detail.retry_delay
            retry_after = delay.seconds + delay.nanos / 1e9
    if fields:
        field, description = next(iter(fields.items()))
        param = param_of(field, request)
        message = f"{param}: {description}" if len(fields) == 1 else message
    if fault.code is grpc.StatusCode.NOT_FOUND and "model" in message.lower():
        param, error_code = "model", "model_not_found"
    return ApiError(
        status,
        message,
        kind=kind,
        param=param,
        code=error_code,
        retry_after_seconds=retry_after,
    )
