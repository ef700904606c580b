"""What every signed-in screen shares: its data source, settings, clock and error handling."""

from __future__ import annotations

from datetime import datetime

from textual import events
from textual.app import ComposeResult
from textual.screen import Screen

from sutazai.tui.access import ScreenEntry
from sutazai.tui.clock import Clock
from sutazai.tui.messages import SessionLost
from sutazai.tui.settings import DashboardSettings
from sutazai.tui.source import CallFailed, ClientError, MeshApi, MeshUnavailable, SessionEnded
from sutazai.tui.widgets.banner import ConnectionBanner
from sutazai.tui.widgets.footer import SteadyFooter
from sutazai.tui.widgets.header import DashboardHeader


class MeshScreen(Screen[None]):
    """A screen fed by the mesh: header, disconnection banner, its body, footer.

    Subclasses yield their body from :meth:`compose_body` and start one worker per stream in
    ``on_mount``; the workers belong to the screen, so removing the screen (sign-out, session
    end, app exit) cancels them and with them their RPCs.
    """

    SCREEN_NAME = ""
    """The screen's mode name (as in :data:`sutazai.tui.access.SCREENS`)."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]  # noqa: RUF012 - Textual's
    """Below 100 columns the header drops its title, so every tab and the user fit in 80."""

    def __init__(
        self,
        api: MeshApi,
        settings: DashboardSettings,
        clock: Clock,
        *,
        tabs: list[ScreenEntry],
        who: str,
        role: int = 0,
    ) -> None:
        """A screen reading from ``api``; ``tabs`` and ``who`` fill its header.

        ``role`` is the signed-in user's (``access_pb2.Role``), for screens whose actions
        depend on it (the server checks every call again).
        """
        super().__init__()
        self.role = role
        self.api = api
        self.settings = settings
        self.clock = clock
        self._tabs = tabs
        self._who = who

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        """Come back without applying the stylesheet to every widget again.

        Textual re-applies it on every resume, and re-applying it tells each widget that its
        style changed, which drops the render caches of every table: the switch then renders
        every visible cell again (most of a screen switch's time). Nothing a resume would pick
        up changes while a screen is hidden: classes are styled when they are set, and a
        new theme is applied to a screen when it next comes up (``App.switch_mode`` compares
        its stylesheet version). Runs before ``Screen``'s own handler, which reads the flag.
        """
        event.refresh_styles = False

    def now(self) -> datetime:
        """The injected clock's now (its time zone is the display zone)."""
        return self.clock()

    def compose(self) -> ComposeResult:
        """Lay out the widgets."""
        yield DashboardHeader(self._tabs, self.SCREEN_NAME, self._who)
        yield ConnectionBanner()
        yield from self.compose_body()
        yield SteadyFooter()

    def compose_body(self) -> ComposeResult:
        """The screen's own widgets, between the banner and the footer."""
        yield from ()

    @property
    def torn_down(self) -> bool:
        """Whether the screen is being removed, so its widgets may already be gone.

        Textual marks a screen and all its children as pruning before it removes them (app
        exit, mode switch) and only then cancels the screen's workers: a stream worker checks
        this before it draws what arrived.
        """
        return self._pruning or self._closing or self._closed

    def report(self, error: ClientError, doing: str) -> None:
        """Show a failed call: a lost session goes back to sign-in, the rest is a toast."""
        if isinstance(error, SessionEnded):
            self.post_message(SessionLost(str(error) or "your session ended"))
        elif isinstance(error, CallFailed):
            self.notify(f"{doing}: {error.details}", title="Refused", severity="error")
        elif isinstance(error, MeshUnavailable):
            self.notify(f"{doing}: {error}", title="Mesh unavailable", severity="warning")
        else:
            self.notify(f"{doing}: {error}", title="Failed", severity="error")
