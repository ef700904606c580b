"""Interceptors that give every RPC the mesh's cross-cutting behaviour.

Server side, :class:`ServerInterceptor` per call: takes or creates the request id and binds it
to the logs, records the caller's deadline for outbound calls, maps :class:`RpcStatusError` to a
rich status (unexpected exceptions to INTERNAL without leaking internals), records metrics.
Client side, :class:`PropagatingClientInterceptor` forwards the request id and the remaining
deadline, so a chain of calls never outlives the first caller's deadline.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import grpc
import structlog
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from sutazai.runtime import context as rpc_context
from sutazai.runtime.faults import RpcStatusError, internal, invalid_argument
from sutazai.runtime.metrics import RpcMetrics
from sutazai.runtime.roles import MethodAccess

log = structlog.get_logger(__name__)

# grpcio ships no type information; handlers are `grpc.RpcMethodHandler` at run time.
_Handler = Any


class _Outcome:
    """The status code an RPC ended with, and its access policy once admitted."""

    __slots__ = ("code", "policy")

    def __init__(self) -> None:
        self.code = grpc.StatusCode.OK
        self.policy: MethodAccess | None = None


class Admission(Protocol):
    """Access control of a server: a service's ``Guard``, or the gateway's token check."""

    def policy(self, method: str) -> MethodAccess:
        """The access policy of a gRPC path."""

    async def admit(
        self, policy: MethodAccess, method: str, metadata: Mapping[str, str], peer: str
    ) -> None:
        """Admit the call or raise ``RpcStatusError``."""

    async def settle(self, method: str, policy: MethodAccess, code: grpc.StatusCode) -> None:
        """Record the finished call (e.g. audit it)."""


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Request id, deadline, access control, fault mapping and metrics for every RPC."""

    def __init__(self, metrics: RpcMetrics, guard: Admission | None = None) -> None:
        """Build the interceptor; without a ``guard`` every call is admitted (tests, tools)."""
        self._metrics = metrics
        self._guard = guard

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        """Wrap the handler of the called method (unknown methods pass through: UNIMPLEMENTED)."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        decode = _decoder(handler.request_deserializer)
        # Requests reach the wrappers as raw bytes: grpc's own decoding failure is UNKNOWN
        # (a server fault to the caller), while undecodable input is the caller's.
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary, decode),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream, decode),
                response_serializer=handler.response_serializer,
            )
        decode_each = _stream_decoder(decode)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(method, handler.stream_unary, decode_each),
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(method, handler.stream_stream, decode_each),
            response_serializer=handler.response_serializer,
        )

    def _wrap_unary(
        self,
        method: str,
        behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]],
        decode: Callable[[Any], Any],
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._call(method, context) as outcome:
                try:
                    await self._admit(method, context, outcome)
                    return await behavior(decode(request), context)
                except Exception as exc:
                    await _answer_failure(exc, method, context, outcome)

        return unary

    def _wrap_stream(
        self,
        method: str,
        behavior: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]],
        decode: Callable[[Any], Any],
    ) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with self._call(method, context) as outcome:
                try:
                    await self._admit(method, context, outcome)
                    async for response in behavior(decode(request), context):
                        yield response
                except Exception as exc:
                    await _answer_failure(exc, method, context, outcome)

        return stream

    async def _admit(
        self, method: str, context: grpc.aio.ServicerContext, outcome: _Outcome
    ) -> None:
        if self._guard is None:
            return
        # Set before admitting, so a refused call is settled (audited) too.
        outcome.policy = self._guard.policy(method)
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        await self._guard.admit(outcome.policy, method, metadata, context.peer())

    @asynccontextmanager
    async def _call(
        self, method: str, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[_Outcome]:
        metadata = dict(context.invocation_metadata() or ())
        request_id = str(metadata.get(rpc_context.REQUEST_ID_HEADER) or uuid.uuid4())
        remaining = context.time_remaining()
        started = time.monotonic()
        rid_token = rpc_context.request_id.set(request_id)
        deadline_token = rpc_context.deadline.set(
            None if remaining is None else started + remaining
        )
        context.set_trailing_metadata(((rpc_context.REQUEST_ID_HEADER, request_id),))
        outcome = _Outcome()
        with structlog.contextvars.bound_contextvars(request_id=request_id, grpc_method=method):
            try:
                yield outcome
            finally:
                if self._guard is not None and outcome.policy is not None:
                    await self._guard.settle(method, outcome.policy, outcome.code)
                elapsed = time.monotonic() - started
                self._metrics.handled.labels(method, outcome.code.name).inc()
                self._metrics.latency.labels(method).observe(elapsed)
                log.debug("rpc.done", grpc_code=outcome.code.name, ms=round(elapsed * 1e3, 3))
                rpc_context.deadline.reset(deadline_token)
                rpc_context.request_id.reset(rid_token)


async def _answer_failure(
    exc: Exception, method: str, context: grpc.aio.ServicerContext, outcome: _Outcome
) -> None:
    """End a failed call with the right status: the fault's, the abort's, or INTERNAL.

    Always raises (grpc's AbortError), which is how a handler's status reaches the caller.
    """
    if isinstance(exc, grpc.aio.AbortError):
        outcome.code = context.code() or grpc.StatusCode.UNKNOWN
        raise exc
    if isinstance(exc, RpcStatusError):
        fault = exc
    else:
        log.error("rpc.failed", grpc_method=method, exc_info=exc)
        fault = internal(_internal_message())
    outcome.code = fault.code
    await context.abort_with_status(fault.to_status())


def _decoder(deserializer: Callable[[bytes], Any] | None) -> Callable[[Any], Any]:
    """Decode a raw request, answering INVALID_ARGUMENT for bytes that are not the message."""
    if deserializer is None:
        return lambda request: request

    def decode(raw: bytes) -> Any:
        try:
            request = deserializer(raw)
        except DecodeError as exc:
            raise invalid_argument(
                {"request": f"not a valid request message: {exc}"}, "malformed request message"
            ) from exc
        if isinstance(request, Message):
            violations = dict.fromkeys(_nul_fields(request), "must not contain NUL characters")
            if violations:
                raise invalid_argument(violations)
        return request

    return decode


def _nul_fields(message: Message, prefix: str = "") -> Iterator[str]:
    """Paths of the string fields (nested ones too) that hold a NUL character.

    No text the mesh stores or compares may carry one (PostgreSQL refuses it outright), so it is
    refused at the door for every RPC rather than failing deep inside a handler.
    """
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        entry_type = field.message_type
        if entry_type is not None:
            if entry_type.GetOptions().map_entry:
                values_are_messages = (
                    entry_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE
                )
                for key, item in value.items():
                    entry = f"{path}[{key!r}]"
                    if isinstance(key, str) and "\x00" in key:
                        yield entry
                    if values_are_messages:
                        yield from _nul_fields(item, f"{entry}.")
                    elif isinstance(item, str) and "\x00" in item:
                        yield entry
            elif field.is_repeated:
                for index, item in enumerate(value):
                    yield from _nul_fields(item, f"{path}[{index}].")
            else:
                yield from _nul_fields(value, f"{path}.")
        elif field.type == FieldDescriptor.TYPE_STRING:
            texts = value if field.is_repeated else (value,)
            if any("\x00" in text for text in texts):
                yield path


def _stream_decoder(decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Decode each message of a client stream lazily, as the handler reads it."""

    async def each(requests: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        async for raw in requests:
            yield decode(raw)

    return each


def _internal_message() -> str:
    return f"internal error (request id {rpc_context.request_id.get()})"


class PropagatingClientInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """Forward the current request id and the remaining deadline on outbound calls.

    Unary calls and server streams alike: a service that streams from another (the chat
    service from the inference service) must not outlive its own caller's deadline either.
    """

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        """Add ``x-request-id`` and cap the timeout at the caller's remaining deadline."""
        return await continuation(_propagated(client_call_details), request)

    async def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        """The same for a server stream."""
        return await continuation(_propagated(client_call_details), request)


def _propagated(client_call_details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()))
    current_id = rpc_context.request_id.get()
    if current_id is not None and rpc_context.REQUEST_ID_HEADER not in metadata:
        metadata.add(rpc_context.REQUEST_ID_HEADER, current_id)
    timeout = client_call_details.timeout
    remaining = rpc_context.remaining_seconds()
    if remaining is not None:
        timeout = remaining if timeout is None else min(timeout, remaining)
    return grpc.aio.ClientCallDetails(
        method=client_call_details.method,
        timeout=timeout,
        metadata=metadata,
        credentials=client_call_details.credentials,
        wait_for_ready=client_call_details.wait_for_ready,
    )
