"""Cost of the Envoy edge: one cheap unary RPC called directly and through Envoy.

The RPC is ``SystemService/GetStatus``, which answers from the prober's latest round without
doing I/O, so the numbers measure the path (client, Envoy, server), not the handler.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import grpc

from sutazai.system.v1 import system_service_pb2 as pb
from sutazai.system.v1 import system_service_pb2_grpc as pb_grpc


@dataclass(frozen=True, slots=True)
class Result:
    """Throughput and latency of one (target, concurrency) run."""

    target: str
    address: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float


async def measure(
    target: str,
    address: str,
    concurrency: int,
    requests: int,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Result:
    """Send ``requests`` calls from ``concurrency`` concurrent callers on one channel."""
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SystemServiceStub(channel)
        request = pb.GetStatusRequest()
        for _ in range(min(200, requests)):  # warm-up: connections, Envoy's first host pick
            await stub.GetStatus(request, timeout=5, metadata=metadata)
        remaining = requests

        async def caller() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                try:
                    await stub.GetStatus(request, timeout=5, metadata=metadata)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return Result(
        target=target,
        address=address,
        concurrency=concurrency,
        requests=requests,
        errors=errors,
        seconds=round(elapsed, 3),
        requests_per_second=round(len(latencies) / elapsed, 1),
        p50_ms=round(statistics.median(latencies) * 1e3, 3),
        p99_ms=round(latencies[int(len(latencies) * 0.99) - 1] * 1e3, 3),
    )


async def compare(
    direct: str, edge: str, concurrencies: Sequence[int], requests: int
) -> dict[str, object]:
    """Run every concurrency against both targets and summarise the edge's overhead."""
    runs: list[Result] = []
    for concurrency in concurrencies:
        for target, address in (("direct", direct), ("envoy", edge)):
            runs.append(await measure(target, address, concurrency, requests))
    summary = {}
    for concurrency in concurrencies:
        by_target = {r.target: r for r in runs if r.concurrency == concurrency}
        d, e = by_target["direct"], by_target["envoy"]
        summary[f"c{concurrency}"] = {
            "throughput_ratio": round(e.requests_per_second / d.requests_per_second, 3),
            "added_p50_ms": round(e.p50_ms - d.p50_ms, 3),
        }
    return {
        "benchmark": "edge_unary",
        "rpc": "sutazai.system.v1.SystemService/GetStatus",
        "runs": [asdict(r) for r in runs],
        "summary": summary,
    }
