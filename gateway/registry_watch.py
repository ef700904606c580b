"""An in-memory mirror of the service registry, kept current by watching its KV bucket.

On every (re)start of the watch the mirror is first replaced by a complete listing, so an
instance deleted while the gateway was cut off from NATS does not linger; the watch then
replays current entries (and recent delete markers) and follows live changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Final

import nats.errors
import stamina
import structlog

from sutazai.gateway.errors import GatewayError
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.errors import RegistryError
from sutazai.runtime.registry import Registry, RegistryEvent

log = structlog.get_logger(__name__)

Instances = Mapping[str, ServiceInstance]
"""Live instances by registry key."""

ChangeCallback = Callable[[Instances], Awaitable[None]]
Admission = Callable[[str, ServiceInstance], ServiceInstance | None]
"""What of an entry (by key) may be mirrored; ``None`` drops it (see ``registry_trust``)."""
RegistryOpener = Callable[[], Awaitable[Registry]]
"""Connects (as needed) and binds the registry; called again after a failure."""


class WatchEndedError(GatewayError):
    """The registry watch stopped without an error; it is restarted like a failure."""


TRANSIENT_ERRORS: Final = (
    RegistryError,
    WatchEndedError,
    nats.errors.Error,
    OSError,
    TimeoutError,
)
"""Failures worth retrying: NATS unreachable or restarting, a watch that died or ended."""


class RegistryMirror:
    """Follows the registry and calls ``on_change`` with the full instance map on each change.

    ``on_change`` is awaited before the next event is read, so consumers never see a map
    mutate underneath them (each call gets a read-only copy).
    """

    def __init__(
        self,
        open_registry: RegistryOpener,
        on_change: ChangeCallback,
        *,
        admit: Admission,
        retry_wait_max: float = 5.0,
    ) -> None:
        """Mirror what ``admit`` accepts of the registry ``open_registry`` returns.

        Back off at most ``retry_wait_max`` after a failure.
        """
        self._open_registry = open_registry
        self._on_change = on_change
        self._admit = admit
        self._retry_wait_max = retry_wait_max
        self._instances: dict[str, ServiceInstance] = {}
        self._synced = asyncio.Event()
        self._published = False

    @property
    def instances(self) -> Instances:
        """The current instances (read-only view)."""
        return MappingProxyType(self._instances)

    async def wait_synced(self) -> None:
        """Wait until the current :meth:`run` has read the registry completely once."""
        await self._synced.wait()

    async def run(self) -> None:
        """Mirror the registry until cancelled, retrying with back-off on NATS failures.

        Until the first complete read, :meth:`wait_synced` waits.
        """
        self._synced.clear()
        async for attempt in stamina.retry_context(
            on=TRANSIENT_ERRORS,
            attempts=None,
            timeout=None,
            wait_initial=min(0.1, self._retry_wait_max),
            wait_max=self._retry_wait_max,
            wait_jitter=self._retry_wait_max / 5,
        ):
            with attempt:
                await self._sync_and_follow()

    async def _sync_and_follow(self) -> None:
        registry = await self._open_registry()
        listed: dict[str, ServiceInstance] = {}
        async for event in registry.watch(follow=False):
            admitted = self._admitted(event)
            if admitted is not None:
                listed[event.key] = admitted
        await self._replace(listed)
        self._synced.set()
        log.info("registry.synced", instances=len(listed))
        async for event in registry.watch():
            if self._apply(event):
                await self._publish()
        raise WatchEndedError("registry watch ended")

    async def _replace(self, instances: dict[str, ServiceInstance]) -> None:
        if instances != self._instances or not self._published:
            self._instances = instances
            await self._publish()

    def _admitted(self, event: RegistryEvent) -> ServiceInstance | None:
        if event.instance is None:
            return None
        return self._admit(event.key, event.instance)

    def _apply(self, event: RegistryEvent) -> bool:
        admitted = self._admitted(event)
        if admitted is None:
            # A delete, or an entry refused (perhaps rewritten after being accepted).
            return self._instances.pop(event.key, None) is not None
        previous = self._instances.get(event.key)
        self._instances[event.key] = admitted
        return previous is None or _routing_differs(previous, admitted)

    async def _publish(self) -> None:
        self._published = True
        await self._on_change(MappingProxyType(dict(self._instances)))


def _routing_differs(a: ServiceInstance, b: ServiceInstance) -> bool:
    """Whether two versions of an entry differ in anything but heartbeat bookkeeping.

    Each heartbeat rewrites the entry with a new ``heartbeat_at``; that alone must not rebuild
    the snapshot.
    """
    return _routing(a) != _routing(b)


def _routing(i: ServiceInstance) -> tuple[object, ...]:
    return (i.host, i.port, i.socket_path, tuple(i.grpc_services), i.version, i.instance_id)
