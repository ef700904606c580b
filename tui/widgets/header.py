"""The dashboard's one-line header: title, a tab per screen the role may open, who is in."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.events import Click, Resize
from textual.widgets import Static

from sutazai.tui.access import ScreenEntry

TITLE = "SutazAI Mesh"
WIDE = 100
"""From this width on the header shows its title (``MeshScreen``'s breakpoint)."""


class ScreenTab(Static):
    """One screen's tab: its key and title (only its key when compact); a click opens it."""

    def __init__(self, entry: ScreenEntry, *, active: bool) -> None:
        """A tab for ``entry``, highlighted when ``active``."""
        super().__init__(self.label(entry), classes="-active" if active else "")
        self.entry = entry
        self.active = active

    @staticmethod
    def label(entry: ScreenEntry, *, compact: bool = False) -> Text:
        """`` 1 Overview `` (`` 1 `` when compact)."""
        return Text(f" {entry.key} " if compact else f" {entry.key} {entry.title} ")

    def set_compact(self, compact: bool) -> None:
        """Show only the key (``compact``), or key and title; the active tab keeps its title."""
        self.update(self.label(self.entry, compact=compact and not self.active))

    async def on_click(self, event: Click) -> None:
        """Open this tab's screen."""
        event.stop()
        await self.run_action(f"app.show('{self.entry.name}')")


class DashboardHeader(Horizontal):
    """``SutazAI Mesh  1 Overview  2 Services …  alice (admin)``.

    The tabs double as the screen keys' legend, so the footer keeps its room for the current
    screen's own keys. When every tab's title and the user do not fit the width (eight tabs of
    an admin in 80 columns), the other tabs shrink to their keys and the current one keeps its
    title; the palette still names every screen.
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
        yield Static(Text(TITLE), id="title")
        for entry in self._screens:
            yield ScreenTab(entry, active=entry.name == self._current)
        yield Static(Text(self._who), id="who")

    def needed(self, width: int) -> int:
        """Cells the header takes at ``width`` with every tab's title shown."""
        title = len(TITLE) + 2 if width >= WIDE else 0
        tabs = sum(len(ScreenTab.label(entry).plain) for entry in self._screens)
        return title + tabs + len(self._who) + 2

    def on_resize(self, event: Resize) -> None:
        """Shrink the other tabs to their keys when the titles do not fit."""
        compact = self.needed(event.size.width) > event.size.width
        for tab in self.query(ScreenTab):
            tab.set_compact(compact)
