"""The form that creates a task: type, priority and a JSON payload, checked before any call."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from sutazai.tui.errors import OptionsError

TYPE_PATTERN = re.compile(r"[a-z0-9._-]{1,128}")
"""``CreateTaskRequest.type``: 1 to 128 characters of ``[a-z0-9._-]``."""
PAYLOAD_MAX = 65_536
"""``CreateTaskRequest.payload``: at most 64 KiB serialised."""
PRIORITIES = [("0 low", 0), ("1 normal", 1), ("2 high", 2), ("3 critical", 3)]


@dataclass(frozen=True, slots=True)
class TaskDraft:
    """What the form gives: checked, ready for ``CreateTask``."""

    task_type: str
    payload: dict[str, Any]
    priority: int


def task_draft(task_type: str, payload: str, priority: object) -> TaskDraft:
    """The form's values, checked as the service checks them.

    Raises:
        OptionsError: the type is not a capability name, the payload not a JSON object (or
            larger than 64 KiB), or the priority not 0 to 3.

    """
    name = task_type.strip()
    if not TYPE_PATTERN.fullmatch(name):
        raise OptionsError("type: 1 to 128 characters of a-z, 0-9, '.', '_' or '-'")
    try:
        document = json.loads(payload.strip() or "{}")
    except ValueError as exc:
        raise OptionsError(f"payload: not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise OptionsError('payload: must be a JSON object, e.g. {"text": "..."}')
    if len(json.dumps(document, separators=(",", ":")).encode()) > PAYLOAD_MAX:
        raise OptionsError("payload: larger than 64 KiB")
    if not isinstance(priority, int) or not 0 <= priority <= 3:
        raise OptionsError("priority: 0 to 3")
    return TaskDraft(name, document, priority)


class TaskFormScreen(ModalScreen[TaskDraft | None]):
    """Create a task: ``ctrl+s`` or the Create button checks and returns it; escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "create", "Create"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def compose(self) -> ComposeResult:
        """Lay out the widgets."""
        with Vertical(classes="dialog", id="task-form") as box:
            box.border_title = "New task"
            with Horizontal(classes="form-row"):
                yield Label("Type", classes="form-label")
                yield Input(
                    placeholder="text.summarize",
                    id="task-type",
                    max_length=128,
                    restrict=r"[a-z0-9._-]*",
                    compact=True,
                )
            with Horizontal(classes="form-row"):
                yield Label("Priority", classes="form-label")
                yield Select(PRIORITIES, value=0, allow_blank=False, id="priority", compact=True)
            yield Label("Payload (a JSON object)", classes="payload-label")
            yield TextArea('{"text": ""}', id="payload", language=None, compact=True)
            yield Static("", id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("Create \\[^s]", variant="primary", id="create")
                yield Button("Cancel \\[esc]", id="cancel")

    def on_mount(self) -> None:
        """Start in the type."""
        self.query_one("#task-type", Input).focus()

    def action_create(self) -> None:
        """Check the form; return the draft, or say what is wrong and stay."""
        try:
            draft = task_draft(
                self.query_one("#task-type", Input).value,
                self.query_one("#payload", TextArea).text,
                self.query_one("#priority", Select).value,
            )
        except OptionsError as error:
            self.query_one("#form-error", Static).update(str(error))
            return
        self.dismiss(draft)

    def action_cancel(self) -> None:
        """Close without creating anything."""
        self.dismiss(None)

    @on(Input.Submitted, "#task-type")
    def _type_submitted(self) -> None:
        self.query_one("#payload", TextArea).focus()

    @on(Button.Pressed, "#create")
    def _create(self) -> None:
        self.action_create()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
