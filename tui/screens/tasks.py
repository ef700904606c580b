"""Tasks: the caller's tasks live from ``WatchTasks``, a detail pane, create, cancel, dead letters.

The list follows one ``WatchTasks`` stream with the filters above it (a state, or the unfinished
ones; a type; every user's tasks for operators); changing a filter opens a new stream. A task
that stops matching a state filter is sent once more by the service and leaves the list. The
detail pane shows the highlighted task as the list has it, then with its attempts, result or
error from ``GetTask`` (asked again when the task moves). ``n`` opens the form that creates a
task, ``c`` cancels the highlighted one (confirmed first). Operators press ``d`` for the dead
letters (``ListDeadLetters``) and ``r`` there to re-queue one (confirmed first); users see
neither key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

from google.protobuf import json_format
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import Checkbox, Input, Label, Select, Static

from sutazai.tasks.v1 import task_service_pb2 as tasks_pb
from sutazai.tui.access import may_operate
from sutazai.tui.format import (
    FINAL_TASK_STATES,
    MISSING,
    TASK_STATES,
    clock_time,
    short_id,
    since,
    task_state_name,
)
from sutazai.tui.screens.base import MeshScreen
from sutazai.tui.screens.confirm import ConfirmScreen
from sutazai.tui.screens.task_form import TaskDraft, TaskFormScreen
from sutazai.tui.source import CallFailed, ClientError, opened
from sutazai.tui.widgets.tables import Cell, KeyedTable

STATE_STYLE = {
    "pending": "yellow",
    "queued": "cyan",
    "running": "bold blue",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "magenta",
    "unknown": "",
}
UNFINISHED = "unfinished"
"""The state filter that follows pending, queued and running tasks."""
STATE_FILTERS: list[tuple[str, str]] = [
    ("every state", ""),
    (UNFINISHED, UNFINISHED),
    *((name, name) for name in TASK_STATES.values()),
]
_BY_NAME = {name: state for state, name in TASK_STATES.items()}
FILTER_MAX = 128
FILTER_DELAY = 0.4
"""Seconds of typing pause before a type filter change opens a new stream."""
RESULT_MAX = 2_000
"""Characters of a result shown in the detail pane (``sutazai tasks get`` shows it whole)."""

Command = tuple[str, str, Callable[[], object]]
"""A palette entry: title, help, and what it does."""

OPERATOR_ACTIONS = frozenset({"dead_letters", "requeue"})


def filter_states(choice: str) -> list[tasks_pb.TaskState.ValueType]:
    """The states a state filter choice follows (none: every state)."""
    if choice == UNFINISHED:
        return [
            tasks_pb.TASK_STATE_PENDING,
            tasks_pb.TASK_STATE_QUEUED,
            tasks_pb.TASK_STATE_RUNNING,
        ]
    state = _BY_NAME.get(choice)
    return [tasks_pb.TaskState.ValueType(state)] if state is not None else []


def _order(task: tasks_pb.Task) -> tuple[int, int, str]:
    # Newest first (creation time descending), then by id.
    return (-task.created_at.seconds, -task.created_at.nanos, task.task_id)


class TasksScreen(MeshScreen):
    """The task list, live and filtered; the detail of the highlighted task; the actions."""

    SCREEN_NAME = "tasks"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_task", "New"),
        Binding("c", "cancel_task", "Cancel task"),
        Binding("d", "dead_letters", "Dead letters"),
        Binding("r", "requeue", "Re-queue"),
        Binding("f", "focus_filter", "Filter", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As :class:`MeshScreen`; nothing heard yet."""
        super().__init__(*args, **kwargs)
        self.tasks: dict[str, tasks_pb.Task] = {}
        self.dead: dict[str, tasks_pb.Task] = {}
        self.showing_dead = False
        """Whether the table shows the dead letters instead of the live list."""
        self.detail: tasks_pb.Task | None = None
        """The highlighted task with its attempts, once ``GetTask`` answered."""
        self.streams_opened = 0
        """``WatchTasks`` streams opened so far (tests wait on it)."""
        self._filters: tuple[str, str, bool] = ("", "", False)
        self._filter_timer: Timer | None = None
        self._select: str | None = None

    @property
    def operator(self) -> bool:
        """Whether the signed-in role may see every user's tasks and the dead letters."""
        return may_operate(self.role)

    def compose_body(self) -> ComposeResult:
        """The screen's widgets."""
        with Horizontal(id="task-filters"):
            yield Label("State")
            yield Select(
                STATE_FILTERS, value="", allow_blank=False, id="state-filter", compact=True
            )
            yield Label("Type")
            yield Input(
                placeholder="any",
                id="type-filter",
                max_length=FILTER_MAX,
                restrict=r"[a-z0-9._-]*",
                compact=True,
            )
            if self.operator:
                yield Checkbox("All users", id="all-users", compact=True)
        with Vertical(id="tasks-body"):
            table = KeyedTable(
                [
                    ("id", "Id", 8),
                    ("type", "Type", None),
                    ("state", "State", 9),
                    ("priority", "P", 1),
                    ("attempt", "Try", 3),
                    ("agent", "Agent", None),
                    ("age", "Age", 6),
                    ("note", "Note", None),
                ],
                id="tasks",
            )
            table.border_title = "Tasks"
            yield table
            with VerticalScroll(id="task-detail") as detail:
                detail.border_title = "Detail"
                yield Static(Text("Select a task to see its details.", style="dim"), id="detail")

    def on_mount(self) -> None:
        """Follow the tasks; let ages tick."""
        self.follow_tasks(*self._filters)
        self.set_interval(1.0, self._tick)

    # --- the live list ---------------------------------------------------------------------

    @work(exclusive=True, group="tasks")
    async def follow_tasks(self, state: str, task_type: str, all_users: bool) -> None:
        """Follow the tasks matching the filters: the snapshot, then every change."""
        wanted = filter_states(state)
        self.tasks.clear()
        self.query_one("#tasks", KeyedTable).forget()
        self._title()
        self.streams_opened += 1
        try:
            async with opened(
                self.api.watch_tasks(
                    states=wanted,
                    task_type=task_type,
                    all_users=all_users,
                    snapshot_size=min(200, self.settings.task_rows),
                )
            ) as messages:
                async for message in messages:
                    if self.torn_down:
                        return
                    self.take(message.task, wanted, task_type)
        except ClientError as error:
            self.report(error, "Watching the tasks")

    def take(
        self, task: tasks_pb.Task, states: list[tasks_pb.TaskState.ValueType], task_type: str
    ) -> None:
        """Put ``task`` in the list, or drop it when it no longer matches the filters."""
        matches = (not states or task.state in states) and (not task_type or task.type == task_type)
        if matches:
            self.tasks[task.task_id] = task
        else:
            self.tasks.pop(task.task_id, None)
        if len(self.tasks) > self.settings.task_rows:
            for oldest in sorted(self.tasks.values(), key=_order)[self.settings.task_rows :]:
                del self.tasks[oldest.task_id]
        if not self.showing_dead:
            self.draw()
        shown = self.detail
        if (
            matches
            and shown is not None
            and shown.task_id == task.task_id
            and (task.state, task.attempt) != (shown.state, shown.attempt)
        ):
            self.load_detail(task.task_id)

    def draw(self) -> None:
        """The table (the live list, or the dead letters), its title and the detail pane."""
        self._draw_rows()
        self._title()
        self._draw_detail()
        self.refresh_bindings()

    def _draw_rows(self) -> None:
        shown = self.dead if self.showing_dead else self.tasks
        now = self.now()
        rows: dict[str, list[Cell]] = {}
        for task in sorted(shown.values(), key=_order):
            state = task_state_name(task.state)
            note = task.error.message or task.waiting_reason
            if task.state == tasks_pb.TASK_STATE_RUNNING and task.progress:
                note = f"{task.progress * 100:.0f}% {task.progress_message}".strip()
            rows[task.task_id] = [
                Text(short_id(task.task_id)),
                Text(task.type),
                Text(state, style=STATE_STYLE[state]),
                Text(str(task.priority)),
                Text(str(task.attempt) if task.attempt else MISSING, justify="right"),
                Text(task.agent_id or MISSING),
                Text(since(task.created_at, now), justify="right"),
                Text(note, style="dim"),
            ]
        table = self.query_one("#tasks", KeyedTable)
        table.sync(rows)
        if self._select is not None and self._select in rows:
            table.move_cursor(row=table.keys.index(self._select))
            self._select = None

    def _title(self) -> None:
        table = self.query_one("#tasks", KeyedTable)
        if self.showing_dead:
            table.border_title = f"Dead letters ({len(self.dead)}): r re-queues, d goes back"
            return
        state, task_type, all_users = self._filters
        parts = [part for part in (state, task_type) if part]
        if all_users:
            parts.append("all users")
        described = f" ({', '.join(parts)})" if parts else ""
        table.border_title = f"Tasks{described}: {len(self.tasks)}"

    def _tick(self) -> None:
        # Ages grow with the clock between messages; only those cells change.
        if self.dead if self.showing_dead else self.tasks:
            self._draw_rows()

    # --- the detail pane -------------------------------------------------------------------

    def selected(self) -> tasks_pb.Task | None:
        """The task under the cursor (in the list or the dead letters)."""
        # Bindings are checked as soon as the screen is shown, possibly before it is composed.
        found = self.query("#tasks")
        key = found.first(KeyedTable).highlighted_key() if found else None
        return (self.dead if self.showing_dead else self.tasks).get(key or "")

    @work(exclusive=True, group="task-detail")
    async def load_detail(self, task_id: str) -> None:
        """Ask for the task with its attempts and show it."""
        try:
            task = await self.api.get_task(task_id)
        except ClientError as error:
            self.report(error, f"Reading task {short_id(task_id)}")
            return
        selected = self.selected()
        if selected is not None and selected.task_id == task_id:
            self.detail = task
            self._draw_detail()

    def _draw_detail(self) -> None:
        task = self.selected()
        pane = self.query_one("#detail", Static)
        if task is None:
            pane.update(Text("Select a task to see its details.", style="dim"))
            return
        full = self.detail
        if full is not None and full.task_id != task.task_id:
            full = None
        pane.update(render_detail(full or task, self.now().tzinfo, complete=full is not None))

    @on(KeyedTable.RowHighlighted, "#tasks")
    def _highlighted(self) -> None:
        task = self.selected()
        self._draw_detail()
        self.refresh_bindings()
        if task is not None and (self.detail is None or self.detail.task_id != task.task_id):
            self.detail = None
            self._draw_detail()
            self.load_detail(task.task_id)

    # --- filters ---------------------------------------------------------------------------

    @on(Select.Changed, "#state-filter")
    @on(Checkbox.Changed, "#all-users")
    def _filter_chosen(self) -> None:
        self._apply_filters()

    @on(Input.Changed, "#type-filter")
    def _type_typed(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_DELAY, self._apply_filters)

    @on(Input.Submitted, "#type-filter")
    def _type_submitted(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._apply_filters()

    def _apply_filters(self) -> None:
        self._filter_timer = None
        state = self.query_one("#state-filter", Select).value
        everyone = self.query(Checkbox).filter("#all-users")
        filters = (
            state if isinstance(state, str) else "",
            self.query_one("#type-filter", Input).value.strip(),
            bool(everyone) and everyone.first(Checkbox).value,
        )
        if filters != self._filters:
            self._filters = filters
            self.follow_tasks(*filters)

    def action_focus_filter(self) -> None:
        """Move to the state filter."""
        self.query_one("#state-filter", Select).focus()

    def action_reload(self) -> None:
        """Open the stream again (and list the dead letters again when shown)."""
        self.follow_tasks(*self._filters)
        if self.showing_dead:
            self.load_dead_letters()

    # --- actions ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Operator keys exist only for operators; keys are greyed out when nothing fits."""
        if action in OPERATOR_ACTIONS and not self.operator:
            return False
        task = self.selected()
        if action == "cancel_task":
            unfinished = task is not None and task.state not in FINAL_TASK_STATES
            return True if unfinished and not self.showing_dead else None
        if action == "requeue":
            return True if self.showing_dead and task is not None else None
        if action == "new_task":
            return True if not self.showing_dead else None
        return True

    def action_new_task(self) -> None:
        """Open the form; create what it gives."""

        def drafted(draft: TaskDraft | None) -> None:
            if draft is not None:
                self.create(draft)

        self.app.push_screen(TaskFormScreen(), drafted)

    @work(group="task-actions")
    async def create(self, draft: TaskDraft) -> None:
        """Create the task and highlight it in the list."""
        try:
            created = await self.api.create_task(
                draft.task_type, draft.payload, priority=draft.priority
            )
        except ClientError as error:
            self._refused(error, "Creating the task")
            return
        task = created.task
        verb = "Created" if created.created else "Already there:"
        self.notify(f"{verb} task {short_id(task.task_id)} ({task.type})", title="Done")
        self._select = task.task_id
        # The stream brings it too; drawn now so it shows even before the stream says so.
        self.take(task, filter_states(self._filters[0]), self._filters[1])
        if task.task_id not in self.tasks:
            self._select = None  # the filters hide it

    def action_cancel_task(self) -> None:
        """Confirm, then cancel the highlighted task."""
        task = self.selected()
        if task is None or self.showing_dead or task.state in FINAL_TASK_STATES:
            return
        self._confirm(
            f"Cancel task {short_id(task.task_id)} ({task.type}, "
            f"{task_state_name(task.state)})? A running task is stopped by its agent.",
            "Cancel task",
            partial(self.apply, "cancel", task.task_id),
        )

    def action_dead_letters(self) -> None:
        """Show the dead letters instead of the list, or the list again (operators)."""
        if not self.operator:
            return
        self.showing_dead = not self.showing_dead
        self.detail = None
        self.query_one("#tasks", KeyedTable).forget()
        if self.showing_dead:
            self.load_dead_letters()
        self.draw()

    @work(exclusive=True, group="dead-letters")
    async def load_dead_letters(self) -> None:
        """List the dead letters and draw them."""
        try:
            found = await self.api.list_dead_letters(limit=self.settings.dead_letters)
        except ClientError as error:
            self.report(error, "Listing the dead letters")
            return
        self.dead = {task.task_id: task for task in found}
        if self.showing_dead:
            self.draw()

    def action_requeue(self) -> None:
        """Confirm, then queue the highlighted dead letter again (operators)."""
        task = self.selected()
        if task is None or not self.showing_dead or not self.operator:
            return
        self._confirm(
            f"Re-queue task {short_id(task.task_id)} ({task.type})? It runs again with a "
            "fresh allowance of attempts.",
            "Re-queue",
            partial(self.apply, "requeue", task.task_id),
        )

    def _confirm(self, question: str, label: str, then: Callable[[], object]) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmScreen(question, action=label), answered)

    @work(group="task-actions")
    async def apply(self, kind: str, task_id: str) -> None:
        """Make the call of one confirmed action and say how it went."""
        try:
            if kind == "cancel":
                task = await self.api.cancel_task(task_id, reason="cancelled from the dashboard")
                done = f"Task {short_id(task_id)} {task_state_name(task.state)}"
            else:
                task = await self.api.requeue_dead_letter(task_id)
                done = f"Task {short_id(task_id)} re-queued ({task_state_name(task.state)})"
        except ClientError as error:
            self._refused(error, f"{kind.capitalize()} task {short_id(task_id)}")
            return
        self.notify(done, title="Done")
        if kind == "requeue":
            self.dead.pop(task_id, None)
            self.load_dead_letters()
        self.take(task, filter_states(self._filters[0]), self._filters[1])

    def _refused(self, error: ClientError, doing: str) -> None:
        if isinstance(error, CallFailed) and error.violations:
            fields = "; ".join(f"{name}: {why}" for name, why in error.violations.items())
            self.notify(f"{doing}: {fields}", title="Refused", severity="error")
            return
        self.report(error, doing)

    def commands(self) -> list[Command]:
        """The palette entries of the tasks screen (dead letters for operators only)."""
        found: list[Command] = [
            ("Tasks: create a task", "Open the form", self.action_new_task),
            ("Tasks: cancel the selected task", "Confirm first", self.action_cancel_task),
            ("Tasks: filter the list", "Focus the state filter", self.action_focus_filter),
            ("Tasks: reload", "Open the stream again", self.action_reload),
        ]
        if self.operator:
            found += [
                ("Tasks: show or hide the dead letters", "d", self.action_dead_letters),
                ("Tasks: re-queue the selected dead letter", "Confirm first", self.action_requeue),
            ]
        return found


