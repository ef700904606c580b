"""Per-RPC context: the request id and the caller's deadline, visible to outbound calls."""

from __future__ import annotations

import time
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
CLIENT_ADDRESS_HEADER = "x-sutazai-client-address"
"""The client address Envoy saw; Envoy sets it on every upstream request, replacing any value
a caller sent. Trusted only from Unix-socket peers (Envoy), never on a service's TCP port."""

request_id: ContextVar[str | None] = ContextVar("sutazai_request_id", default=None)
"""Id of the request being served; echoed back and forwarded on outbound calls."""

deadline: ContextVar[float | None] = ContextVar("sutazai_deadline", default=None)
"""Absolute ``time.monotonic()`` by which the current RPC must answer, if the caller set one."""


def remaining_seconds() -> float | None:
    """Seconds left before the current RPC's deadline, or ``None`` without a deadline."""
    current = deadline.get()
    if current is None:
        return None
    return max(0.0, current - time.monotonic())
