"""The footer of every signed-in screen: the current screen's keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer

_Keys = tuple[tuple[Binding, bool, str], ...]


class SteadyFooter(Footer):
    """Textual's footer, rebuilt only when the keys it shows change.

    Textual's footer removes and mounts all of its key widgets whenever the screen says its
    bindings may have changed: on every screen switch and focus change, two or three times
    per switch, each a round of styling, mounting and layout. The keys a screen shows rarely
    change, so this one compares them with those it shows and rebuilds only if they differ.
    """

    def __init__(self) -> None:
        super().__init__()
        self._shown: _Keys | None = None
        self._signalled = False

    def _keys(self) -> _Keys:
        palette = self.app.COMMAND_PALETTE_BINDING
        return tuple(
            (binding, enabled, tooltip)
            for (_, binding, enabled, tooltip) in self.screen.active_bindings.values()
            if binding.show or binding.key == palette
        )

    def compose(self) -> ComposeResult:
        """The keys, as Textual's footer lays them out; remembers which they are."""
        # Footer composes nothing until the screen first signals its bindings.
        self._shown = self._keys() if self._signalled else None
        yield from super().compose()

    def bindings_changed(self, screen: Screen[object]) -> None:
        """Rebuild, unless this footer's screen shows the same keys as before."""
        if self._shown is not None and screen is self.screen and self._keys() == self._shown:
            return
        self._signalled = True
        super().bindings_changed(screen)

    async def recompose(self) -> None:
        """Rebuild, unless an earlier rebuild already shows the keys of now.

        Textual queues one rebuild per signal (after the next refresh), and a screen's first
        visit signals five or six times while it mounts and focuses: each queued rebuild after
        the first found the keys already shown (a first visit spent ~100 ms on them).
        """
        if self._shown is not None and self.is_attached and self._keys() == self._shown:
            return
        await super().recompose()
