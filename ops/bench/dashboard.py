"""How fast the dashboard answers keys, idle and while the edge takes paced load.

The dashboard runs headless in this process on a real :class:`~sutazai.client.MeshClient`
(with its live streams), resuming the session ``sutazai login`` saved. Two kinds of key are
measured (:class:`~sutazai.tui.keytimer.KeyTimer`): screen switches between Overview and
Services (both fed by streams, so each is a full repaint) and cursor moves in the Overview's
components table. The load comes
from a separate process (``python -m sutazai.ops.bench load``) so it competes with the
dashboard for the CPU as another client on the host would, not for its event loop.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from dataclasses import asdict, dataclass

from sutazai.client import MeshClient
from sutazai.ops.bench.errors import BenchError
from sutazai.runtime.settings import MeshSettings
from sutazai.tui.app import SutazaiApp, steady_collector
from sutazai.tui.errors import KeyTimingError
from sutazai.tui.keytimer import KeyTimer
from sutazai.tui.settings import DashboardSettings

_READY_TIMEOUT = 30.0
_FIRST_VISITS = 4
"""Unmeasured switches before the idle phase: Services is composed on the first, and Textual
styles each screen again on its first return (``App.switch_mode`` compares stylesheet
versions per screen)."""


@dataclass(frozen=True, slots=True)
class KeyLatency:
    """Latency of the measured key presses, in milliseconds."""

    presses: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    over_100_ms: int


def _summary(latencies: list[float]) -> KeyLatency:
    ordered = sorted(latencies)
    return KeyLatency(
        presses=len(ordered),
        p50_ms=round(statistics.median(ordered), 2),
        p99_ms=round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 2),
        max_ms=round(ordered[-1], 2),
        over_100_ms=sum(1 for latency in ordered if latency > 100),
    )


async def _phase(timer: KeyTimer, presses: int) -> dict[str, object]:
    switches = await timer.screen_switches(presses)
    moves = await timer.cursor_moves(presses)
    return {"screen_switch": asdict(_summary(switches)), "cursor_move": asdict(_summary(moves))}


async def _load(rate: float, seconds: float, nice: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sutazai.ops.bench",
        "load",
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--nice",
        str(nice),
        stdout=asyncio.subprocess.PIPE,
    )


async def measure(
    settings: MeshSettings,
    *,
    rate: float,
    presses: int,
    size: tuple[int, int],
    load_nice: int = 0,
) -> dict[str, object]:
    """Key latency idle, then under ``rate`` requests/s of background load on the edge.

    ``load_nice`` lowers the load generator's CPU priority (the edge's, the services' and the
    dashboard's stay as they are).
    """
    steady_collector()  # as `sutazai tui` does
    async with MeshClient(settings) as client:
        app = SutazaiApp(client, DashboardSettings())
        timer = KeyTimer(app)
        async with app.run_test(size=size, message_hook=timer):
            try:
                await timer.until_mode("overview", _READY_TIMEOUT)
            except KeyTimingError as exc:
                raise BenchError(f"{exc}: sign in first with 'sutazai login'") from exc
            # A screen's first visits compose it and style it; they are reported apart, and
            # every measured key switches between screens already shown.
            first_visits = [round(ms, 2) for ms in await timer.screen_switches(_FIRST_VISITS)]
            idle = await _phase(timer, presses)
            # Long enough to cover both loaded phases (keys 0.1 s apart) plus the ramp-up.
            load = await _load(rate, seconds=presses * 0.3 + 10, nice=load_nice)
            await asyncio.sleep(3)  # the load's interpreter start and first second of calls
            loaded = await _phase(timer, presses)
            output, _ = await load.communicate()
    if load.returncode != 0:
        raise BenchError(f"the load process failed with exit code {load.returncode}")
    return {
        "benchmark": "dashboard_keys",
        "size": f"{size[0]}x{size[1]}",
        "first_visits_ms": first_visits,
        "idle": idle,
        "under_load": loaded,
        "load": json.loads(output),
        "load_nice": load_nice,
    }
