"""Cost of authentication: login latency, and a token-verified call against an anonymous one.

The token-verified run calls ``GetStatus`` with a bearer token, so Envoy's ``jwt_authn`` and the
service's guard (signature, claims, revocation mirror) both run; the anonymous run calls the
same public RPC without one.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict

import grpc

from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.auth.v1 import auth_service_pb2_grpc as auth_grpc
from sutazai.ops.bench.edge import Result, measure


async def login_latency(edge: str, logins: int) -> dict[str, object]:
    """Register a throw-away user, then time ``logins`` sequential logins through ``edge``."""
    username = f"bench-{secrets.token_hex(4)}"
    password = f"Bench-{secrets.token_urlsafe(12)}"
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(edge) as channel:
        stub = auth_grpc.AuthServiceStub(channel)
        await stub.Register(
            auth_pb.RegisterRequest(
                username=username, email=f"{username}@bench.invalid", password=password
            ),
            timeout=10,
        )
        request = auth_pb.LoginRequest(username=username, password=password)
        token = ""
        for _ in range(logins):
            started = time.perf_counter()
            reply = await stub.Login(request, timeout=10)
            latencies.append(time.perf_counter() - started)
            token = reply.access_token
    latencies.sort()
    return {
        "logins": logins,
        "p50_ms": round(statistics.median(latencies) * 1e3, 3),
        "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1e3, 3),
        "token": token,
    }


async def compare(
    edge: str, concurrencies: Sequence[int], requests: int, logins: int
) -> dict[str, object]:
    """Login latency, then anonymous vs token-verified ``GetStatus`` at each concurrency."""
    login = await login_latency(edge, logins)
    token = str(login.pop("token"))
    runs: list[Result] = []
    for concurrency in concurrencies:
        runs.append(await measure("anonymous", edge, concurrency, requests))
        runs.append(
            await measure(
                "token", edge, concurrency, requests, (("authorization", f"Bearer {token}"),)
            )
        )
    summary = {}
    for concurrency in concurrencies:
        by_target = {r.target: r for r in runs if r.concurrency == concurrency}
        anonymous, verified = by_target["anonymous"], by_target["token"]
        summary[f"c{concurrency}"] = {
            "throughput_cost": round(
                1 - verified.requests_per_second / anonymous.requests_per_second, 3
            ),
            "added_p50_ms": round(verified.p50_ms - anonymous.p50_ms, 3),
        }
    return {
        "benchmark": "auth",
        "login": login,
        "rpc": "sutazai.system.v1.SystemService/GetStatus",
        "runs": [asdict(r) for r in runs],
        "summary": summary,
    }
