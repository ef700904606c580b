"""The inference service over NATS: agents' ``sutazai.inference.generate`` requests.

Agents reach language models without the edge: a ``GenerateRequest`` published (request-reply)
on ``sutazai.inference.generate`` by a principal granted ``inference_call`` is answered with a
``GenerateReply`` by one instance of the ``inference`` queue group. The generation takes the
same path as gRPC ``Generate`` (:func:`.handlers.generate_response`: validation, the backend's
breaker and slots, metrics); a failure is the same ``google.rpc.Status`` in the reply.

The caller's timeout travels in the ``Sutazai-Timeout-Ms`` header (milliseconds); without it
the generation gets ``default_timeout_seconds``, and never more than ``max_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping

import nats.errors
import structlog
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from sutazai.inference.v1 import inference_service_pb2 as pb
from sutazai.runtime.faults import (
    RpcStatusError,
    deadline_exceeded,
    internal,
    invalid_argument,
    resource_exhausted,
    unavailable,
)
from sutazai.runtime.settings import InferenceNatsSettings
from sutazai.services.inference.engine import Inference
from sutazai.services.inference.handlers import generate_response

log = structlog.get_logger(__name__)

SUBJECT = "sutazai.inference.generate"
QUEUE_GROUP = "inference"
TIMEOUT_HEADER = "Sutazai-Timeout-Ms"


class GenerateResponder:
    """Answers ``sutazai.inference.generate`` until drained.

    Run :meth:`run` as a background job of the service host and register :meth:`drain` as
    its drain hook: at shutdown the subscription ends first, then requests in flight get the
    grace period, then they are answered UNAVAILABLE.

    Args:
        nc: the service's NATS connection (principal ``inference``).
        engine: the engine gRPC calls use.
        settings: timeouts and the in-flight bound.
        record: counts each request by outcome (``ok`` or a status code's name, lower-case).
        grace_seconds: how long requests in flight may finish after :meth:`drain`.
    """

    def __init__(
        self,
        nc: Client,
        engine: Inference,
        settings: InferenceNatsSettings,
        *,
        record: Callable[[str], None],
        grace_seconds: float,
    ) -> None:
        self._nc = nc
        self._engine = engine
        self._settings = settings
        self._record = record
        self._grace = grace_seconds
        self._in_flight: set[asyncio.Task[None]] = set()
        self._draining = asyncio.Event()
        self.ready = asyncio.Event()
        """Set once the subscription is in place."""

    def drain(self) -> None:
        """Stop taking requests; those in flight finish within the grace period."""
        self._draining.set()

    async def run(self) -> None:
        """Subscribe, answer until :meth:`drain` (or cancellation), then finish what runs."""
        subscription = await self._nc.subscribe(SUBJECT, queue=QUEUE_GROUP, cb=self._on_request)
        self.ready.set()
        log.info("inference.nats_responder_started", subject=SUBJECT)
        try:
            await self._draining.wait()
        except asyncio.CancelledError:
            await self._finish(subscription, time.monotonic())
            raise
        await self._finish(subscription, time.monotonic() + self._grace)

    async def _finish(self, subscription: Subscription, until: float) -> None:
        with contextlib.suppress(nats.errors.Error, OSError):
            await subscription.unsubscribe()
        cancelled = False
        while self._in_flight and (remaining := until - time.monotonic()) > 0:
            try:
                await asyncio.wait(set(self._in_flight), timeout=remaining)
            except asyncio.CancelledError:
                # The host stops its jobs right after the gRPC drain; requests in flight keep
                # the rest of their grace period all the same (bounded by ``until``).
                cancelled = True
        for task in set(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=1.0)
        if cancelled:
            raise asyncio.CancelledError

    async def _on_request(self, message: Msg) -> None:
        # nats-py runs a subscription's callbacks one at a time: each request gets a task.
        if not message.reply:
            self._record("no_reply")
            return
        if self._draining.is_set():
            await self._respond(message, unavailable("the inference service is stopping", 1.0))
            return
        if len(self._in_flight) >= self._settings.max_in_flight:
            await self._respond(
                message,
                resource_exhausted("too many generation requests in flight", 1.0),
            )
            return
        task = asyncio.create_task(self._answer(message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _answer(self, message: Msg) -> None:
        try:
            timeout = self._timeout(message.headers)
            request = _request(message.data)
            response = await asyncio.wait_for(generate_response(self._engine, request), timeout)
        except RpcStatusError as fault:
            await self._respond(message, fault)
        except TimeoutError:
            await self._respond(message, deadline_exceeded("the generation ran out of time"))
        except asyncio.CancelledError:
            await self._respond(message, unavailable("the inference service is stopping", 1.0))
            raise
        except Exception:
            log.exception("inference.nats_request_failed")
            await self._respond(message, internal("the generation failed unexpectedly"))
        else:
            self._record("ok")
            reply = pb.GenerateReply(status=status_pb2.Status(code=code_pb2.OK), response=response)
            await self._send(message, reply)

    def _timeout(self, headers: Mapping[str, str] | None) -> float:
        value = (headers or {}).get(TIMEOUT_HEADER)
        if value is None:
            return self._settings.default_timeout_seconds
        if not value.isdigit() or int(value) == 0:
            raise invalid_argument(
                {TIMEOUT_HEADER: "must be a positive whole number of milliseconds"}
            )
        return min(int(value) / 1000, self._settings.max_timeout_seconds)

    async def _respond(self, message: Msg, fault: RpcStatusError) -> None:
        self._record(fault.code.name.lower())
        await self._send(message, pb.GenerateReply(status=fault.to_proto()))

    async def _send(self, message: Msg, reply: pb.GenerateReply) -> None:
        try:
            await message.respond(reply.SerializeToString())
        except (nats.errors.Error, OSError) as exc:
            # The caller times out and retries; nothing else to do.
            log.warning("inference.nats_reply_failed", error=str(exc))


def _request(data: bytes) -> pb.GenerateRequest:
    try:
        return pb.GenerateRequest.FromString(data)
    except DecodeError:
        raise invalid_argument({"request": "not a serialised GenerateRequest"}) from None
