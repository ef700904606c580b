"""Timing how fast the dashboard answers keys, for the benchmark (``sutazai.ops.bench``).

A key is sent as the terminal driver would send it, and its latency runs from the key event's
creation (Textual stamps every message with ``time.monotonic``) to the moment the answer is on
the screen: the first frame the app hands to its terminal after it handled the key. "Handled"
is a message the key causes, seen through Textual's message hook: the new screen's
``ScreenResume`` for a screen switch, the table's ``RowHighlighted`` for a cursor move. A
screen switch is on the screen only with a frame that paints the whole new screen: Textual
holds frames back while it switches (``App.delay_update``) and may send a partial one first.

Frames are seen by wrapping the app's ``_display`` (where Textual writes a frame to the
terminal). The benchmark runs headless, where Textual renders each frame but skips turning it
into the terminal's escape sequences; the wrapper does that step, so a frame costs what it
costs in a terminal. Nothing here polls the app it measures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import RenderableType
from textual import events
from textual._compositor import CompositorUpdate, LayoutUpdate
from textual.app import App
from textual.message import Message
from textual.screen import Screen
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

Frame = Callable[[Screen[Any], CompositorUpdate], bool]
"""Whether a frame shows a key's answer (given the screen it paints and the update)."""


def any_frame(screen: Screen[Any], update: CompositorUpdate) -> bool:
    """Every frame after the key was handled shows its answer (a cursor move's rows)."""
    return True


def whole_screen(screen: Screen[Any], update: CompositorUpdate) -> bool:
    """A frame that paints all of ``screen`` (a screen switch is seen only once it is whole)."""
    return isinstance(update, LayoutUpdate) and update.region == screen.size.region


@dataclass(slots=True)
class _Pending:
    handled: Callable[[Message], bool]
    shown: Frame
    answered: asyncio.Future[float]
    seen: bool = False


class KeyTimer:
    """Install as ``App.run_test(message_hook=...)``; then :meth:`press` keys and time them."""

    def __init__(self, app: App[None]) -> None:
        self.app = app
        self._pending: _Pending | None = None
        self._frames = 0
        display = app._display

        def displayed(screen: Screen[Any], renderable: RenderableType | None) -> None:
            display(screen, renderable)
            self._frame(screen, renderable)

        # Textual has no public hook for "a frame went to the terminal"; this is its one call.
        setattr(app, "_display", displayed)  # noqa: B010 - assigning to a method is the point

    @property
    def frames(self) -> int:
        """Frames the app has written (or, headless, would have written) so far."""
        return self._frames

    def _frame(self, screen: Screen[Any], renderable: object) -> None:
        app = self.app
        # The conditions under which App._display writes (its batch holds frames back).
        if not isinstance(renderable, CompositorUpdate) or app._batch_count or not app._running:
            return
        if app.is_headless:
            renderable.render_segments(app.console)  # what the terminal driver would write
        self._frames += 1
        pending = self._pending
        if pending is None or not pending.seen or not pending.shown(screen, renderable):
            return
        self._pending = None
        if not pending.answered.done():
            pending.answered.set_result(time.monotonic())

    def __call__(self, message: Message) -> None:
        """Textual's message hook: note that the pending key was handled."""
        pending = self._pending
        if pending is not None and not pending.seen and pending.handled(message):
            pending.seen = True

    async def press(
        self,
        key: str,
        handled: Callable[[Message], bool],
        what: str,
        *,
        shown: Frame = any_frame,
    ) -> float:
        """Send ``key``; milliseconds until it is answered on the screen.

        That is the first frame ``shown`` accepts after a message ``handled`` accepts.

        Raises:
            KeyTimingError: the app has no driver, or the key was not answered in time.

        """
        answered: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pending = _Pending(handled, shown, answered)
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
        finally:
            self._pending = None
        shown_at: float = done
        return (shown_at - event.time) * 1e3

    async def screen_switches(self, count: int) -> list[float]:
        """Switch between Overview and Services ``count`` times; each latency in ms."""
        latencies = []
        for index in range(count):
            key, mode = SCREEN_SWITCHES[index % len(SCREEN_SWITCHES)]

            def resumed(message: Message, mode: str = mode) -> bool:
                return isinstance(message, events.ScreenResume) and self.app.current_mode == mode

            latencies.append(await self.press(key, resumed, f"bring up {mode}", shown=whole_screen))
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
