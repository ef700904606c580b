"""The command palette: every action of the dashboard the signed-in role may take."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from sutazai.tui.app import SutazaiApp

Command = tuple[str, str, Callable[[], object]]
"""Title, help text, and what it does."""


class DashboardCommands(Provider):
    """The app's commands (screens, theme, sign-out) and the current screen's own."""

    def _commands(self) -> list[Command]:
        app = cast("SutazaiApp", self.app)
        commands = list(app.commands())
        screen_commands = getattr(self.screen, "commands", None)
        if callable(screen_commands):
            commands.extend(cast("list[Command]", screen_commands()))
        return commands

    async def discover(self) -> Hits:
        """Everything, before anything is typed."""
        for title, help_text, run in self._commands():
            yield DiscoveryHit(title, run, help=help_text)

    async def search(self, query: str) -> Hits:
        """The commands whose title matches ``query``, best first."""
        matcher = self.matcher(query)
        for title, help_text, run in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)
