"""Runs every probe on a fixed cadence (and at once after a registry change), records rounds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.registry import Registry
from sutazai.services.system.domain import MeshStatus, StatusBoard
from sutazai.services.system.probes import Probe

log = structlog.get_logger(__name__)


class Prober:
    """Probes all components concurrently, one round every ``interval`` seconds."""

    def __init__(self, probes: Sequence[Probe], board: StatusBoard, interval: float) -> None:
        self._probes = probes
        self._board = board
        self._interval = interval
        self._round: asyncio.Future[MeshStatus] | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Start the next scheduled round now (or right after the one in progress)."""
        self._wake.set()

    async def probe_once(self) -> MeshStatus:
        """Run a round now, or join the one in progress, and return its result."""
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._probe_round())
        # Shielded: one caller giving up (deadline, cancellation) must not cancel the round the
        # other callers are waiting for.
        return await asyncio.shield(self._round)

    async def _probe_round(self) -> MeshStatus:
        rounds = await asyncio.gather(*(probe() for probe in self._probes))
        status = self._board.apply_round(
            (outcome for outcomes in rounds for outcome in outcomes), datetime.now(UTC)
        )
        log.debug("system.probed", overall=status.overall.value)
        return status

    async def run(self) -> None:
        """Probe forever, logging every change of the overall state."""
        previous = self._board.snapshot().overall
        while True:
            # Cleared before the round: a change seen while it runs earns another round.
            self._wake.clear()
            status = await self.probe_once()
            if status.overall is not previous:
                unhealthy = [c.name for c in status.components if c.last_error]
                log.info(
                    "system.state_changed",
                    overall=status.overall.value,
                    previous=previous.value,
                    unhealthy=unhealthy,
                )
                previous = status.overall
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()


RETRY_SECONDS = 1.0


async def follow_registry(registry: Registry, prober: Prober) -> None:
    """Wake the prober whenever an instance appears, goes, or is replaced (new process).

    A heartbeat rewrites an entry every few seconds without changing who it is; those puts do
    not count, or every heartbeat would cost a probe round. Losing the watch (NATS away) is
    logged and the watch reopened: this must never end the instance.
    """
    while True:
        # The watch replays every entry first, so a reopened watch starts from scratch.
        known: dict[str, tuple[object, ...]] = {}
        try:
            async for event in registry.watch():
                identity = None if event.instance is None else _identity(event.instance)
                if known.get(event.key) != identity:
                    if identity is None:
                        known.pop(event.key, None)
                    else:
                        known[event.key] = identity
                    prober.wake()
        except Exception as exc:  # any failure: reopen after a pause
            log.warning("system.registry_watch_lost", error=str(exc))
        await asyncio.sleep(RETRY_SECONDS)


def _identity(instance: ServiceInstance) -> tuple[object, ...]:
    return (
        instance.host,
        instance.port,
        instance.socket_path,
        instance.pid,
        instance.started_at.ToNanoseconds(),
        instance.version,
        tuple(instance.grpc_services),
    )
