"""The coordinator's way in: allocate and release over NATS request-reply (``nats/README.md``).

``sutazai.resources.allocate`` takes a serialised ``AllocateRequest`` and answers an
``AllocateReply``; ``sutazai.resources.release`` takes a ``ReleaseRequest`` and answers a
``ReleaseReply``. The status inside the reply is the one the gRPC call would have answered
(same arbiter, same checks), as a ``google.rpc.Status`` with its details. Every instance
subscribes in the queue group ``resources``, so each request reaches one of them.

Only the coordinator may publish on these subjects (``nats/permissions.toml``), so NATS is the
access check; the leases granted and released are audited here with the actor ``nats``
(refusals are counted and logged, not audited: they change nothing). A request is handled in a task
of its own, at most ``responder_concurrency`` at once per instance; the subscription waits
(NATS buffers) when they are all busy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, status_pb2
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from sutazai.resources.v1 import resource_service_pb2 as pb
from sutazai.runtime.audit import OK
from sutazai.runtime.faults import RpcStatusError, internal, invalid_argument
from sutazai.services.resources.arbiter import Arbiter
from sutazai.services.resources.metrics import ResourceMetrics

log = structlog.get_logger(__name__)

ALLOCATE_SUBJECT = "sutazai.resources.allocate"
RELEASE_SUBJECT = "sutazai.resources.release"
QUEUE_GROUP = "resources"
NATS_ACTOR = "nats"
"""The audit actor of calls that came over NATS (the coordinator, as permissions allow)."""
_PENDING_LIMIT = 10_000
"""Requests NATS buffers for one subscription before it drops them (the requester times out)."""
_DRAIN_SECONDS = 5.0
_M = TypeVar("_M", bound=Message)


class Responder:
    """Answers allocate and release requests; run :meth:`run` for the life of the instance."""

    def __init__(
        self, nc: NatsClient, arbiter: Arbiter, metrics: ResourceMetrics, concurrency: int
    ) -> None:
        self._nc = nc
        self._arbiter = arbiter
        self._metrics = metrics
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriptions: list[Subscription] = []
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Subscribe to both subjects in the queue group."""
        for subject, handle in (
            (ALLOCATE_SUBJECT, self._allocate),
            (RELEASE_SUBJECT, self._release),
        ):
            self._subscriptions.append(
                await self._nc.subscribe(
                    subject,
                    queue=QUEUE_GROUP,
                    cb=self._dispatcher(subject, handle),
                    pending_msgs_limit=_PENDING_LIMIT,
                )
            )
        log.info("resources.responder_started", subjects=[ALLOCATE_SUBJECT, RELEASE_SUBJECT])

    def stop_taking(self) -> None:
        """Take no more requests (the instance drains); those in hand are still answered."""
        self._stopping.set()

    async def run(self) -> None:
        """Serve until cancelled, or until :meth:`stop_taking`; then finish what is in hand."""
        await self.start()
        try:
            await self._stopping.wait()
            await self._close()
            await asyncio.Event().wait()  # a background job returns only when cancelled
        finally:
            await asyncio.shield(self._close())

    async def _close(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=_DRAIN_SECONDS)

    def _dispatcher(
        self, subject: str, handle: Callable[[bytes], Awaitable[Message]]
    ) -> Callable[[Msg], Awaitable[None]]:
        async def on_message(msg: Msg) -> None:
            await self._slots.acquire()
            task = asyncio.create_task(self._answer(subject, handle, msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return on_message

    async def _answer(
        self, subject: str, handle: Callable[[bytes], Awaitable[Message]], msg: Msg
    ) -> None:
        try:
            reply = await handle(msg.data)
            if msg.reply:
                await msg.respond(reply.SerializeToString())
        except Exception:
            log.exception("resources.responder_failed", subject=subject)
        finally:
            self._slots.release()

    async def _allocate(self, data: bytes) -> pb.AllocateReply:
        try:
            request = _parse(pb.AllocateRequest, data)
            response = await self._arbiter.allocate(request, actor=NATS_ACTOR)
        except RpcStatusError as fault:
            await self._settle(ALLOCATE_SUBJECT, fault, target=_holder(data))
            return pb.AllocateReply(status=fault.to_proto())
        except Exception:
            log.exception("resources.allocate_failed")
            failure = internal("the allocation failed; see the resource service's log")
            await self._settle(ALLOCATE_SUBJECT, failure, target=_holder(data))
            return pb.AllocateReply(status=failure.to_proto())
        await self._settle(
            ALLOCATE_SUBJECT,
            None,
            target=f"{response.allocation.allocation_id} ({response.allocation.holder})",
        )
        return pb.AllocateReply(status=status_pb2.Status(code=code_pb2.OK), response=response)

    async def _release(self, data: bytes) -> pb.ReleaseReply:
        target = ""
        try:
            request = _parse(pb.ReleaseRequest, data)
            target = request.allocation_id[:64]
            await self._arbiter.release(request)
        except RpcStatusError as fault:
            await self._settle(RELEASE_SUBJECT, fault, target=target)
            return pb.ReleaseReply(status=fault.to_proto())
        except Exception:
            log.exception("resources.release_failed")
            failure = internal("the release failed; see the resource service's log")
            await self._settle(RELEASE_SUBJECT, failure, target=target)
            return pb.ReleaseReply(status=failure.to_proto())
        await self._settle(RELEASE_SUBJECT, None, target=target)
        return pb.ReleaseReply(status=status_pb2.Status(code=code_pb2.OK))

    async def _settle(self, subject: str, fault: RpcStatusError | None, *, target: str) -> None:
        """Count the answer; audit it if it changed something.

        A refusal changes nothing, and a coordinator asking again and again for a waiting task
        must not flood the audit log.
        """
        self._metrics.nats_requests.labels(
            subject, "OK" if fault is None else fault.code.name
        ).inc()
        if fault is None:
            await self._arbiter.record_call(subject, OK, actor=NATS_ACTOR, target=target)


def _parse(kind: type[_M], data: bytes) -> _M:
    try:
        return kind.FromString(data)
    except DecodeError:
        raise invalid_argument(
            {"request": f"must be a serialised {kind.DESCRIPTOR.full_name}"}
        ) from None


def _holder(data: bytes) -> str:
    """The holder named by a request, for the audit line (empty if it cannot be read)."""
    try:
        return pb.AllocateRequest.FromString(data).holder[:128]
    except DecodeError:
        return ""
