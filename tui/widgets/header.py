"""The dashboard's one-line header: title, a tab per screen the role may open, who is in."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.events import Click
from textual.widgets import Static

from sutazai.tui.access import ScreenEntry


class ScreenTab(Static):
    """One screen's tab: its key and title; a click opens it."""

    def __init__(self, entry: ScreenEntry, *, active: bool) -> None:
        """A tab for ``entry``, highlighted when ``active``."""
        super().__init__(Text(f" {entry.key} {entry.title} "), classes="-active" if active else "")
        self.entry = entry

    async def on_click(self, event: Click) -> None:
        """Open this tab's screen."""
        event.stop()
        await self.run_action(f"app.show('{self.entry.name}')")


class DashboardHeader(Horizontal):
    """``SutazAI Mesh  1 Overview  2 Services …  alice (admin)``.

    The tabs double as the screen keys' legend, so the footer keeps its room for the current
    screen's own keys.
    """

    DEFAULT_CSS = """
    DashboardHeader {
        height: 1;
        background: $panel;
        dock: top;
    }
    DashboardHeader #title {
        width: auto;
        padding: 0 1;
        text-style: bold;
        color: $text-accent;
    }
    DashboardHeader ScreenTab {
        width: auto;
        color: $text-muted;
    }
    DashboardHeader ScreenTab:hover {
        background: $boost;
    }
    DashboardHeader ScreenTab.-active {
        background: $primary;
        color: $text;
        text-style: bold;
    }
    DashboardHeader #who {
        width: 1fr;
        content-align: right middle;
        padding: 0 1;
    }
    """

    def __init__(self, screens: list[ScreenEntry], current: str, who: str) -> None:
        """Tabs for ``screens``, ``current`` highlighted, ``who`` on the right."""
        super().__init__()
        self._screens = screens
        self._current = current
        self._who = who

    def compose(self) -> ComposeResult:
        """Lay out the widgets."""
        yield Static(Text("SutazAI Mesh"), id="title")
        for entry in self._screens:
            yield ScreenTab(entry, active=entry.name == self._current)
        yield Static(Text(self._who), id="who")
