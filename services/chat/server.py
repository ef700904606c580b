"""Wiring of the chat service: PostgreSQL, Redis, the edge channel, guard, handlers, host."""

from __future__ import annotations

import contextlib
from typing import Final

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from sutazai.chat.v1 import chat_service_pb2, chat_service_pb2_grpc
from sutazai.client.channel import edge_channel
from sutazai.runtime.audit import AuditLog
from sutazai.runtime.auth import open_guard
from sutazai.runtime.interceptors import PropagatingClientInterceptor
from sutazai.runtime.postgres import open_pool
from sutazai.runtime.server import (
    ServiceHost,
    Servicer,
    join_registry,
    serve_until_stopped,
)
from sutazai.runtime.settings import MeshSettings, ServiceSettings
from sutazai.services.chat.cache import ReplyCache
from sutazai.services.chat.handlers import ChatHandlers
from sutazai.services.chat.metrics import ChatMetrics
from sutazai.services.chat.replies import Replies
from sutazai.services.chat.store import open_store
from sutazai.services.chat.upstream import InferenceClient

SERVICE_NAME: Final = "chat"
"""The table of ``deploy/mesh.toml``, registry key prefix and principal of this service."""
GRPC_SERVICE: Final[str] = chat_service_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name
POOL_SIZE = 10


async def serve(mesh: MeshSettings, service: ServiceSettings) -> None:
    """Run one instance until SIGTERM/SIGINT or cancellation."""
    await serve_until_stopped(build, mesh, service)


async def build(
    mesh: MeshSettings, service: ServiceSettings, stack: contextlib.AsyncExitStack
) -> ServiceHost:
    """Create the instance's connections (closed by ``stack``) and its unstarted host."""
    nc, registry = await join_registry(mesh, SERVICE_NAME, stack)
    pool = await open_pool(mesh.postgres_dsn, min_size=1, max_size=POOL_SIZE)
    stack.push_async_callback(pool.close)
    redis_client = aioredis.Redis.from_url(
        mesh.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=10
    )
    stack.push_async_callback(redis_client.aclose)
    # The inference service is reached like any client reaches it: through the edge, as the
    # caller (their own token), with the request id and the caller's deadline forwarded.
    channel = edge_channel(mesh, interceptors=[PropagatingClientInterceptor()])
    stack.push_async_callback(channel.close)
    guard = open_guard(
        mesh, [GRPC_SERVICE], redis=redis_client, audit=AuditLog(pool), js=nc.jetstream()
    )
    metrics_registry = CollectorRegistry()
    metrics = ChatMetrics(metrics_registry)
    settings = mesh.chat
    store = await open_store(pool, settings.max_conversation_messages)
    replies = Replies(
        store,
        ReplyCache(
            redis_client,
            key_prefix=mesh.redis.key_prefix(SERVICE_NAME),
            ttl_seconds=settings.cache_ttl_seconds,
        ),
        InferenceClient(channel, refresh_seconds=settings.models_refresh_seconds),
        settings,
        metrics,
    )
    # Partial replies of cancelled streams still being stored finish before the pool closes.
    stack.push_async_callback(replies.drain)
    return ServiceHost(
        name=SERVICE_NAME,
        mesh=mesh,
        settings=service,
        servicers=[
            Servicer(
                name=GRPC_SERVICE,
                implementation=ChatHandlers(replies, store, settings, metrics),
                add_to_server=chat_service_pb2_grpc.add_ChatServiceServicer_to_server,
            )
        ],
        registry=registry,
        guard=guard,
        metrics_registry=metrics_registry,
    )
