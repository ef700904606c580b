"""The form that sets an optimisation's parameters (path, age, patterns, size, generations)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from sutazai.tui.errors import OptionsError
from sutazai.tui.optimise import (
    MIB,
    PATH_MAX,
    PATTERN_MAX,
    PATTERNS_MAX,
    Operation,
    Params,
    parse_params,
)

_ROWS = (
    # (field, label, input id, placeholder, allowed characters, max length)
    ("path", "Path", "opt-path", "first allowed root", None, PATH_MAX),
    ("older_than_days", "Older than", "opt-days", "days (blank: default)", r"[0-9]*", 4),
    (
        "patterns",
        "Patterns",
        "opt-patterns",
        "*.tmp *.cache (blank: any)",
        None,
        PATTERNS_MAX * (PATTERN_MAX + 1),
    ),
    ("min_size_bytes", "Min size", "opt-size", "MiB (blank: default)", r"[0-9]*", 7),
    ("keep", "Keep", "opt-keep", "generations (blank: default)", r"[0-9]*", 2),
)


class OptimiseFormScreen(ModalScreen[Params | None]):
    """Set one optimisation's parameters: ``ctrl+s`` or Apply checks and returns them."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "apply", "Apply"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, operation: Operation, current: Params) -> None:
        """A form for ``operation``, filled with ``current``."""
        super().__init__()
        self.operation = operation
        self.current = current

    def _initial(self, name: str) -> str:
        params = self.current
        values = {
            "path": params.path,
            "older_than_days": str(params.older_than_days or ""),
            "patterns": " ".join(params.patterns),
            "min_size_bytes": str(params.min_size_bytes // MIB or ""),
            "keep": str(params.keep or ""),
        }
        return values[name]

    def compose(self) -> ComposeResult:
        """Lay out the fields ``operation`` takes."""
        with Vertical(classes="dialog", id="optimise-form") as box:
            box.border_title = f"{self.operation.title}: parameters"
            for name, label, widget_id, placeholder, restrict, length in _ROWS:
                if name not in self.operation.fields:
                    continue
                with Horizontal(classes="form-row"):
                    yield Label(label, classes="form-label")
                    yield Input(
                        self._initial(name),
                        placeholder=placeholder,
                        id=widget_id,
                        max_length=length,
                        restrict=restrict,
                        compact=True,
                    )
            yield Static("", id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("Apply \\[^s]", variant="primary", id="apply")
                yield Button("Cancel \\[esc]", id="cancel")

    def on_mount(self) -> None:
        """Start in the first field."""
        self.query(Input).first().focus()

    def _value(self, widget_id: str) -> str:
        found = self.query(f"#{widget_id}")
        return found.first(Input).value if found else ""

    def action_apply(self) -> None:
        """Check the fields; return the parameters, or say what is wrong and stay."""
        try:
            params = parse_params(
                self.operation,
                path=self._value("opt-path"),
                older_than_days=self._value("opt-days"),
                patterns=self._value("opt-patterns"),
                min_size_mib=self._value("opt-size"),
                keep=self._value("opt-keep"),
            )
        except OptionsError as error:
            self.query_one("#form-error", Static).update(Text(str(error)))
            return
        self.dismiss(params)

    def action_cancel(self) -> None:
        """Close without a change."""
        self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_apply()

    @on(Button.Pressed, "#apply")
    def _apply(self) -> None:
        self.action_apply()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
