"""How fast the dashboard answers keys, idle and while the edge takes paced load.

The dashboard runs headless in this process on a real :class:`~sutazai.client.MeshClient`
(with its live streams), resuming the session ``sutazai login`` saved. Two kinds of key are
measured: screen switches between Overview and Services (both fed by streams, so each is a full
repaint) and cursor moves in the Overview's components table. A key's latency runs from the key
event's creation (its own timestamp) to the first refresh after the app handled it, observed
through Textual's message hook, so the measurement adds no polling of its own. The load comes
from a separate process (``python -m sutazai.ops.bench load``) so it competes with the
dashboard for the CPU as another client on the host would, not for its event loop.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from textual import events
from textual.message import Message
from textual.widgets import DataTable

from sutazai.client import MeshClient
from sutazai.runtime.settings import MeshSettings
from sutazai.tui.app import SutazaiApp
from sutazai.tui.settings import DashboardSettings

_SWITCHES = (("2", "services"), ("1", "overview"))
"""Screen switches: Overview and Services, both fed by live streams, so each is a full repaint."""
_MOVES = ("down", "up")
"""Cursor moves in the Overview's components table."""
_READY_TIMEOUT = 30.0
_KEY_TIMEOUT = 10.0


class BenchError(RuntimeError):
    """The dashboard could not be measured (no session, mesh not up, a key never answered)."""


@dataclass(frozen=True, slots=True)
class KeyLatency:
    """Latency of the measured key presses, in milliseconds."""

    presses: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    over_100_ms: int


class _KeyWatch:
    """Message hook: resolves a future at the first refresh after an expected message.

    The expected message is the sign that the key was handled: the new screen's
    ``ScreenResume`` for a screen switch, the table's ``RowHighlighted`` for a cursor move.
    """

    def __init__(self, app: SutazaiApp) -> None:
        self.app = app
        self._expected: Callable[[Message], bool] | None = None
        self._answered: asyncio.Future[float] | None = None

    def expect(self, expected: Callable[[Message], bool]) -> asyncio.Future[float]:
        """Arm the hook for the next key."""
        self._expected = expected
        self._answered = asyncio.get_running_loop().create_future()
        return self._answered

    def __call__(self, message: Message) -> None:
        answered = self._answered
        if answered is None or self._expected is None or not self._expected(message):
            return
        self._answered = None

        def refreshed() -> None:
            if not answered.done():
                answered.set_result(time.monotonic())

        self.app.screen.call_after_refresh(refreshed)

    async def press(self, key: str, expected: Callable[[Message], bool], what: str) -> float:
        """Send ``key`` as the terminal would; its latency in milliseconds."""
        answered = self.expect(expected)
        event = events.Key(key, key if len(key) == 1 else None)
        event.set_sender(self.app)
        driver = self.app._driver
        if driver is None:
            raise BenchError("the dashboard has no driver")
        driver.send_message(event)
        try:
            done = await asyncio.wait_for(answered, _KEY_TIMEOUT)
        except TimeoutError as exc:
            raise BenchError(f"key {key!r} did not {what} within {_KEY_TIMEOUT:g} s") from exc
        # Textual stamps events with time.monotonic (textual._time on Linux).
        return (done - event.time) * 1e3


def _summary(latencies: list[float]) -> KeyLatency:
    ordered = sorted(latencies)
    return KeyLatency(
        presses=len(ordered),
        p50_ms=round(statistics.median(ordered), 2),
        p99_ms=round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 2),
        max_ms=round(ordered[-1], 2),
        over_100_ms=sum(1 for latency in ordered if latency > 100),
    )


async def _switches(watch: _KeyWatch, count: int) -> list[float]:
    latencies = []
    for index in range(count):
        key, mode = _SWITCHES[index % len(_SWITCHES)]

        def resumed(message: Message, mode: str = mode) -> bool:
            return isinstance(message, events.ScreenResume) and watch.app.current_mode == mode

        latencies.append(await watch.press(key, resumed, f"bring up {mode}"))
        # A person does not type keys back to back; a tenth of a second between keys also
        # lets the streams' updates land in between, as they would.
        await asyncio.sleep(0.1)
    return latencies


async def _moves(watch: _KeyWatch, count: int) -> list[float]:
    table = watch.app.screen.query_one("#components", DataTable)
    table.focus()
    latencies = []
    for index in range(count):
        key = _MOVES[index % len(_MOVES)]

        def highlighted(message: Message) -> bool:
            return isinstance(message, DataTable.RowHighlighted) and message.data_table is table

        latencies.append(await watch.press(key, highlighted, "move the table's cursor"))
        await asyncio.sleep(0.1)
    return latencies


async def _phase(watch: _KeyWatch, presses: int) -> dict[str, object]:
    switches = await _switches(watch, presses)
    moves = await _moves(watch, presses)
    return {"screen_switch": asdict(_summary(switches)), "cursor_move": asdict(_summary(moves))}


async def _ready(app: SutazaiApp) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    while app.current_mode != "overview":
        if time.monotonic() > deadline:
            raise BenchError(
                "the dashboard did not open the overview: sign in first with 'sutazai login'"
            )
        await asyncio.sleep(0.05)


async def _load(rate: float, seconds: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sutazai.ops.bench",
        "load",
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )


async def measure(
    settings: MeshSettings, *, rate: float, presses: int, size: tuple[int, int]
) -> dict[str, object]:
    """Key latency idle, then under ``rate`` requests/s of background load on the edge."""
    async with MeshClient(settings) as client:
        app = SutazaiApp(client, DashboardSettings())
        watch = _KeyWatch(app)
        async with app.run_test(size=size, message_hook=watch):
            await _ready(app)
            idle = await _phase(watch, presses)
            # Long enough to cover both loaded phases (keys 0.1 s apart) plus the ramp-up.
            load = await _load(rate, seconds=presses * 0.3 + 10)
            await asyncio.sleep(3)  # the load's interpreter start and first second of calls
            loaded = await _phase(watch, presses)
            output, _ = await load.communicate()
    if load.returncode != 0:
        raise BenchError(f"the load process failed with exit code {load.returncode}")
    return {
        "benchmark": "dashboard_keys",
        "size": f"{size[0]}x{size[1]}",
        "idle": idle,
        "under_load": loaded,
        "load": json.loads(output),
    }
