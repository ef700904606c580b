"""Timing how fast the dashboard answers keys, for the benchmark (``sutazai.ops.bench``).

A key is sent as the terminal driver would send it, and its latency runs from the key event's
creation (Textual stamps every message with ``time.monotonic``) to the first refresh after the
app handled it. "Handled" is a message the key causes, seen through Textual's message hook:
the new screen's ``ScreenResume`` for a screen switch, the table's ``RowHighlighted`` for a
cursor move. So the timing adds no polling of its own to the app it measures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from textual import events
from textual.app import App
from textual.message import Message
from textual.widgets import DataTable

from sutazai.tui.errors import KeyTimingError

SCREEN_SWITCHES = (("2", "services"), ("1", "overview"))
"""Overview and Services, both fed by live streams, so each switch is a full repaint."""
CURSOR_MOVES = ("down", "up")
"""Moves in the Overview's components table."""
KEY_TIMEOUT = 10.0
"""A key not answered within this many seconds fails the measurement."""
_BETWEEN_KEYS = 0.1
"""A person does not type back to back; the pause also lets stream updates land in between."""


class KeyTimer:
    """Install as ``App.run_test(message_hook=...)``; then :meth:`press` keys and time them."""

    def __init__(self, app: App[None]) -> None:
        self.app = app
        self._expected: Callable[[Message], bool] | None = None
        self._answered: asyncio.Future[float] | None = None

    def __call__(self, message: Message) -> None:
        """Textual's message hook: resolve the pending key at the refresh after its sign."""
        answered = self._answered
        if answered is None or self._expected is None or not self._expected(message):
            return
        self._answered = None

        def refreshed() -> None:
            if not answered.done():
                answered.set_result(time.monotonic())

        self.app.screen.call_after_refresh(refreshed)

    async def press(self, key: str, handled: Callable[[Message], bool], what: str) -> float:
        """Send ``key``; milliseconds until the refresh after a message ``handled`` accepts.

        Raises:
            KeyTimingError: the app has no driver, or the key was not answered in time.

        """
        self._expected = handled
        answered = self._answered = asyncio.get_running_loop().create_future()
        event = events.Key(key, key if len(key) == 1 else None)
        event.set_sender(self.app)
        driver = self.app._driver
        if driver is None:
            raise KeyTimingError("the dashboard is not running")
        driver.send_message(event)
        try:
            done = await asyncio.wait_for(answered, KEY_TIMEOUT)
        except TimeoutError as exc:
            raise KeyTimingError(f"key {key!r} did not {what} within {KEY_TIMEOUT:g} s") from exc
        handled_at: float = done
        return (handled_at - event.time) * 1e3

    async def screen_switches(self, count: int) -> list[float]:
        """Switch between Overview and Services ``count`` times; each latency in ms."""
        latencies = []
        for index in range(count):
            key, mode = SCREEN_SWITCHES[index % len(SCREEN_SWITCHES)]

            def resumed(message: Message, mode: str = mode) -> bool:
                return isinstance(message, events.ScreenResume) and self.app.current_mode == mode

            latencies.append(await self.press(key, resumed, f"bring up {mode}"))
            await asyncio.sleep(_BETWEEN_KEYS)
        return latencies

    async def cursor_moves(self, count: int) -> list[float]:
        """Move the Overview's components cursor ``count`` times; each latency in ms."""
        table = self.app.screen.query_one("#components", DataTable)
        table.focus()
        latencies = []
        for index in range(count):

            def highlighted(message: Message) -> bool:
                return isinstance(message, DataTable.RowHighlighted) and message.data_table is table

            key = CURSOR_MOVES[index % len(CURSOR_MOVES)]
            latencies.append(await self.press(key, highlighted, "move the table's cursor"))
            await asyncio.sleep(_BETWEEN_KEYS)
        return latencies

    async def until_mode(self, mode: str, within: float) -> None:
        """Wait until the app shows ``mode`` (e.g. the overview after resuming a session).

        Raises:
            KeyTimingError: it did not within ``within`` seconds.

        """
        deadline = time.monotonic() + within
        while self.app.current_mode != mode:
            if time.monotonic() > deadline:
                raise KeyTimingError(f"the dashboard did not show {mode} within {within:g} s")
            await asyncio.sleep(0.05)
