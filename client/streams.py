"""Server streams that survive the mesh going away: reconnect with backoff, say so meanwhile.

A followed stream is an infinite async iterator. When the edge is unreachable, answers
``UNAVAILABLE``, resets the stream, ends it (Envoy's idle timeout, a draining instance), or
nothing arrives for :attr:`ReconnectPolicy.idle_timeout` (the server sends keep-alives far more
often), the loop reports ``ConnectionState(connected=False, detail, retry_in)``, waits with
jittered exponential backoff, and opens the stream again; the first message after that reports
``connected=True`` and resets the backoff. ``UNAUTHENTICATED`` renews the session once per
attempt (else :class:`SessionEnded`); any other status ends the iterator with
:class:`CallFailed`. Closing the iterator (``aclose``, or cancelling the task iterating it)
cancels the RPC at once.

The loop is written out rather than built on ``stamina``: it must tell its listeners how long
the next wait is *before* waiting (the dashboard's "retrying in 4 s" banner), and it restarts
its backoff after every successful reconnect, within one endless iteration; ``stamina``'s
retry context hides the first and only resets on a new context.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from sutazai.client.errors import MeshUnavailable
from sutazai.client.session import Session, bearer
from sutazai.client.statuses import translate, unavailable_detail

T = TypeVar("T")

Metadata = tuple[tuple[str, str], ...]

TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        # What a stream sees when the server (or Envoy in front of it) goes away mid-stream:
        # the server cancelled it on shutdown, or the HTTP/2 stream was reset.
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)
"""Statuses after which a followed stream reconnects instead of failing."""

_RESET_SIGNS = ("rst_stream", "stream reset", "upstream reset", "socket closed")
"""``INTERNAL`` details that mean the transport broke, not the server's logic."""


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """Whether the client reaches the mesh, for the dashboard's banner."""

    connected: bool
    detail: str = ""
    """Why disconnected (e.g. "Envoy unreachable at 127.0.0.1:10005: ...")."""
    retry_in: float | None = None
    """Seconds until the next reconnect attempt."""


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How followed streams back off and when a silent stream counts as lost."""

    initial: float = 0.5
    """First wait after a loss, in seconds."""
    maximum: float = 10.0
    """Longest wait; the wait doubles up to it."""
    jitter: float = 0.2
    """Each wait is spread by up to this fraction either way, so clients do not stampede."""
    idle_timeout: float = 75.0
    """A stream silent for this long is treated as lost (servers send keep-alives every 30 s)."""

    def delay(self, attempt: int) -> float:
        """The wait before reconnect ``attempt`` (0 for the first), always > 0."""
        base = min(self.maximum, self.initial * 2.0 ** min(attempt, 32))
        spread = base * self.jitter * (2 * secrets.SystemRandom().random() - 1)
        return max(0.01, base + spread)


class ConnectionWatch:
    """The client's one view of its connection, fed by every stream and unary call.

    A loss is reported at once (with the stream's retry delay); "connected" is reported once
    nothing is lost any more, so one stream that recovered does not hide another still down.
    """

    def __init__(self) -> None:
        """Start connected (nothing has failed yet) with no listeners."""
        self._listeners: list[Callable[[ConnectionState], None]] = []
        self._down: set[object] = set()
        self._announced_connected = True

    def subscribe(self, callback: Callable[[ConnectionState], None]) -> Callable[[], None]:
        """Register ``callback``; returns the function that unregisters it."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def lost(self, source: object | None, detail: str, retry_in: float | None = None) -> None:
        """``source`` (a stream; ``None`` for a unary call) cannot reach the mesh."""
        if source is not None:
            self._down.add(source)
        self._announced_connected = False
        self._notify(ConnectionState(connected=False, detail=detail, retry_in=retry_in))

    def regained(self, source: object | None) -> None:
        """``source`` reached the mesh again."""
        self._down.discard(source)
        if not self._down and not self._announced_connected:
            self._announced_connected = True
            self._notify(ConnectionState(connected=True))

    def forget(self, source: object) -> None:
        """A stream was closed: it no longer counts as down."""
        self._down.discard(source)

    def _notify(self, state: ConnectionState) -> None:
        for callback in list(self._listeners):
            callback(state)


async def follow(
    start: Callable[[Metadata], grpc.aio.UnaryStreamCall[object, T]],
    *,
    session: Session,
    signed_in: bool,
    connection: ConnectionWatch,
    policy: ReconnectPolicy,
    target: str,
) -> AsyncGenerator[T]:
    """Every message of the stream ``start`` opens, reopening it whenever it is lost.

    ``start`` is called for every attempt with the call metadata, so a caller can resume where
    the previous attempt stopped (e.g. after the last event seen).

    Raises:
        SessionEnded: nobody is signed in (``signed_in``), or the session could not be renewed.
        CallFailed: the mesh answered with a status that retrying will not change.

    """
    source = object()
    attempt = 0
    try:
        while True:
            renewed = False
            problem = ""
            while not problem:
                try:
                    token = await session.access_token(required=signed_in)
                except MeshUnavailable as exc:
                    problem = str(exc)
                    break
                call = start(bearer(token) if token is not None else ())
                try:
                    first = True
                    while True:
                        async with asyncio.timeout(policy.idle_timeout):
                            message = await call.read()
                        if message is grpc.aio.EOF:
                            problem = f"the stream from {target} ended"
                            break
                        if first:
                            first, attempt, renewed = False, 0, False
                            connection.regained(source)
                        yield message
                except TimeoutError:
                    problem = f"nothing from {target} for {policy.idle_timeout:g} s"
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                    if (
                        code == grpc.StatusCode.UNAUTHENTICATED
                        and token is not None
                        and not renewed
                    ):
                        # Revoked or expired early: renew once, then open the stream again.
                        renewed = True
                        try:
                            await session.renew(token)
                        except MeshUnavailable as unreachable:
                            problem = str(unreachable)
                        continue
                    if not _transient(exc):
                        raise translate(exc, target) from None
                    problem = _lost_detail(exc, target)
                finally:
                    call.cancel()
            delay = policy.delay(attempt)
            attempt += 1
            connection.lost(source, problem, delay)
            await asyncio.sleep(delay)
    finally:
        connection.forget(source)


def _transient(error: grpc.aio.AioRpcError) -> bool:
    code = error.code()
    if code in TRANSIENT:
        return True
    details = (error.details() or "").lower()
    return code == grpc.StatusCode.INTERNAL and any(sign in details for sign in _RESET_SIGNS)


def _lost_detail(error: grpc.aio.AioRpcError, target: str) -> str:
    details = error.details() or error.code().name
    if error.code() == grpc.StatusCode.UNAVAILABLE:
        return unavailable_detail(target, details)
    return f"stream from {target} lost: {error.code().name}: {details}"
