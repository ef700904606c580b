"""Probes of real components. Each takes its I/O client from the caller and never raises.

Timeouts follow the original health monitor (Redis 0.5 s, PostgreSQL 1 s) and the rest stay
at 1 s, so one probe round is bounded however broken the mesh is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

import asyncpg
import grpc
import httpx
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NatsClient

from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.registry import Registry, instance_label
from sutazai.services.system.domain import Kind, ProbeOutcome


class Probe(Protocol):
    """Something that checks one or more components."""

    async def __call__(self) -> list[ProbeOutcome]:
        """Probe now; failures are outcomes, never exceptions."""
        ...


def public_address(url: str) -> str:
    """``host:port`` of a URL or DSN, without credentials."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


async def _timed(
    name: str,
    kind: Kind,
    address: str,
    limit: float,
    check: Callable[[], Awaitable[str]],
) -> ProbeOutcome:
    """Run ``check`` (which returns a version string) and turn its result into an outcome."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            version = await check()
    except Exception as exc:
        error = f"timed out after {limit:g}s" if isinstance(exc, TimeoutError) else _describe(exc)
        return ProbeOutcome(
            name, kind, address, False, _ms(started), datetime.now(UTC), error=error
        )
    return ProbeOutcome(name, kind, address, True, _ms(started), datetime.now(UTC), version=version)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1e3, 3)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if text != exc.__class__.__name__ else text


class PostgresProbe:
    """``SELECT version()`` over a small pool that reconnects after a restart."""

    def __init__(self, pool: asyncpg.Pool, address: str, timeout: float = 1.0) -> None:
        self._pool = pool
        self._address = address
        self._timeout = timeout

    async def __call__(self) -> list[ProbeOutcome]:
        """Probe PostgreSQL."""

        async def check() -> str:
            version = await self._pool.fetchval("SHOW server_version", timeout=self._timeout)
            return str(version)

        return [await _timed("postgres", Kind.INFRASTRUCTURE, self._address, self._timeout, check)]


class RedisProbe:
    """``PING`` and the server version."""

    def __init__(self, client: aioredis.Redis, address: str, timeout: float = 0.5) -> None:
        self._client = client
        self._address = address
        self._timeout = timeout

    async def __call__(self) -> list[ProbeOutcome]:
        """Probe Redis."""

        async def check() -> str:
            await self._client.ping()
            info = await self._client.info("server")
            return str(info.get("redis_version", ""))

        return [await _timed("redis", Kind.INFRASTRUCTURE, self._address, self._timeout, check)]


class NatsProbe:
    """A round trip to the server and a JetStream account lookup."""

    def __init__(self, client: NatsClient, timeout: float = 1.0) -> None:
        self._client = client
        self._timeout = timeout

    async def __call__(self) -> list[ProbeOutcome]:
        """Probe NATS and JetStream."""
        address = self._client.connected_url.netloc if self._client.connected_url else ""
        address = address.rpartition("@")[2]

        async def check() -> str:
            if not self._client.is_connected:
                raise ConnectionError("not connected")
            await self._client.flush(timeout=max(1, round(self._timeout)))
            await self._client.jetstream().account_info()
            version = self._client.connected_server_version
            return f"{version.major}.{version.minor}.{version.patch}"

        return [await _timed("nats", Kind.INFRASTRUCTURE, address, self._timeout, check)]


class EnvoyProbe:
    """Envoy's admin ``/ready``, which answers LIVE once its listeners are up."""

    def __init__(self, client: httpx.AsyncClient, address: str, timeout: float = 1.0) -> None:
        """Probe through ``client`` (bound to the admin interface, relative paths).

        ``address`` is what the status reports as Envoy's address (its admin socket).
        """
        self._client = client
        self._address = address
        self._timeout = timeout

    async def __call__(self) -> list[ProbeOutcome]:
        """Probe Envoy."""

        async def check() -> str:
            ready = await self._client.get("/ready")
            if ready.status_code != httpx.codes.OK or ready.text.strip() != "LIVE":
                raise ConnectionError(f"/ready answered {ready.status_code} {ready.text.strip()}")
            # e.g. "9e5580…/1.40.0/Clean/RELEASE/BoringSSL"
            build = (await self._client.get("/server_info")).json()["version"]
            return str(build).split("/")[1]

        return [await _timed("envoy", Kind.INFRASTRUCTURE, self._address, self._timeout, check)]


class InstancesProbe:
    """gRPC health checks of every instance in the registry, on channels kept between rounds.

    A channel is kept only while it works for the same process: it is closed after a failed
    check (a channel to a dead process would sit in reconnect backoff and fail the next checks
    of a restarted one) and when the entry names another process (pid, start time, address).

    A kept channel is also watched: when its connection drops (the process died or closed it),
    ``on_lost`` is called at once, so the owner can probe now rather than at the next round.
    Without it a process that a supervisor restarts within one probe interval would never be
    seen down.
    """

    def __init__(
        self,
        registry: Registry,
        timeout: float = 1.0,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._registry = registry
        self._timeout = timeout
        self.on_lost = on_lost
        """Called when a kept channel's connection drops; settable after construction."""
        self._channels: dict[str, tuple[tuple[object, ...], grpc.aio.Channel]] = {}
        self._watches: dict[str, asyncio.Task[None]] = {}

    async def __call__(self) -> list[ProbeOutcome]:
        """Probe each registered instance; a gone instance's channel is closed."""
        instances = await self._registry.list()
        live = {instance_label(i.service, i.instance_id) for i in instances}
        for label in set(self._channels) - live:
            await self._drop(label)
        return list(await asyncio.gather(*(self._check(i) for i in instances)))

    async def close(self) -> None:
        """Close every channel."""
        for label in list(self._channels):
            await self._drop(label)

    async def _drop(self, label: str) -> None:
        watch = self._watches.pop(label, None)
        if watch is not None:
            watch.cancel()
        _, channel = self._channels.pop(label)
        await channel.close()

    async def _watch(self, channel: grpc.aio.Channel) -> None:
        """Call ``on_lost`` each time the channel falls from READY (connection dropped)."""
        state = channel.get_state()
        while state is not grpc.ChannelConnectivity.SHUTDOWN:
            await channel.wait_for_state_change(state)
            previous, state = state, channel.get_state()
            if previous is grpc.ChannelConnectivity.READY and self.on_lost is not None:
                self.on_lost()

    async def _channel(self, label: str, instance: ServiceInstance) -> grpc.aio.Channel:
        process = (
            instance.host,
            instance.port,
            instance.pid,
            instance.started_at.ToNanoseconds(),
        )
        kept = self._channels.get(label)
        if kept is not None and kept[0] == process:
            return kept[1]
        if kept is not None:
            await self._drop(label)
        channel = grpc.aio.insecure_channel(f"{instance.host}:{instance.port}")
        self._channels[label] = (process, channel)
        self._watches[label] = asyncio.create_task(self._watch(channel), name=f"watch:{label}")
        return channel

    async def _check(self, instance: ServiceInstance) -> ProbeOutcome:
        address = f"{instance.host}:{instance.port}"
        name = instance_label(instance.service, instance.instance_id)
        stub = health_pb2_grpc.HealthStub(await self._channel(name, instance))
        service = instance.grpc_services[0] if instance.grpc_services else ""

        async def check() -> str:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=self._timeout
            )
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                raise ConnectionError(
                    health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                )
            return instance.version

        outcome = await _timed(name, Kind.SERVICE_INSTANCE, address, self._timeout, check)
        if not outcome.healthy and name in self._channels:
            await self._drop(name)
        return outcome
