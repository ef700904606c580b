"""The edge's rate limits, through a real Envoy: per caller, and the global overload guard.

Each test uses its own client addresses (127.0.0.x, bound by the client socket) and its own
users, so the buckets one test drains never decide another's outcome.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from sutazai.gateway.resources import EdgePolicy
from sutazai.runtime.settings import AuthSettings, EdgeSettings
from sutazai.system.v1 import system_service_pb2, system_service_pb2_grpc
from tests.gateway.auth_backend import edge_in_front
from tests.gateway.edge_harness import (
    Edge,
)
from tests.gateway.tokens import ISSUER, KeyRingFile, bearer, sign

pytestmark = pytest.mark.timeout(120)

USER_BURST = 20
ADDRESS_BURST = 5
GLOBAL_BURST = 12
FLOOD = 300
"""Requests of one flood: a bounded loop, as fast as the client goes."""
STATUS = "/v1/system/status"


@pytest.fixture(scope="module")
async def edge(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Edge, KeyRingFile]]:
    """Per-caller buckets refilling one token a second; a global guard far above them."""
    policy = EdgePolicy(
        edge=EdgeSettings(
            user_rate_limit_burst=USER_BURST,
            user_rate_limit_per_second=1,
            address_rate_limit_burst=ADDRESS_BURST,
            address_rate_limit_per_second=1,
            global_rate_limit_burst=100_000,
            global_rate_limit_per_second=100_000,
        ),
        auth=AuthSettings(issuer=ISSUER),
    )
    async with edge_in_front(nats_url, tmp_path_factory.mktemp("limited"), policy) as running:
        yield running


def client(edge: Edge, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """An HTTP client whose connections come from ``address``."""
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{edge.port}",
        timeout=10,
        transport=httpx.AsyncHTTPTransport(local_address=address),
    )


def user_headers(keys: KeyRingFile, name: str) -> dict[str, str]:
    """``Authorization`` for a fresh user ``name`` (its own ``sub``, so its own bucket)."""
    return bearer(sign(keys.ring.signing, name=f"{name}-{uuid.uuid4().hex[:6]}"))


async def flood(http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> list[int]:
    """:data:`FLOOD` calls from 8 concurrent callers; their status codes."""
    codes: list[int] = []
    remaining = iter(range(FLOOD))

    async def caller() -> None:
        for _ in remaining:
            codes.append((await http.get(STATUS, headers=headers)).status_code)

    await asyncio.gather(*(caller() for _ in range(8)))
    return codes


async def test_rest_burst_over_the_limit_gets_429(edge: tuple[Edge, KeyRingFile]) -> None:
    proxy, _ = edge
    async with client(proxy, "127.0.0.10") as http:
        responses = [await http.get(STATUS) for _ in range(ADDRESS_BURST * 2)]

    codes = [r.status_code for r in responses]
    assert codes[:ADDRESS_BURST] == [200] * ADDRESS_BURST, codes
    assert 429 in codes, codes
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.headers["x-local-rate-limit"] == "true"
    assert limited.json()["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


async def test_grpc_burst_over_the_limit_gets_resource_exhausted(
    edge: tuple[Edge, KeyRingFile],
) -> None:
    proxy, keys = edge
    metadata = tuple(user_headers(keys, "grpc").items())
    codes: list[grpc.StatusCode] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}") as channel:
        stub = system_service_pb2_grpc.SystemServiceStub(channel)
        for _ in range(USER_BURST * 2):
            try:
                await stub.GetStatus(
                    system_service_pb2.GetStatusRequest(), metadata=metadata, timeout=5
                )
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())

    assert codes[:USER_BURST] == [grpc.StatusCode.OK] * USER_BURST, codes
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes


async def test_an_anonymous_flood_does_not_starve_a_signed_in_user(
    edge: tuple[Edge, KeyRingFile],
) -> None:
    proxy, keys = edge
    headers = user_headers(keys, "ada")
    # Same address as the flooder: a signed-in caller never spends its address's tokens.
    async with client(proxy, "127.0.0.11") as anonymous, client(proxy, "127.0.0.11") as ada:
        flooding = asyncio.ensure_future(flood(anonymous))
        user_codes = [(await ada.get(STATUS, headers=headers)).status_code for _ in range(10)]
        flood_codes = await flooding

    assert user_codes == [200] * 10
    assert flood_codes.count(429) > FLOOD // 2, "the flooder is held to its own bucket"


async def test_a_signed_in_flood_does_not_starve_another_user(
    edge: tuple[Edge, KeyRingFile],
) -> None:
    proxy, keys = edge
    mallory, bob = user_headers(keys, "mallory"), user_headers(keys, "bob")
    async with client(proxy, "127.0.0.12") as http:
        flooding = asyncio.ensure_future(flood(http, mallory))
        bob_codes = [(await http.get(STATUS, headers=bob)).status_code for _ in range(10)]
        mallory_codes = await flooding

    assert bob_codes == [200] * 10
    assert mallory_codes.count(429) > FLOOD // 2


async def test_each_client_address_has_its_own_bucket(edge: tuple[Edge, KeyRingFile]) -> None:
    proxy, _ = edge
    async with client(proxy, "127.0.0.13") as first, client(proxy, "127.0.0.14") as second:
        drained = [(await first.get(STATUS)).status_code for _ in range(ADDRESS_BURST * 2)]
        fresh = [(await second.get(STATUS)).status_code for _ in range(ADDRESS_BURST)]

    assert 429 in drained
    assert fresh == [200] * ADDRESS_BURST


async def test_a_forged_forwarded_for_does_not_change_the_bucket(
    edge: tuple[Edge, KeyRingFile],
) -> None:
    proxy, _ = edge
    async with client(proxy, "127.0.0.15") as forger, client(proxy, "127.0.0.16") as victim:
        # A new made-up address on every call: still one bucket, the connection's.
        forged = [
            (await forger.get(STATUS, headers={"x-forwarded-for": f"203.0.113.{i}"})).status_code
            for i in range(ADDRESS_BURST * 2)
        ]
        # Claiming the drained address spends nothing of it, nor gets its refusals.
        victim_codes = [
            (await victim.get(STATUS, headers={"x-forwarded-for": "127.0.0.15"})).status_code
            for _ in range(ADDRESS_BURST)
        ]

    assert 429 in forged, forged
    assert victim_codes == [200] * ADDRESS_BURST


async def test_services_get_the_address_envoy_saw(edge: tuple[Edge, KeyRingFile]) -> None:
    proxy, keys = edge
    forged = {
        "x-forwarded-for": "203.0.113.7",
        "x-sutazai-client-address": "203.0.113.8",
        **user_headers(keys, "carol"),
    }
    async with client(proxy, "127.0.0.17") as http:
        response = await http.get("/v1/auth/me", headers=forged)

    assert response.status_code == 200, response.text
    assert response.json()["user"]["email"] == "127.0.0.17"


@pytest.fixture(scope="module")
async def guarded_edge(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Edge, KeyRingFile]]:
    """A small global guard (one token a second) over per-caller buckets that never run out."""
    policy = EdgePolicy(
        edge=EdgeSettings(
            user_rate_limit_burst=100_000,
            user_rate_limit_per_second=100_000,
            address_rate_limit_burst=100_000,
            address_rate_limit_per_second=100_000,
            global_rate_limit_burst=GLOBAL_BURST,
            global_rate_limit_per_second=1,
        ),
        auth=AuthSettings(issuer=ISSUER),
    )
    async with edge_in_front(nats_url, tmp_path_factory.mktemp("limited"), policy) as running:
        yield running


async def test_the_global_guard_triggers_at_its_own_level(
    guarded_edge: tuple[Edge, KeyRingFile],
) -> None:
    proxy, keys = guarded_edge
    addresses = ("127.0.0.20", "127.0.0.21", "127.0.0.22")
    started = time.monotonic()
    codes: list[int] = []
    async with (
        client(proxy, addresses[0]) as a,
        client(proxy, addresses[1]) as b,
        client(proxy, addresses[2]) as c,
    ):
        for http in (a, b, c):
            codes += [(await http.get(STATUS)).status_code for _ in range(GLOBAL_BURST // 2)]
        signed_in = user_headers(keys, "dora")
        codes += [(await a.get(STATUS, headers=signed_in)).status_code for _ in range(GLOBAL_BURST)]
    elapsed = time.monotonic() - started

    accepted = codes.count(200)
    # All callers together: the guard's burst, plus at most one refill per second that passed.
    assert GLOBAL_BURST <= accepted <= GLOBAL_BURST + int(elapsed) + 1, (codes, elapsed)
    assert codes[:GLOBAL_BURST] == [200] * GLOBAL_BURST, codes
    assert set(codes) == {200, 429}
