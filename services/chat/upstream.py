"""The inference service, called through the edge with the caller's own token.

Like any client, the chat service reaches ``InferenceService`` through Envoy (TLS when the edge
serves it), forwarding the caller's ``authorization`` header: the inference service sees the
real user (its role checks, its per-user rate limit, its audit), never a shared service
password. The runtime's :class:`~sutazai.runtime.interceptors.PropagatingClientInterceptor`
forwards the request id and caps every call at the caller's remaining deadline. A failure keeps
the inference service's status (:func:`~sutazai.runtime.faults.relayed`).

Every generation is a ``GenerateStream`` call, for ``Chat`` too: one path, no unary route
timeout in the way of a long reply, and a cancelled caller cancels it at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc

from sutazai.inference.v1 import inference_service_pb2 as pb
from sutazai.inference.v1.inference_service_pb2_grpc import InferenceServiceStub
from sutazai.runtime.faults import RpcStatusError, relayed, unavailable
from sutazai.services.chat.domain import FinishReason, Options, Role, Turn

UNKNOWN_MODEL_RELIST_SECONDS = 2.0
"""An unknown model name re-reads the model list at most this often (names cannot hammer it)."""
LIST_TIMEOUT_SECONDS = 10.0
_ROLES = {
    Role.SYSTEM: pb.MESSAGE_ROLE_SYSTEM,
    Role.USER: pb.MESSAGE_ROLE_USER,
    Role.ASSISTANT: pb.MESSAGE_ROLE_ASSISTANT,
}


@dataclass(frozen=True, slots=True)
class ModelList:
    """The inference service's models: the default, and each one's context window (0: unknown)."""

    default_model: str
    context_tokens: dict[str, int]


@dataclass(frozen=True, slots=True)
class Delta:
    """New reply text."""

    text: str


@dataclass(frozen=True, slots=True)
class Done:
    """The end of a generation."""

    model: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


class InferenceClient:
    """ListModels (cached for a while) and GenerateStream, as the calling user."""

    def __init__(self, channel: grpc.aio.Channel, *, refresh_seconds: float) -> None:
        """Calls over ``channel`` (to the edge, with the propagating interceptor)."""
        self._stub = InferenceServiceStub(channel)
        self._refresh_seconds = refresh_seconds
        self._models: ModelList | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def models(self, authorization: str, *, wanted: str = "") -> ModelList:
        """The model list, fetched again when it is old, or when ``wanted`` is not in it.

        Raises:
            RpcStatusError: the inference service's status for a failed listing.

        """
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            current = self._models
            stale = current is None or age >= self._refresh_seconds
            missing = bool(
                wanted
                and current is not None
                and wanted not in current.context_tokens
                and age >= UNKNOWN_MODEL_RELIST_SECONDS
            )
            if current is not None and not (stale or missing):
                return current
            try:
                listed = await self._stub.ListModels(
                    pb.ListModelsRequest(),
                    metadata=_bearer(authorization),
                    timeout=LIST_TIMEOUT_SECONDS,
                )
            except grpc.aio.AioRpcError as exc:
                if current is not None and exc.code() is grpc.StatusCode.UNAVAILABLE:
                    return current  # a stale list beats no chat; generation will tell
                raise relayed(exc) from exc
            self._models = ModelList(
                listed.default_model, {m.name: m.context_tokens for m in listed.models}
            )
            self._fetched_at = time.monotonic()
            return self._models

    def generate(
        self, authorization: str, model: str, turns: Sequence[Turn], options: Options
    ) -> Generation:
        """Start a generation (the call goes out on the first read)."""
        call = self._stub.GenerateStream(
            pb.GenerateStreamRequest(
                model=model,
                messages=[pb.Message(role=_ROLES[t.role], content=t.content) for t in turns],
                options=sampling_proto(options),
            ),
            metadata=_bearer(authorization),
        )
        return Generation(call)


class Generation:
    """One GenerateStream call: its events, and a way to stop it from anywhere."""

    def __init__(self, call: grpc.aio.UnaryStreamCall) -> None:
        self._call = call

    def cancel(self) -> None:
        """Cancel the call at once (idempotent; the inference service stops generating)."""
        self._call.cancel()

    async def events(self) -> AsyncIterator[Delta | Done]:
        """The reply's text as it comes, then :class:`Done`.

        Leaving the iteration early (an exception, a cancelled caller) cancels the call.

        Raises:
            RpcStatusError: the inference service's status, or UNAVAILABLE if its stream ended
                without ``done``.

        """
        try:
            async for event in self._call:
                kind = event.WhichOneof("event")
                if kind == "delta":
                    yield Delta(event.delta.text)
                elif kind == "done":
                    done = event.done
                    yield Done(
                        model=done.model,
                        finish_reason=(
                            FinishReason.LENGTH
                            if done.finish_reason == pb.FINISH_REASON_LENGTH
                            else FinishReason.STOP
                        ),
                        prompt_tokens=done.usage.prompt_tokens,
                        completion_tokens=done.usage.completion_tokens,
                    )
                    return
                # An `error` event is followed by the same status, raised by the iteration.
        except grpc.aio.AioRpcError as exc:
            raise relayed(exc) from exc
        finally:
            self._call.cancel()
        raise _cut_short()


def _cut_short() -> RpcStatusError:
    return unavailable("the inference service's reply ended without finishing")


def sampling_proto(options: Options) -> pb.SamplingOptions:
    """The options as the inference service takes them: only those that are set."""
    message = pb.SamplingOptions(stop=list(options.stop))
    if options.temperature is not None:
        message.temperature = options.temperature
    if options.top_p is not None:
        message.top_p = options.top_p
    if options.top_k is not None:
        message.top_k = options.top_k
    if options.max_tokens is not None:
        message.max_tokens = options.max_tokens
    if options.seed is not None:
        message.seed = options.seed
    if options.repeat_penalty is not None:
        message.repeat_penalty = options.repeat_penalty
    return message


def _bearer(authorization: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", authorization),)
