"""The Textual app: sign-in, then the screens the signed-in role may use, one per mode.

Each screen is a Textual mode, installed when someone signs in and removed when the session
ends, so its stream workers live exactly as long as the session: switching screens keeps every
stream (and the overview's sparklines) running, signing out cancels them all.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable
from functools import partial
from typing import ClassVar

from textual import work
from textual.app import App, ScreenStackError
from textual.await_complete import AwaitComplete
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widget import AwaitMount

from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.tui.access import SCREENS, ScreenEntry, entry, screens_for
from sutazai.tui.clock import Clock, local_clock
from sutazai.tui.commands import Command, DashboardCommands
from sutazai.tui.errors import NotPermittedError
from sutazai.tui.format import role_name
from sutazai.tui.messages import ConnectionChanged, SessionLost, SignedIn
from sutazai.tui.screens.agents import AgentsScreen
from sutazai.tui.screens.base import MeshScreen
from sutazai.tui.screens.chat import ChatScreen
from sutazai.tui.screens.hardware import HardwareScreen
from sutazai.tui.screens.identity import IdentityScreen
from sutazai.tui.screens.logs import LogsScreen
from sutazai.tui.screens.models import ModelsScreen
from sutazai.tui.screens.overview import OverviewScreen
from sutazai.tui.screens.services import ServicesScreen
from sutazai.tui.screens.sign_in import SignInScreen
from sutazai.tui.screens.tasks import TasksScreen
from sutazai.tui.settings import DashboardSettings
from sutazai.tui.source import ClientError, ConnectionState, MeshApi

SIGN_IN = "sign-in"
"""The mode of the sign-in screen: shown whenever nobody is signed in."""
DARK = "textual-dark"
LIGHT = "textual-light"

_SCREEN_CLASSES: dict[str, type[MeshScreen]] = {
    "overview": OverviewScreen,
    "services": ServicesScreen,
    "identity": IdentityScreen,
    "logs": LogsScreen,
    "chat": ChatScreen,
    "models": ModelsScreen,
    "agents": AgentsScreen,
    "tasks": TasksScreen,
    "hardware": HardwareScreen,
}


class SutazaiApp(App[None]):
    """The operator dashboard of the SutazAI mesh.

    Args:
        api: where every figure comes from (``sutazai.client.MeshClient``, or a fake in tests).
        settings: alert thresholds and history sizes.
        clock: now, in the time zone to show times in (injected so tests are deterministic).
        resume: try the session ``sutazai login`` saved before asking to sign in.

    """

    TITLE = "SutazAI Mesh"
    CSS_PATH = "styles/dashboard.tcss"
    COMMANDS = App.COMMANDS | {DashboardCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        # Shown as the header's tabs rather than in the footer.
        *(Binding(s.key, f"show('{s.name}')", s.title, show=False) for s in SCREENS),
        Binding("ctrl+t", "toggle_theme", "Theme"),
        Binding("ctrl+o", "sign_out", "Sign out", show=False),
    ]

    connection: reactive[ConnectionState] = reactive(ConnectionState(connected=True))
    """Whether the client reaches the mesh; every screen's banner follows it."""

    def __init__(
        self,
        api: MeshApi,
        settings: DashboardSettings,
        *,
        clock: Clock = local_clock,
        resume: bool = True,
    ) -> None:
        super().__init__()
        self.api = api
        self.settings = settings
        self.clock = clock
        self._resume = resume
        self.user: auth_pb.User | None = None
        self._installed: list[ScreenEntry] = []
        self._unsubscribe = api.on_connection_change(self._connection_changed)
        self._mounted_modes: set[str] = set()
        self._coming_back: bool = False
        self._end_hold: Callable[[], None] | None = None

    def on_mount(self) -> None:
        """Apply the theme the settings ask for and show the sign-in screen."""
        self.theme = DARK if self.settings.dark else LIGHT
        self.add_mode(SIGN_IN, self._make_sign_in)
        self.switch_mode(SIGN_IN)

    # --- screens ---------------------------------------------------------------------------

    def _make_sign_in(self) -> SignInScreen:
        # Only the first sign-in screen resumes the saved session; later ones ask.
        resume, self._resume = self._resume, False
        return SignInScreen(self.api, resume=resume)

    @property
    def installed(self) -> list[str]:
        """The screens the signed-in user may open (none while signed out)."""
        return [s.name for s in self._installed]

    def on_signed_in(self, message: SignedIn) -> None:
        """Install the screens the role may use and open the overview."""
        self.user = message.user
        self._installed = screens_for(message.user.role)
        for allowed in self._installed:
            self.add_mode(allowed.name, partial(self._make_screen, allowed.name))
        self.sub_title = f"{message.user.username} ({role_name(message.user.role)})"
        self.switch_mode("overview")
        self.refresh_bindings()

    def _make_screen(self, name: str) -> MeshScreen:
        if self.user is None:
            raise NotPermittedError("nobody is signed in")
        entry(name, self.user.role)  # a mode is only added for a permitted screen
        return _SCREEN_CLASSES[name](
            self.api,
            self.settings,
            self.clock,
            tabs=self._installed,
            who=f"{self.user.username} ({role_name(self.user.role)})",
            role=self.user.role,
        )

    async def on_session_lost(self, message: SessionLost) -> None:
        """The session ended: remove every screen (ending its streams), then sign in again."""
        await self.end_session(f"Your session ended ({message.reason}). Sign in again.")

    async def end_session(self, reason: str) -> None:
        """Go back to the sign-in screen with ``reason``; idempotent."""
        if self.user is None:
            return
        self.user = None
        self.sub_title = ""
        await self.switch_mode(SIGN_IN)
        for installed in self._installed:
            await self.remove_mode(installed.name)
        self._installed = []
        sign_in = self.screen
        if isinstance(sign_in, SignInScreen):
            sign_in.set_busy(None)
            sign_in.show_message(reason, error=True)
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Screen keys exist only for the screens the role may use; sign-out needs a session."""
        if action == "show":
            return bool(parameters) and parameters[0] in self.installed
        if action == "sign_out":
            return self.user is not None
        return True

    def switch_mode(self, mode: str) -> AwaitMount:
        """Show ``mode``'s screen; one already mounted is painted in the next frame.

        Textual holds every frame back for 50 ms when it switches modes (``delay_update``), so
        that a screen still being composed is not shown half-built. A screen that was shown
        before has nothing to hide, and the 50 ms (more under load, as timers fire late) were
        most of what a switch took. For such a screen the hold ends as soon as the screen has
        handled its resume, which is when its first frame can paint it whole: released
        earlier, the frame would draw only the parts that changed while it was hidden, over
        the previous screen.
        """
        self._coming_back = mode in self._mounted_modes and mode != self.current_mode
        try:
            mounted = super().switch_mode(mode)
        finally:
            self._coming_back = False
        self._mounted_modes.add(mode)
        end_hold, self._end_hold = self._end_hold, None
        if end_hold is not None:
            # Queued behind the screen's ScreenResume, so it runs once that is handled.
            self.screen.call_later(end_hold)
        return mounted

    def delay_update(self, delay: float = 0.05) -> None:
        """Hold frames back; for a screen coming back, until :meth:`switch_mode` releases."""
        if not self._coming_back:
            super().delay_update(delay)
            return
        self._begin_batch()
        ended = False

        def end_hold() -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            self._end_batch()
            if not self._batch_count:
                self.screen.refresh()

        self._end_hold = end_hold
        # Should the screen never run the release (removed first), Textual's own delay does.
        self.set_timer(delay, end_hold, name="delay_update")

    def _end_batch(self) -> None:
        """End one hold on frames; after the last, let the screen paint what it was held to.

        Textual prompts its screen to paint only at the end of ``delay_update``'s hold. A
        hold of ``batch_update`` (mounting widgets, e.g. composing a screen) that ends last
        leaves the screen's pending repaint until the screen next gets a message: on a
        screen switch, the new screen appeared only with the next stream update.
        """
        super()._end_batch()
        if not self._batch_count:
            with contextlib.suppress(ScreenStackError):
                self.screen.check_idle()

    def remove_mode(self, mode: str) -> AwaitComplete:
        """Remove ``mode`` and its screen (a later :meth:`switch_mode` composes a new one)."""
        self._mounted_modes.discard(mode)
        return super().remove_mode(mode)

    def action_show(self, name: str) -> None:
        """Switch to one of the installed screens."""
        if name in self.installed:
            self.switch_mode(name)

    def action_toggle_theme(self) -> None:
        """Switch between the light and the dark theme."""
        self.theme = LIGHT if self.theme == DARK else DARK

    def action_sign_out(self) -> None:
        """End the session here and forget its tokens."""
        self.sign_out()

    @work(exclusive=True, group="session")
    async def sign_out(self) -> None:
        """Log out through the mesh (best effort), then show the sign-in screen."""
        try:
            await self.api.sign_out()
        except ClientError as error:
            self.notify(f"Signing out: {error}", severity="warning")
        await self.end_session("Signed out.")

    def commands(self) -> list[Command]:
        """The app's palette entries for the signed-in role."""
        found: list[Command] = [
            (f"Go to {s.title}", f"Key {s.key}", partial(self.action_show, s.name))
            for s in self._installed
        ]
        found.append(("Toggle light/dark theme", "ctrl+t", self.action_toggle_theme))
        if self.user is not None:
            found.append(("Sign out", "End this session and forget its tokens", self.sign_out))
        return found

    # --- connection ------------------------------------------------------------------------

    def _connection_changed(self, state: ConnectionState) -> None:
        # The client calls back from its own tasks; a message lands it in the app's queue.
        self.post_message(ConnectionChanged(state))

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        """Show (or hide) the disconnection banner on every screen."""
        self.connection = message.state

    async def on_unmount(self) -> None:
        """Stop listening to the client's connection changes."""
        self._unsubscribe()


COLLECTOR_THRESHOLDS = (20_000, 50, 50)
"""Generation thresholds of the garbage collector while the dashboard runs (CPython's default
is ``(2000, 10, 10)``)."""


def steady_collector() -> None:
    """Keep the garbage collector's pauses out of key presses; call once, before the app runs.

    Textual allocates many short-lived objects per repaint, so with CPython's defaults a full
    collection lands every few screen switches and walks every object of the process (the
    imported modules included): the benchmark measured it as the whole tail of screen-switch
    latency (p99 243 ms idle, 73 ms with the collector off). Freezing what exists at start-up
    takes those objects out of every later collection, and higher thresholds make collections
    rarer; cycles are still collected (p99 58 ms with both).
    """
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
