"""Logs (operators): follow one component's log, filtered by level and text on the server."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import Input, RichLog, Select, Static

from sutazai.system.v1 import system_service_pb2 as system_pb
from sutazai.tui.format import LEVEL_NAMES, level_name, log_line
from sutazai.tui.screens.base import MeshScreen
from sutazai.tui.source import ClientError, opened

SEARCH_MAX = 200
"""``TailLogsRequest.contains`` takes at most 200 characters."""
SEARCH_DELAY = 0.4
"""Seconds of typing pause before a new search restarts the tail."""

LEVEL_STYLE = {
    system_pb.LOG_LEVEL_DEBUG: "dim",
    system_pb.LOG_LEVEL_INFO: "",
    system_pb.LOG_LEVEL_WARNING: "yellow",
    system_pb.LOG_LEVEL_ERROR: "bold red",
    system_pb.LOG_LEVEL_CRITICAL: "bold white on red",
}


class LogsScreen(MeshScreen):
    """A component select, a level select, a search box, and the followed log below them."""

    SCREEN_NAME = "logs"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "focus_filter('component')", "Component"),
        Binding("slash", "focus_filter('search')", "Search"),
        Binding("ctrl+l", "clear", "Clear", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        """The screen's widgets."""
        with Horizontal(id="log-filters"):
            yield Select[str](
                [], prompt="component", id="component", compact=True, allow_blank=True
            )
            yield Select[int](
                [("any level", system_pb.LOG_LEVEL_UNSPECIFIED)]
                + [(f"{name}+", level) for level, name in LEVEL_NAMES.items()],
                value=system_pb.LOG_LEVEL_UNSPECIFIED,
                allow_blank=False,
                id="level",
                compact=True,
            )
            yield Input(placeholder="search", id="search", max_length=SEARCH_MAX, compact=True)
        yield Static(Text("Loading the list of logs…"), id="log-status")
        # Wrapped: a long line must not hide its end past the right edge of a narrow terminal.
        yield RichLog(id="log", max_lines=self.settings.log_max_lines, wrap=True)

    def on_mount(self) -> None:
        """Start the screen's stream workers."""
        self._search_timer: Timer | None = None
        self._following: tuple[str, int, str] | None = None
        self.load_components()

    @work(exclusive=True, group="log-list")
    async def load_components(self) -> None:
        """Fill the component select from ``ListLogs`` and follow the first component."""
        try:
            logs = await self.api.list_logs()
        except ClientError as error:
            self.report(error, "Listing the logs")
            return
        select = self.query_one("#component", Select)
        names = sorted(log.component for log in logs)
        select.set_options([(name, name) for name in names])
        if not names:
            self.query_one("#log-status", Static).update(Text("No component has a log yet."))
            return
        select.value = names[0]

    def action_focus_filter(self, widget: str) -> None:
        """Move to one of the filters."""
        self.query_one(f"#{widget}").focus()

    def action_clear(self) -> None:
        """Empty the view (the tail goes on)."""
        self.query_one("#log", RichLog).clear()

    @on(Select.Changed)
    def _select_changed(self) -> None:
        self._restart()

    @on(Input.Changed, "#search")
    def _search_typed(self) -> None:
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search_timer = self.set_timer(SEARCH_DELAY, self._restart)

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        if self._search_timer is not None:
            self._search_timer.stop()
        self._restart()

    def _restart(self) -> None:
        self._search_timer = None
        component = self.query_one("#component", Select).value
        level = self.query_one("#level", Select).value
        if not isinstance(component, str) or not isinstance(level, int):
            return
        wanted = (component, level, self.query_one("#search", Input).value.strip())
        if wanted != self._following:
            self._following = wanted
            self.tail(*wanted)

    @work(exclusive=True, group="tail")
    async def tail(self, component: str, min_level: int, contains: str) -> None:
        """Show the last lines of ``component``'s log that match, then follow it."""
        log = self.query_one("#log", RichLog)
        log.clear()
        status = Text(f"Following {component}")
        if min_level:
            status.append(f", {level_name(min_level)} and above")
        if contains:
            status.append(f", containing {contains!r}")
        self.query_one("#log-status", Static).update(status)
        try:
            async with opened(
                self.api.tail_logs(
                    component,
                    lines=self.settings.log_lines,
                    follow=True,
                    min_level=system_pb.LogLevel.ValueType(min_level),
                    contains=contains,
                )
            ) as batches:
                async for batch in batches:
                    if self.torn_down:
                        return
                    for line in batch:
                        log.write(Text(log_line(line.text), style=LEVEL_STYLE.get(line.level, "")))
        except ClientError as error:
            self.report(error, f"Following the log of {component}")
