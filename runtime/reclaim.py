"""Memory reclamation in the mesh's own processes: the hook every service answers, and the ask.

Every service instance (through :func:`sutazai.runtime.server.join_registry`) subscribes
:data:`RECLAIM_SUBJECT`. A request asks it to run Python's garbage collector over every
generation and then glibc's ``malloc_trim(0)``, which returns freed heap pages to the system;
it answers with its resident memory before and after. A dry run only reports the resident
memory. Nothing else is done: no kernel cache is dropped (``/proc/sys/vm/drop_caches`` is
never written), no other process is touched, and a real run is done at most once every
:data:`MIN_INTERVAL_SECONDS` per process (a flood of requests costs one collection).

Answers go to :data:`REPLIES_SUBJECT`, not to a reply inbox: a service then needs no
``allow_responses`` (which would let it answer any request it receives), only the right to
publish on that one subject (grant ``runtime_reclaim_answer``). Only the hardware service and
its agent may ask and read the answers (grant ``runtime_reclaim_call``); an asker keeps the
answers that carry its request's id. Requests and answers are small JSON documents:

Request: ``{"request_id": str, "dry_run": bool}``. Answer: ``{"request_id", "service", "pid",
"rss_before_bytes", "rss_after_bytes", "collected", "trimmed", "skipped"}``. A request that is
not one is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import psutil
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = structlog.get_logger(__name__)

RECLAIM_SUBJECT = "sutazai.runtime.reclaim"
REPLIES_SUBJECT = "sutazai.runtime.reclaimed"
MAX_REQUEST_ID_CHARS = 64
MIN_INTERVAL_SECONDS = 5.0
"""Least time between two real reclamations in one process."""
MAX_REQUEST_BYTES = 256
MAX_REPLIES = 1024
"""Replies gathered by one ask at most (one per process of the mesh)."""
MAX_REPLY_BYTES = 1024
"""A reply longer than this is not a reclamation result: it is dropped."""

_lock = threading.Lock()
_last_run = -MIN_INTERVAL_SECONDS


@dataclass(frozen=True, slots=True)
class ReclaimResult:
    """What one process answered."""

    service: str
    pid: int
    rss_before_bytes: int
    rss_after_bytes: int
    collected: int = 0
    """Objects the garbage collector freed."""
    trimmed: bool = False
    """``malloc_trim`` ran (glibc only) and returned memory to the system."""
    skipped: str = ""
    """Why nothing was done (a dry run, or too soon after the previous run)."""


def _rss() -> int:
    try:
        return int(psutil.Process().memory_info().rss)
    except psutil.Error:
        return 0


def _malloc_trim() -> bool:
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False  # not glibc (musl has no malloc_trim): the collector's work stands
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))


def reclaim(service: str, *, dry_run: bool, clock: Any = time.monotonic) -> ReclaimResult:
    """Collect garbage and trim the heap in this process (unless a dry run or too soon)."""
    global _last_run
    before = _rss()
    with _lock:
        now = clock()
        if dry_run:
            skipped = "dry run"
        elif now - _last_run < MIN_INTERVAL_SECONDS:
            skipped = f"ran less than {MIN_INTERVAL_SECONDS:g} s ago"
        else:
            skipped = ""
            _last_run = now
    if skipped:
        return ReclaimResult(service, os.getpid(), before, before, skipped=skipped)
    collected = gc.collect()
    trimmed = _malloc_trim()
    return ReclaimResult(service, os.getpid(), before, _rss(), collected, trimmed)


def parse_request(data: bytes) -> tuple[str, bool] | None:
    """A request's id and whether it is a dry run (anything but ``false`` is), or ``None``."""
    if len(data) > MAX_REQUEST_BYTES:
        return None
    try:
        request = json.loads(data)
    except ValueError:
        return None
    if not isinstance(request, dict):
        return None
    request_id = request.get("request_id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID_CHARS:
        return None
    return request_id, request.get("dry_run") is not False


async def answer_reclaim(nc: NatsClient, service: str) -> Subscription:
    """Answer reclamation requests as ``service`` until the connection closes."""

    async def answer(message: Msg) -> None:
        request = parse_request(message.data)
        if request is None:
            return
        request_id, dry_run = request
        result = await asyncio.to_thread(reclaim, service, dry_run=dry_run)
        if not result.skipped:
            log.info(
                "runtime.reclaimed",
                freed_bytes=result.rss_before_bytes - result.rss_after_bytes,
                collected=result.collected,
                trimmed=result.trimmed,
            )
        answer = {"request_id": request_id, **asdict(result)}
        await nc.publish(REPLIES_SUBJECT, json.dumps(answer).encode())

    return await nc.subscribe(RECLAIM_SUBJECT, cb=answer)


def parse_result(data: bytes, request_id: str) -> ReclaimResult | None:
    """One answer to ``request_id``, or ``None`` (another request's, or not well-formed)."""
    if len(data) > MAX_REPLY_BYTES:
        return None
    try:
        fields = json.loads(data)
        if fields["request_id"] != request_id:
            return None
        result = ReclaimResult(
            service=str(fields["service"])[:64],
            pid=int(fields["pid"]),
            rss_before_bytes=max(0, int(fields["rss_before_bytes"])),
            rss_after_bytes=max(0, int(fields["rss_after_bytes"])),
            collected=max(0, int(fields.get("collected", 0))),
            trimmed=bool(fields.get("trimmed", False)),
            skipped=str(fields.get("skipped", ""))[:128],
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return result


async def ask_reclaim(
    nc: NatsClient, *, dry_run: bool, wait_seconds: float, expected: int | None = None
) -> list[ReclaimResult]:
    """Ask every answering process; gather answers for ``wait_seconds`` (or ``expected`` of them).

    Each process answers once; a pid seen twice (a process answering on two connections)
    counts once.
    """
    request_id = uuid.uuid4().hex
    results: dict[int, ReclaimResult] = {}
    enough = asyncio.Event()

    async def gather(message: Msg) -> None:
        result = parse_result(message.data, request_id)
        if result is None or len(results) >= MAX_REPLIES:
            return
        results.setdefault(result.pid, result)
        if expected is not None and len(results) >= expected:
            enough.set()

    subscription = await nc.subscribe(REPLIES_SUBJECT, cb=gather)
    try:
        await nc.flush()  # subscribed before anyone can answer
        request = {"request_id": request_id, "dry_run": dry_run}
        await nc.publish(RECLAIM_SUBJECT, json.dumps(request).encode())
        await nc.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), timeout=wait_seconds)
    finally:
        await subscription.unsubscribe()
    return sorted(results.values(), key=lambda r: (r.service, r.pid))
