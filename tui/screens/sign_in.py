"""The sign-in screen: resume the saved session, else ask for a username and password."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Center, Vertical
from textual.screen import Screen
from textual.widgets import Button, Input, Label, Static

from sutazai.tui.messages import SignedIn
from sutazai.tui.source import CallFailed, ClientError, MeshApi, MeshUnavailable
from sutazai.tui.widgets.footer import SteadyFooter
from sutazai.tui.widgets.header import DashboardHeader

USERNAME_MAX = 32
"""Usernames are 3 to 32 characters (``sutazai.auth.v1.User.username``)."""
PASSWORD_MAX = 1024
"""Long enough for any passphrase; bounded like every input."""


class SignInScreen(Screen[None]):
    """Who is using the dashboard. The app's default screen: it is shown whenever nobody is."""

    def __init__(self, api: MeshApi, *, resume: bool) -> None:
        """Ask ``api`` for the saved session first when ``resume``."""
        super().__init__()
        self.api = api
        self._resume = resume

    def compose(self) -> ComposeResult:
        """Lay out the widgets."""
        yield DashboardHeader([], "", "not signed in")
        with Center(), Vertical(id="sign-in") as box:
            box.border_title = "Sign in"
            yield Label(Text(f"Mesh edge: {self.api.target}"), id="edge")
            yield Input(
                placeholder="username", id="username", max_length=USERNAME_MAX, compact=True
            )
            yield Input(
                placeholder="password",
                id="password",
                password=True,
                max_length=PASSWORD_MAX,
                compact=True,
            )
            yield Button("Sign in", variant="primary", id="submit")
            yield Static(id="message")
        yield SteadyFooter()

    def on_mount(self) -> None:
        """Start what the widget needs once it is mounted."""
        if self._resume:
            self._resume = False
            self.set_busy("Resuming the saved session…")
            self.resume_session()
        else:
            self.query_one("#username", Input).focus()

    def show_message(self, text: str, *, error: bool = False) -> None:
        """Say something under the form (why the user is here, or what went wrong)."""
        message = self.query_one("#message", Static)
        message.update(Text(text))
        message.set_class(error, "-error")

    def set_busy(self, text: str | None) -> None:
        """Disable the form while a call is in flight (``None`` re-enables it)."""
        for widget in self.query("Input, Button"):
            widget.disabled = text is not None
        if text is not None:
            self.show_message(text)
        else:
            self.query_one("#username", Input).focus()

    @work(exclusive=True, group="sign-in")
    async def resume_session(self) -> None:
        """Use the session ``sutazai login`` saved, if there is one."""
        try:
            user = await self.api.resume()
        except ClientError as error:
            self.set_busy(None)
            self.show_message(_explain(error, self.api.target), error=True)
            return
        if user is None:
            self.set_busy(None)
            self.show_message("Sign in with your mesh account.")
            return
        self.post_message(SignedIn(user))

    @on(Input.Submitted, "#username")
    def _next_field(self) -> None:
        self.query_one("#password", Input).focus()

    @on(Input.Submitted, "#password")
    @on(Button.Pressed, "#submit")
    def _submit(self) -> None:
        username = self.query_one("#username", Input).value.strip()
        password = self.query_one("#password", Input).value
        if not username or not password:
            self.show_message("Enter a username and a password.", error=True)
            return
        self.set_busy(f"Signing in as {username}…")
        self.sign_in(username, password)

    @work(exclusive=True, group="sign-in")
    async def sign_in(self, username: str, password: str) -> None:
        """Sign in; on success the app installs the screens the role may see."""
        try:
            user = await self.api.sign_in(username, password)
        except ClientError as error:
            self.set_busy(None)
            self.show_message(_explain(error, self.api.target), error=True)
            return
        finally:
            self.query_one("#password", Input).value = ""
        self.post_message(SignedIn(user))


def _explain(error: ClientError, target: str) -> str:
    if isinstance(error, MeshUnavailable):
        return f"The mesh is unreachable at {target}: {error}"
    if isinstance(error, CallFailed):
        return f"Sign-in refused: {error.details}"
    return f"Sign-in failed: {error}"
