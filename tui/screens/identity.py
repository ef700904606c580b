"""Identity (admins): accounts with their role and state, the actions on them, the audit log."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Input, Label

from sutazai.auth.v1 import access_pb2
from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.tui.format import MISSING, date_time, role_name, to_datetime
from sutazai.tui.screens.base import MeshScreen
from sutazai.tui.screens.confirm import ConfirmScreen, RoleScreen
from sutazai.tui.source import ClientError, opened
from sutazai.tui.widgets.tables import Cell, KeyedTable

FILTER_MAX = 128
"""Audit filters are an actor name or an action name; nothing longer is meaningful."""
FILTER_DELAY = 0.4
"""Seconds of typing pause before a filter change restarts the audit stream."""

ROLE_STYLE = {
    access_pb2.ROLE_ADMIN: "bold magenta",
    access_pb2.ROLE_OPERATOR: "bold cyan",
    access_pb2.ROLE_USER: "",
}

Command = tuple[str, str, Callable[[], object]]
"""A palette entry: title, help, and what it does."""


def short_action(action: str) -> str:
    """``/sutazai.auth.v1.AuthService/DeactivateUser`` as ``AuthService/DeactivateUser``."""
    service, slash, method = action.lstrip("/").rpartition("/")
    if not slash:
        return action
    return f"{service.rsplit('.', 1)[-1]}/{method}"


class IdentityScreen(MeshScreen):
    """Users and their actions (each confirmed), and the audit log, live and filtered."""

    SCREEN_NAME = "identity"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "change_role", "Role"),
        Binding("d", "deactivate", "Deactivate"),
        Binding("u", "unlock", "Unlock"),
        Binding("x", "revoke", "Revoke"),
        Binding("f", "focus_filter", "Filter", show=False),
        Binding("ctrl+r", "reload_users", "Reload", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        """The screen's widgets."""
        with Vertical(id="identity-body"):
            users = KeyedTable(
                [
                    ("username", "User", None),
                    ("role", "Role", 8),
                    ("active", "Active", 6),
                    ("last_login", "Last sign-in", 16),
                    ("email", "E-mail", None),
                ],
                id="users",
            )
            users.border_title = "Users"
            yield users
            with Horizontal(id="audit-filters"):
                yield Label("Audit filter:")
                yield Input(placeholder="actor", id="actor", max_length=FILTER_MAX, compact=True)
                yield Input(placeholder="action", id="action", max_length=FILTER_MAX, compact=True)
            audit = KeyedTable(
                [
                    ("time", "Time", 14),
                    ("actor", "Actor", None),
                    ("action", "Action", None),
                    # Target before outcome: at 80 columns the outcome ("ok" or a
                    # status name) may be cut, the target (who it was about) must not.
                    ("target", "Target", None),
                    ("outcome", "Outcome", None),
                    ("detail", "Detail", None),
                ],
                id="audit",
            )
            audit.border_title = "Audit log"
            yield audit

    def on_mount(self) -> None:
        """Start the screen's stream workers."""
        self._users: dict[str, auth_pb.User] = {}
        self._filter_timer: Timer | None = None
        self._filters = ("", "")
        self.load_users()
        self.follow_audit(*self._filters)

    # --- users -----------------------------------------------------------------------------

    @work(exclusive=True, group="users")
    async def load_users(self) -> None:
        """Fetch every account and draw the users table."""
        try:
            users = await self.api.list_users()
        except ClientError as error:
            self.report(error, "Listing users")
            return
        self.show_users(users)

    def show_users(self, users: list[auth_pb.User]) -> None:
        """Draw ``users`` (sorted by name), keeping the cursor on the same user."""
        zone = self.now().tzinfo
        self._users = {user.username: user for user in sorted(users, key=lambda u: u.username)}
        rows: dict[str, list[Cell]] = {}
        for name, user in self._users.items():
            rows[name] = [
                Text(name),
                Text(role_name(user.role), style=ROLE_STYLE.get(user.role, "")),
                Text("yes", style="green") if user.active else Text("no", style="bold red"),
                Text(date_time(user.last_login_at, zone)),
                Text(user.email),
            ]
        self.query_one("#users", KeyedTable).sync(rows)
        self.refresh_bindings()

    def selected_user(self) -> auth_pb.User | None:
        """The account under the users table's cursor."""
        key = self.query_one("#users", KeyedTable).highlighted_key()
        return self._users.get(key or "")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """User actions are greyed out while no account is selected."""
        if action in {"change_role", "deactivate", "unlock", "revoke"}:
            return True if self.selected_user() is not None else None
        return True

    def action_change_role(self) -> None:
        """Pick a new role, confirm, apply."""
        user = self.selected_user()
        if user is None:
            return

        def chosen(role: int | None) -> None:
            if role is None:
                return
            self._confirm(
                f"Change the role of {user.username} from {role_name(user.role)} to "
                f"{role_name(role)}? Their current sessions end.",
                "Change role",
                partial(self.apply, "role", user.username, role),
            )

        self.app.push_screen(RoleScreen(user.username, user.role), chosen)

    def action_deactivate(self) -> None:
        """Confirm, then stop the selected account from signing in."""
        user = self.selected_user()
        if user is not None:
            self._confirm(
                f"Deactivate {user.username}? They can no longer sign in and their sessions end.",
                "Deactivate",
                partial(self.apply, "deactivate", user.username),
            )

    def action_unlock(self) -> None:
        """Confirm, then clear the selected account's sign-in locks."""
        user = self.selected_user()
        if user is not None:
            self._confirm(
                f"Unlock {user.username}? Failed sign-in locks on the account are cleared.",
                "Unlock",
                partial(self.apply, "unlock", user.username),
            )

    def action_revoke(self) -> None:
        """Confirm, then end every session of the selected account."""
        user = self.selected_user()
        if user is not None:
            self._confirm(
                f"Revoke every session of {user.username}? They must sign in again.",
                "Revoke",
                partial(self.apply, "revoke", user.username),
            )

    def action_reload_users(self) -> None:
        """Fetch the users again."""
        self.load_users()

    def action_focus_filter(self) -> None:
        """Move to the audit log's actor filter."""
        self.query_one("#actor", Input).focus()

    def _confirm(self, question: str, label: str, then: Callable[[], object]) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmScreen(question, action=label), answered)

    @work(group="user-actions")
    async def apply(self, kind: str, username: str, role: int = 0) -> None:
        """Make the call for one confirmed action, say how it went, reload the users."""
        try:
            if kind == "role":
                await self.api.set_user_role(username, role)
                done = f"{username} is now {role_name(role)}"
            elif kind == "deactivate":
                await self.api.deactivate_user(username)
                done = f"{username} deactivated"
            elif kind == "unlock":
                cleared = await self.api.unlock_user(username)
                done = f"{username} unlocked ({cleared} locks cleared)"
            else:
                revoked = await self.api.revoke_user_sessions(username)
                done = f"{revoked} sessions of {username} revoked"
        except ClientError as error:
            self.report(error, f"{kind.capitalize()} {username}")
            return
        self.notify(done, title="Done")
        self.load_users()

    def commands(self) -> list[Command]:
        """The palette entries of the identity screen."""
        return [
            (
                "Identity: change role of the selected user",
                "Pick a role, confirm",
                self.action_change_role,
            ),
            ("Identity: deactivate the selected user", "Confirm first", self.action_deactivate),
            ("Identity: unlock the selected user", "Confirm first", self.action_unlock),
            ("Identity: revoke the selected user's sessions", "Confirm first", self.action_revoke),
            ("Identity: reload users", "Fetch the accounts again", self.action_reload_users),
            ("Identity: filter the audit log", "Focus the actor filter", self.action_focus_filter),
        ]

    @on(KeyedTable.RowHighlighted, "#users")
    def _user_highlighted(self) -> None:
        self.refresh_bindings()

    # --- audit log -------------------------------------------------------------------------

    @work(exclusive=True, group="audit")
    async def follow_audit(self, actor: str, action: str) -> None:
        """Load the newest events matching the filters, then follow new ones."""
        table = self.query_one("#audit", KeyedTable)
        table.forget()
        described = " ".join(
            part
            for part in (f"actor={actor}" if actor else "", f"action={action}" if action else "")
            if part
        )
        table.border_title = f"Audit log ({described})" if described else "Audit log"
        try:
            events = await self.api.list_audit_events(
                actor=actor, action=action, limit=self.settings.audit_page
            )
            self.add_events(list(reversed(events)))
            last = max((event.event_id for event in events), default=0)
            async with opened(
                self.api.watch_audit_events(actor=actor, action=action, after_event_id=last)
            ) as batches:
                async for batch in batches:
                    if self.torn_down:
                        return
                    self.add_events(batch)
        except ClientError as error:
            self.report(error, "Following the audit log")

    def add_events(self, events: list[auth_pb.AuditEvent]) -> None:
        """Append events (oldest first), following the end if the cursor was there."""
        if not events:
            return
        table = self.query_one("#audit", KeyedTable)
        following = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        zone = self.now().tzinfo
        for event in events:
            moment = to_datetime(event.occurred_at)
            ok = event.outcome == "ok"
            table.append(
                str(event.event_id),
                [
                    Text(moment.astimezone(zone).strftime("%m-%d %H:%M:%S") if moment else MISSING),
                    Text(event.actor or "(anonymous)"),
                    Text(short_action(event.action)),
                    Text(event.target),
                    Text(event.outcome, style="green" if ok else "bold red"),
                    Text(event.detail),
                ],
                limit=self.settings.audit_max_rows,
            )
        if following:
            table.move_cursor(row=table.row_count - 1)

    @on(Input.Changed, "#actor, #action")
    def _filter_typed(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_DELAY, self._apply_filters)

    @on(Input.Submitted, "#actor, #action")
    def _filter_submitted(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._apply_filters()

    def _apply_filters(self) -> None:
        self._filter_timer = None
        filters = (
            self.query_one("#actor", Input).value.strip(),
            self.query_one("#action", Input).value.strip(),
        )
        if filters != self._filters:
            self._filters = filters
            self.follow_audit(*filters)
