"""Modal dialogs: confirm a destructive action, or pick a role."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Select

from sutazai.tui.format import ROLE_NAMES


class ConfirmScreen(ModalScreen[bool]):
    """Ask before acting: ``y`` or the Confirm button says yes, ``n`` or escape says no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, *, action: str = "Confirm") -> None:
        """A dialog asking ``question``; ``action`` labels the confirm button."""
        super().__init__()
        self.question = question
        self.action_label = action

    def compose(self) -> ComposeResult:
        """Lay out the widgets."""
        with Vertical(classes="dialog") as box:
            box.border_title = "Confirm"
            yield Label(self.question, classes="question", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(f"{self.action_label} \\[y]", variant="error", id="yes")
                yield Button("Cancel \\[n]", id="no")

    def on_mount(self) -> None:
        """Start what the widget needs once it is mounted."""
        self.query_one("#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        """Close the dialog with ``answer``."""
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class RoleScreen(ModalScreen[int | None]):
    """Pick a user's new role; returns the role, or ``None`` when cancelled or unchanged."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, username: str, current: int) -> None:
        """A dialog for ``username``, whose role is now ``current``."""
        super().__init__()
        self.username = username
        self.current = current

    def compose(self) -> ComposeResult:
        """Lay out the widgets."""
        with Vertical(classes="dialog") as box:
            box.border_title = "Change role"
            yield Label(f"New role for {self.username}:", classes="question", markup=False)
            yield Select(
                [(name, role) for role, name in ROLE_NAMES.items()],
                value=self.current,
                allow_blank=False,
                id="role",
            )
            with Horizontal(classes="buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        """Start what the widget needs once it is mounted."""
        self.query_one("#role", Select).focus()

    def action_cancel(self) -> None:
        """Close without a change."""
        self.dismiss(None)

    @on(Button.Pressed, "#apply")
    def _apply(self) -> None:
        value = self.query_one("#role", Select).value
        self.dismiss(value if isinstance(value, int) and value != self.current else None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
