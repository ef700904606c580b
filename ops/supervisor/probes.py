"""Health probes: one real request per check, raising when the component is not healthy."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import grpc
import httpx
import nats
import psutil
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NatsClient
from nats.js.errors import KeyNotFoundError

from sutazai.agents.v1.agent_service_pb2 import AgentHeartbeat
from sutazai.ops.supervisor.errors import SupervisorError
from sutazai.runtime.jetstream import AGENTS_BUCKET
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import MeshSettings
from sutazai.runtime.sockets import envoy_admin_client

_TIMEOUT = 2.0


class ProbeError(SupervisorError):
    """A probe reached the component but the answer says it is not healthy."""


async def http_ok(url: str) -> None:
    """GET ``url``; healthy on status 200."""
    async with httpx.AsyncClient(timeout=_TIMEOUT, trust_env=False) as client:
        _check_ok(await client.get(url))


async def envoy_live(admin_socket: Path) -> None:
    """Envoy's admin ``/ready``, over its Unix socket, answers ``LIVE``."""
    async with envoy_admin_client(admin_socket, timeout=_TIMEOUT) as client:
        response = _check_ok(await client.get("/ready"))
    if response.text.strip() != "LIVE":
        raise ProbeError(f"envoy admin /ready answered {response.text.strip()!r}, not 'LIVE'")


def _check_ok(response: httpx.Response) -> httpx.Response:
    if response.status_code != httpx.codes.OK:
        raise ProbeError(
            f"GET {response.request.url} answered {response.status_code}: {response.text.strip()}"
        )
    return response


async def postgres_select_one(dsn: str) -> None:
    """Connect and run ``SELECT 1``."""
    connection = await asyncpg.connect(dsn, timeout=_TIMEOUT)
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close(timeout=_TIMEOUT)


async def redis_ping(url: str) -> None:
    """``PING`` with the credentials in ``url``."""
    client = aioredis.Redis.from_url(url, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT)
    try:
        if not await client.ping():
            raise ProbeError("PING was not answered with PONG")
    finally:
        await client.aclose()


async def grpc_serving(target: str, service: str = "") -> None:
    """``grpc.health.v1.Health/Check`` answers SERVING."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=_TIMEOUT)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        state = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        raise ProbeError(f"{target} health is {state}")


async def connect_nats(settings: MeshSettings) -> NatsClient:
    """A NATS connection for one probe: no reconnects, short timeouts, quiet on errors."""

    async def _quiet(_: Exception) -> None:
        # A failed probe is reported by its exception; the client's default callback would
        # also log every refused connection.
        return None

    credentials = settings.nats_credentials
    return await nats.connect(
        servers=settings.nats_servers,
        user=credentials[0] if credentials else None,
        password=credentials[1] if credentials else None,
        inbox_prefix=settings.nats.inbox_prefix,
        connect_timeout=_TIMEOUT,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        error_cb=_quiet,
    )


async def nats_connect(settings: MeshSettings) -> None:
    """Connect (with the mesh's credentials) and round-trip a flush."""
    client = await connect_nats(settings)
    try:
        await client.flush(timeout=int(_TIMEOUT))
    finally:
        await client.close()


async def registry_has(settings: MeshSettings, service: str, pid: int | None) -> None:
    """The registry holds an instance of ``service`` registered by process ``pid``."""
    client = await connect_nats(settings)
    try:
        registry = await Registry.open(client.jetstream(), settings.registry)
        instances = await registry.list()
    finally:
        await client.close()
    if not any(i.service == service and i.pid == pid for i in instances):
        raise ProbeError(f"no {service} instance with pid {pid} in the registry yet")


async def agent_heartbeat_since(settings: MeshSettings, agent_id: str, pid: int | None) -> None:
    """The agent registry holds a heartbeat of ``agent_id`` started by process ``pid``.

    An agent's heartbeat carries no pid; it is this process's once its ``started_at`` is not
    older than the process (a dead predecessor's entry may linger until its TTL).
    """
    try:
        started = psutil.Process(pid).create_time() if pid is not None else 0.0
    except psutil.NoSuchProcess as exc:
        raise ProbeError(f"process {pid} of agent {agent_id} is gone") from exc
    client = await connect_nats(settings)
    try:
        kv = await client.jetstream(timeout=_TIMEOUT).key_value(AGENTS_BUCKET)
        entry = await kv.get(agent_id)
    except KeyNotFoundError as exc:
        raise ProbeError(f"no heartbeat of agent {agent_id} yet") from exc
    finally:
        await client.close()
    heartbeat = AgentHeartbeat.FromString(entry.value or b"")
    # Wall clock on both sides; a second of slack for the clock's and the start's resolution.
    if not entry.value or heartbeat.started_at.ToMicroseconds() / 1e6 < started - 1.0:
        raise ProbeError(f"the heartbeat of agent {agent_id} is not this process's yet")
