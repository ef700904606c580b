"""Open-loop load at a fixed rate: calls start on schedule whether or not earlier ones finished.

A closed loop (N callers, each waiting for its answer) slows down with the system it measures;
background load for another measurement must not, so calls are started in 10 ms slots at the
requested rate, with a cap on calls in flight so an overloaded edge cannot grow the client
without bound (a slot that finds the cap reached counts its calls as ``skipped``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass

import grpc

from sutazai.system.v1 import system_service_pb2 as pb
from sutazai.system.v1 import system_service_pb2_grpc as pb_grpc

_SLOT_SECONDS = 0.01


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one run of paced load achieved."""

    target: str
    rate: float
    seconds: float
    started: int
    succeeded: int
    failed: int
    skipped: int
    achieved_per_second: float


async def paced(address: str, rate: float, seconds: float, max_in_flight: int = 512) -> LoadResult:
    """Call ``SystemService/GetStatus`` (anonymous) at ``rate`` per second for ``seconds``."""
    succeeded = failed = skipped = started = 0
    in_flight: set[asyncio.Task[None]] = set()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SystemServiceStub(channel)
        request = pb.GetStatusRequest()

        async def call() -> None:
            nonlocal succeeded, failed
            try:
                await stub.GetStatus(request, timeout=5)
            except grpc.aio.AioRpcError:
                failed += 1
            else:
                succeeded += 1

        begin = time.perf_counter()
        slot = 0
        while (now := time.perf_counter() - begin) < seconds:
            # Catch up on every slot that is due, so a late wake-up does not lower the rate.
            due = int(now / _SLOT_SECONDS) + 1
            calls = round(due * _SLOT_SECONDS * rate) - round(slot * _SLOT_SECONDS * rate)
            slot = due
            for _ in range(calls):
                if len(in_flight) >= max_in_flight:
                    skipped += 1
                    continue
                task = asyncio.create_task(call())
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                started += 1
            await asyncio.sleep(max(0.0, slot * _SLOT_SECONDS - (time.perf_counter() - begin)))
        if in_flight:
            await asyncio.wait(in_flight)
        elapsed = time.perf_counter() - begin
    return LoadResult(
        target=address,
        rate=rate,
        seconds=round(elapsed, 3),
        started=started,
        succeeded=succeeded,
        failed=failed,
        skipped=skipped,
        achieved_per_second=round(succeeded / elapsed, 1),
    )


def as_json(result: LoadResult) -> dict[str, object]:
    """The result as a JSON-ready mapping."""
    return {"benchmark": "paced_load", **asdict(result)}
