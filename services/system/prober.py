"""Runs every probe on a fixed cadence and records each round on the status board."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

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
            await asyncio.sleep(self._interval)