def render_detail(task: tasks_pb.Task, zone: Any, *, complete: bool) -> Text:
    """The detail pane: the task's fields, its attempts, its result or error."""
    state = task_state_name(task.state)
    text = Text()
    text.append(task.task_id, style="bold")
    text.append("  ")
    text.append(state, style=STATE_STYLE[state])
    text.append(f"  {task.type}  priority {task.priority}")
    if task.dead_lettered:
        text.append("  dead letter", style="bold red")
    text.append(f"\nattempt {task.attempt} of {task.max_attempts}")
    if task.agent_id:
        text.append(f" on {task.agent_id}")
    text.append(
        f"  created {clock_time(task.created_at, zone)}"
        f"  started {clock_time(task.started_at, zone)}"
        f"  finished {clock_time(task.finished_at, zone)}"
    )
    if task.owner_id:
        text.append(f"  owner {task.owner_id}")
    if task.state == tasks_pb.TASK_STATE_RUNNING:
        text.append(f"\nprogress {task.progress * 100:.0f}% {task.progress_message}")
    if task.waiting_reason:
        text.append("\nwaiting: ", style="bold")
        text.append(task.waiting_reason)
    for attempt in task.attempts:
        text.append(f"\n#{attempt.number} ")
        name = task_state_name(attempt.state)
        text.append(name, style=STATE_STYLE[name])
        text.append(
            f" {attempt.agent_id or MISSING} {clock_time(attempt.started_at, zone)}"
            f" to {clock_time(attempt.finished_at, zone)}"
        )
        if attempt.error.message:
            text.append(f" {attempt.error.message}", style="red")
    if task.HasField("result"):
        result = json.dumps(json_format.MessageToDict(task.result), ensure_ascii=False)
        if len(result) > RESULT_MAX:
            result = f"{result[: RESULT_MAX - 1]}…"
        text.append("\nresult ", style="bold green")
        text.append(result)
    elif task.error.message:
        text.append("\nerror ", style="bold red")
        text.append(task.error.message)
    if not complete:
        text.append("\nreading the attempts…", style="dim")
    return text
