"""The banner shown across every screen while the mesh is unreachable."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from sutazai.tui.source import ConnectionState


class ConnectionBanner(Static):
    """Hidden while connected; a clear line saying what is wrong while not.

    It follows the app's ``connection`` reactive (fed by the client's
    ``on_connection_change``), so every screen shows the same state at once.
    """

    DEFAULT_CSS = """
    ConnectionBanner {
        display: none;
        height: auto;
        padding: 0 1;
        background: $error;
        color: $text;
        text-style: bold;
    }
    ConnectionBanner.-disconnected {
        display: block;
    }
    """

    def on_mount(self) -> None:
        """Start what the widget needs once it is mounted."""
        self.watch(self.app, "connection", self.show_state, init=True)

    def show_state(self, state: ConnectionState) -> None:
        """Draw ``state``: nothing when connected."""
        disconnected = not state.connected
        self.set_class(disconnected, "-disconnected")
        if not disconnected:
            return
        text = Text("Disconnected from the mesh")
        if state.detail:
            text.append(f": {state.detail}")
        if state.retry_in is not None:
            text.append(f" — reconnecting in {state.retry_in:.1f} s")
        else:
            text.append(" — reconnecting")
        self.update(text)
