"""The service registry: one NATS KV entry per running service instance.

Keys are ``<service>.<instance id>`` and values are serialized
:class:`sutazai.registry.v1.registry_pb2.ServiceInstance` messages. The bucket has a TTL with
limit markers, so an instance that stops heart-beating (crash, SIGKILL) is removed by the
server itself and watchers see the removal as a delete event.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import nats.errors
import structlog
from google.protobuf.message import DecodeError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.errors import RegistryError
from sutazai.runtime.kv_watch import DELETE_OPERATIONS, watch_entries
from sutazai.runtime.settings import RegistrySettings

log = structlog.get_logger(__name__)


def new_instance_id() -> str:
    """A fresh instance id (12 hex digits): the second part of the instance's registry key."""
    return uuid.uuid4().hex[:12]


def instance_key(instance: ServiceInstance) -> str:
    """The KV key of an instance."""
    return f"{instance.service}.{instance.instance_id}"


def instance_label(service: str, instance_id: str) -> str:
    """How logs, status reports and Envoy name one instance: ``<service>/<instance id>``."""
    return f"{service}/{instance_id}"


@dataclass(frozen=True, slots=True)
class RegistryEvent:
    """A change seen while watching the registry."""

    kind: Literal["put", "delete"]
    key: str
    instance: ServiceInstance | None
    """The instance for ``put``; ``None`` for ``delete`` (expired or deregistered)."""


class Registry:
    """Reads and writes the registry bucket. Build it with :meth:`open`."""

    def __init__(self, kv: KeyValue, settings: RegistrySettings) -> None:
        self._kv = kv
        self._settings = settings

    @classmethod
    async def open(cls, js: JetStreamContext, settings: RegistrySettings) -> Registry:
        """Bind to the registry bucket, creating it on first use."""
        try:
            kv = await js.key_value(settings.bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=settings.bucket,
                    description="SutazAI service instances (sutazai.registry.v1.ServiceInstance)",
                    history=1,
                    ttl=settings.ttl_seconds,
                    # Without limit markers an entry that ages out vanishes silently and
                    # watchers (the gateway) would keep routing to a dead instance.
                    limit_marker_ttl=max(1.0, settings.heartbeat_seconds),
                )
            )
        return cls(kv, settings)

    @property
    def settings(self) -> RegistrySettings:
        """The settings the registry was opened with."""
        return self._settings

    async def put(self, instance: ServiceInstance) -> None:
        """Register or refresh an instance."""
        try:
            await self._kv.put(instance_key(instance), instance.SerializeToString())
        except Exception as exc:
            raise RegistryError(f"cannot register {instance_key(instance)}: {exc}") from exc

    async def remove(self, instance: ServiceInstance) -> None:
        """Deregister an instance; a missing entry is not an error."""
        try:
            await self._kv.delete(instance_key(instance))
        except (KeyNotFoundError, NotFoundError):
            return
        except Exception as exc:
            raise RegistryError(f"cannot deregister {instance_key(instance)}: {exc}") from exc

    async def list(self) -> list[ServiceInstance]:
        """Every live instance, sorted by service then instance id."""
        found: list[ServiceInstance] = []
        async for event in self.watch(follow=False):
            if event.instance is not None:
                found.append(event.instance)
        return sorted(found, key=lambda i: (i.service, i.instance_id))

    async def watch(self, *, follow: bool = True) -> AsyncIterator[RegistryEvent]:
        """Yield every current entry as a ``put``, then (with ``follow``) each live change."""
        try:
            entries = watch_entries(self._kv)
            async with contextlib.aclosing(entries):
                async for entry in entries:
                    if entry is None:
                        # End of the initial values.
                        if not follow:
                            return
                        continue
                    if entry.operation in DELETE_OPERATIONS:
                        yield RegistryEvent("delete", entry.key, None)
                        continue
                    instance = ServiceInstance()
                    try:
                        instance.ParseFromString(entry.value or b"")
                    except DecodeError:
                        log.warning("registry.malformed_entry", key=entry.key)
                        continue
                    yield RegistryEvent("put", entry.key, instance)
        except nats.errors.Error as exc:
            raise RegistryError(f"cannot watch the registry: {exc}") from exc


class Heartbeat:
    """Keeps one instance registered until stopped, then deregisters it.

    A failed refresh is logged and retried on the next beat rather than ending the process:
    the TTL is several beats long, so a brief NATS outage does not drop the instance.
    """

    def __init__(self, registry: Registry, instance: ServiceInstance) -> None:
        self._registry = registry
        self._instance = instance
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register now (failing loudly if the registry is unreachable), then keep beating."""
        self._instance.heartbeat_at.GetCurrentTime()
        await self._registry.put(self._instance)
        self._task = asyncio.create_task(
            self._beat(), name=f"heartbeat:{instance_key(self._instance)}"
        )

    async def stop(self) -> None:
        """Stop beating and deregister."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self._registry.remove(self._instance)
        except RegistryError as exc:
            log.warning("registry.deregister_failed", error=str(exc))

    async def _beat(self) -> None:
        interval = self._registry.settings.heartbeat_seconds
        while True:
            await asyncio.sleep(interval)
            self._instance.heartbeat_at.GetCurrentTime()
            try:
                await self._registry.put(self._instance)
            except RegistryError as exc:
                log.warning("registry.heartbeat_failed", error=str(exc))
