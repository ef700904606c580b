"""Wiring of the inference service: backends, engine, metrics, guard, handlers, host.

Besides its gRPC service, each instance serves the OpenAI-compatible API (``/openai/v1``,
:mod:`.openai_api`) over HTTP on its second socket, on the same engine and guard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Final

import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from sutazai.inference.v1 import inference_service_pb2, inference_service_pb2_grpc
from sutazai.runtime.audit import AuditLog
from sutazai.runtime.auth import Guard, open_guard
from sutazai.runtime.http_server import HttpSocketServer
from sutazai.runtime.postgres import open_pool
from sutazai.runtime.server import (
    ServiceHost,
    Servicer,
    join_registry,
    serve_until_stopped,
)
from sutazai.runtime.settings import (
    InferenceSettings,
    MeshSettings,
    RemoteBackendSettings,
    ServiceSettings,
)
from sutazai.services.inference.domain import Backend
from sutazai.services.inference.embedded import EmbeddedBackend
from sutazai.services.inference.engine import BackendLimits, Inference
from sutazai.services.inference.errors import InferenceError
from sutazai.services.inference.handlers import InferenceHandlers
from sutazai.services.inference.metrics import InferenceMetrics
from sutazai.services.inference.ollama import OllamaBackend
from sutazai.services.inference.openai_api.calls import EngineCalls
from sutazai.services.inference.openai_api.handlers import OpenAIHandlers, http_exception
from sutazai.services.inference.openai_compat import OpenAICompatibleBackend
from sutazai.services.inference.responder import GenerateResponder

log = structlog.get_logger(__name__)

SERVICE_NAME: Final = "inference"
"""The table of ``deploy/mesh.toml``, registry key prefix and principal of this service."""
GRPC_SERVICE: Final[str] = inference_service_pb2.DESCRIPTOR.services_by_name[
    "InferenceService"
].full_name


async def serve(mesh: MeshSettings, service: ServiceSettings) -> None:
    """Run one instance until SIGTERM/SIGINT or cancellation."""
    await serve_until_stopped(build, mesh, service)


async def build(
    mesh: MeshSettings, service: ServiceSettings, stack: contextlib.AsyncExitStack
) -> ServiceHost:
    """Create the instance's connections and backends (closed by ``stack``) and its host."""
    nc, registry = await join_registry(mesh, SERVICE_NAME, stack)
    # The audit log of operator calls (LoadModel, UnloadModel, ResetBreaker); min_size=0 so
    # the service starts while PostgreSQL is away.
    pool = await open_pool(mesh.postgres_dsn, min_size=0, max_size=2)
    stack.push_async_callback(pool.close)
    guard_redis = aioredis.Redis.from_url(mesh.redis_url, health_check_interval=10)
    stack.push_async_callback(guard_redis.aclose)
    guard = open_guard(
        mesh, [GRPC_SERVICE], redis=guard_redis, audit=AuditLog(pool), js=nc.jetstream()
    )
    metrics_registry = CollectorRegistry()
    metrics = InferenceMetrics(metrics_registry)
    engine = open_engine(mesh.inference, metrics)
    stack.push_async_callback(engine.close)
    # Agents' generations over NATS (sutazai.inference.generate), drained with the gRPC calls.
    responder = GenerateResponder(
        nc,
        engine,
        mesh.inference.nats,
        record=metrics.nats_request,
        grace_seconds=service.grace_seconds,
    )
    background: list[Callable[[], Coroutine[Any, Any, None]]] = [responder.run]
    if mesh.inference.embedded.enabled and mesh.inference.embedded.preload:
        background.append(_preloader(engine, mesh.inference.embedded.model_name))
    return ServiceHost(
        name=SERVICE_NAME,
        mesh=mesh,
        settings=service,
        servicers=[
            Servicer(
                name=GRPC_SERVICE,
                implementation=InferenceHandlers(engine),
                add_to_server=inference_service_pb2_grpc.add_InferenceServiceServicer_to_server,
            )
        ],
        registry=registry,
        guard=guard,
        background=background,
        on_drain=[responder.drain],
        http_server=openai_api(mesh, engine, guard),
        metrics_registry=metrics_registry,
    )


def openai_api(mesh: MeshSettings, engine: Inference, guard: Guard) -> HttpSocketServer:
    """The OpenAI-compatible API on ``engine``, behind ``guard``, as an HTTP server."""
    settings = mesh.openai_api
    handlers = OpenAIHandlers(
        EngineCalls(engine, guard, unary_timeout=settings.unary_timeout_seconds),
        max_body_bytes=settings.max_request_bytes,
        generation_timeout=settings.generation_timeout_seconds,
        keepalive_seconds=settings.keepalive_seconds,
    )
    return HttpSocketServer(
        Starlette(routes=handlers.routes(), exception_handlers={HTTPException: http_exception}),
        on_stop=handlers.stop_serving,
    )


def open_engine(settings: InferenceSettings, metrics: InferenceMetrics) -> Inference:
    """The engine over every configured backend (embedded first: it wins a name clash)."""
    backends: list[tuple[Backend, BackendLimits]] = []
    embedded = settings.embedded
    if embedded.enabled:
        backends.append(
            (
                EmbeddedBackend(embedded),
                BackendLimits(
                    max_concurrency=embedded.max_concurrency,
                    max_queue=embedded.max_queue,
                    failure_threshold=embedded.breaker.failure_threshold,
                    cooldown_seconds=embedded.breaker.cooldown_seconds,
                ),
            )
        )
    if settings.ollama.url:
        backends.append((OllamaBackend(settings.ollama), _limits(settings.ollama)))
    if settings.openai.url:
        backends.append((OpenAICompatibleBackend(settings.openai), _limits(settings.openai)))
    return Inference(
        backends,
        default_model=settings.default_model,
        default_embedding_model=settings.default_embedding_model,
        recorder=metrics,
    )


def _limits(settings: RemoteBackendSettings) -> BackendLimits:
    return BackendLimits(
        max_concurrency=settings.max_concurrency,
        max_queue=settings.max_queue,
        failure_threshold=settings.breaker.failure_threshold,
        cooldown_seconds=settings.breaker.cooldown_seconds,
    )


def _preloader(engine: Inference, model: str) -> Callable[[], Coroutine[Any, Any, None]]:
    async def preload() -> None:
        try:
            _, load_ms = await engine.load(model)
            log.info("inference.preloaded", model=model, load_ms=round(load_ms, 1))
        except InferenceError as exc:
            # Serving goes on: the first request tries again, and the breaker counts it.
            log.error("inference.preload_failed", model=model, error=str(exc))
        # A background job that returns would stop the host (see ServiceHost.run).
        await asyncio.Event().wait()

    return preload
