"""Hardware: the host live from ``WatchMetrics``; storage, advice, optimisations, quarantine.

One worker follows ``WatchMetrics`` (every ``SUTAZAI_TUI_HARDWARE_INTERVAL_SECONDS``, with the
busiest processes): four trends (CPU, memory, disk I/O, network) above the panes, and the Host
(each core, load, memory and swap, disks, temperatures and GPUs when the host has them) and
Processes panes, all updated in place from each sample. The rest is asked for, never polled:
the storage report (``GetStorageReport``, ``g`` on the Storage pane: it walks every allowed
root), the recommendations (``GetRecommendations``, when the Advice pane first opens and on
``g``) and the model's advice (``GetAdvice``, ``m``; labelled model output).

Operators also get the Optimise pane (every optimisation: ``d`` dry-runs the highlighted one and
lists exactly what it would change; only then does ``x`` run it, with the same parameters,
after a confirmation; ``e`` sets its parameters) and the Quarantine pane (``u`` restores the
highlighted file after a confirmation; admins purge one past its retention with ``delete``,
after a dry run and a confirmation). Users see neither pane, key nor palette entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Static, TabbedContent, TabPane

from sutazai.hardware.v1 import hardware_service_pb2 as hardware_pb
from sutazai.tui import hardware_text as view
from sutazai.tui.access import may_administer, may_operate
from sutazai.tui.format import MISSING, byte_rate, count, data_size, date_time, short_id
from sutazai.tui.optimise import BY_KEY, OPERATIONS, Operation, Outcome, Params, describe
from sutazai.tui.screens.base import MeshScreen
from sutazai.tui.screens.confirm import ConfirmScreen
from sutazai.tui.screens.optimise_form import OptimiseFormScreen
from sutazai.tui.source import CallFailed, ClientError, opened
from sutazai.tui.widgets.tables import Cell, KeyedTable
from sutazai.tui.widgets.trend import Trend

Command = tuple[str, str, Callable[[], object]]
"""A palette entry: title, help, and what it does."""

QUESTION_MAX = 500
"""``GetAdviceRequest.question``: at most 500 characters."""


@dataclass(frozen=True, slots=True)
class Pane:
    """One pane of the screen: its id, key, title, and whether it is for operators only."""

    name: str
    key: str
    title: str
    operators: bool = False


PANES: tuple[Pane, ...] = (
    Pane("host", "h", "Host"),
    Pane("processes", "p", "Processes"),
    Pane("storage", "s", "Storage"),
    Pane("advice", "a", "Advice"),
    Pane("optimise", "o", "Optimise", operators=True),
    Pane("quarantine", "q", "Quarantine", operators=True),
)
"""Every pane in tab order; its key opens it (the tab shows the key)."""

PANE_FOCUS = {
    "host": "#host-scroll",
    "processes": "#processes",
    "storage": "#storage-scroll",
    "advice": "#advice-scroll",
    "optimise": "#operations",
    "quarantine": "#quarantine",
}
"""The widget each pane's key focuses."""
PANE_PREFIX = "pane-"


def pane_id(name: str) -> str:
    """The widget id of pane ``name`` (the bare name is its main widget's)."""
    return f"{PANE_PREFIX}{name}"


PANE_ACTIONS: dict[str, frozenset[str]] = {
    "fetch": frozenset({"storage", "advice", "quarantine"}),
    "ask_model": frozenset({"advice"}),
    "edit_params": frozenset({"optimise"}),
    "dry_run": frozenset({"optimise"}),
    "run": frozenset({"optimise"}),
    "restore": frozenset({"quarantine"}),
    "purge": frozenset({"quarantine"}),
}
"""The panes each key works on; elsewhere it is not in the footer."""
OPERATOR_ACTIONS = frozenset({"edit_params", "dry_run", "run", "restore", "purge"})


@dataclass(frozen=True, slots=True)
class Done:
    """A dry run or run of one optimisation: with which parameters, when, what it reported."""

    params: Params
    outcome: Outcome
    when: str


class HardwareScreen(MeshScreen):
    """The host live; storage, advice, optimisations and quarantine on demand."""

    SCREEN_NAME = "hardware"

    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(p.key, f"pane('{p.name}')", p.title, show=False) for p in PANES),
        Binding("g", "fetch", "Fetch"),
        Binding("m", "ask_model", "Ask model"),
        Binding("e", "edit_params", "Parameters"),
        Binding("d", "dry_run", "Dry run"),
        Binding("x", "run", "Run"),
        Binding("u", "restore", "Restore"),
        Binding("delete", "purge", "Purge"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As :class:`MeshScreen`; nothing sampled or asked yet."""
        super().__init__(*args, **kwargs)
        self.sample: hardware_pb.HostSample | None = None
        self.samples = 0
        """Samples drawn so far (tests wait on it)."""
        self.pane = "host"
        self.params: dict[str, Params] = {op.key: Params() for op in OPERATIONS}
        self.dry_runs: dict[str, Done] = {}
        """The latest dry run of each optimisation; a run needs one with its parameters."""
        self.runs: dict[str, Done] = {}
        self.busy: str | None = None
        """The optimisation whose call is in flight (one at a time)."""
        self.shown: str | None = None
        """The optimisation whose report the changes table shows."""
        self.quarantine: dict[str, hardware_pb.QuarantinedFile] = {}
        self.quarantine_loads = 0
        """Completed quarantine listings (tests wait on it)."""
        self.recommended = False
        self.storage: hardware_pb.GetStorageReportResponse | None = None
        """The storage report shown, once asked for."""
        self.storage_loading = False
        self.advising = False

    @property
    def operator(self) -> bool:
        """Whether the signed-in role may optimise and see the quarantine (checked again)."""
        return may_operate(self.role)

    @property
    def admin(self) -> bool:
        """Whether the signed-in role may purge the quarantine (checked again)."""
        return may_administer(self.role)

    def panes(self) -> list[Pane]:
        """The panes this role sees."""
        return [p for p in PANES if self.operator or not p.operators]

    # --- layout ----------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        """The summary line, the trends and the panes."""
        yield Static(Text("Waiting for the first sample of the host…"), id="hw-summary")
        points = self.settings.hardware_points
        with Vertical(id="hw-trends"):
            yield Trend("CPU", history=points, ceiling=100.0, high=view.HOT_PERCENT, id="trend-cpu")
            yield Trend(
                "Memory", history=points, ceiling=100.0, high=view.HOT_PERCENT, id="trend-memory"
            )
            yield Trend("Disk", history=points, id="trend-disk")
            yield Trend("Net", history=points, id="trend-network")
        with TabbedContent(id="hw-panes", initial=pane_id("host")):
            for pane in self.panes():
                with TabPane(f"{pane.key} {pane.title}", id=pane_id(pane.name)):
                    yield from getattr(self, f"_compose_{pane.name}")()

    def _compose_host(self) -> ComposeResult:
        with VerticalScroll(id="host-scroll"):
            yield Static(Text("Waiting for the first sample…", style="dim"), id="host-figures")
            disks = KeyedTable(
                # Figures first: a long mount point (a container's overlay) must not push them
                # off a narrow screen.
                [
                    ("percent", "Use", 6),
                    ("used", "Used", 9),
                    ("total", "Size", 9),
                    ("read", "Read/s", 12),
                    ("write", "Write/s", 12),
                    ("mount", "Mount", None),
                    ("device", "Device", None),
                    ("fstype", "FS", None),
                ],
                id="disks",
                classes="auto-table",
            )
            disks.border_title = "Disks"
            yield disks
            sensors = KeyedTable(
                [
                    ("sensor", "Sensor", None),
                    ("label", "Label", None),
                    ("now", "Now", 6),
                    ("high", "High", 6),
                    ("critical", "Crit", 6),
                ],
                id="sensors",
                classes="auto-table",
            )
            sensors.border_title = "Temperatures"
            yield sensors
            gpus = KeyedTable(
                [
                    ("index", "#", 2),
                    ("name", "GPU", None),
                    ("use", "Use", 6),
                    ("memory", "Memory", 22),
                    ("temp", "Temp", 6),
                ],
                id="gpus",
                classes="auto-table",
            )
            gpus.border_title = "GPUs"
            yield gpus
            yield Static(Text(""), id="host-absent")

    def _compose_processes(self) -> ComposeResult:
        table = KeyedTable(
            [
                # The name last: a long command line must not push the figures away.
                ("pid", "PID", 7),
                ("cpu", "CPU", 6),
                ("memory", "Memory", 10),
                ("mem_percent", "Mem", 6),
                ("nice", "Nice", 4),
                ("mesh", "Mesh", 4),
                ("user", "User", None),
                ("name", "Name", None),
            ],
            id="processes",
        )
        table.border_title = "Busiest processes (by CPU, then memory)"
        yield table

    def _compose_storage(self) -> ComposeResult:
        with VerticalScroll(id="storage-scroll"):
            yield Static(
                Text(
                    "g: the storage report of every allowed root (disk use, make-up, duplicates, "
                    "largest files). It walks the roots, so it is asked for only on demand.",
                    style="dim",
                ),
                id="storage",
            )

    def _compose_advice(self) -> ComposeResult:
        with Horizontal(id="advice-row"):
            yield Label("Question")
            yield Input(
                placeholder="optional; m asks the model",
                id="advice-question",
                max_length=QUESTION_MAX,
                compact=True,
            )
        with VerticalScroll(id="advice-scroll"):
            yield Static(Text("Asking for the recommendations…", style="dim"), id="recommendations")
            yield Static(
                Text(
                    "m: the model's advice on this sample (model output, on demand).", style="dim"
                ),
                id="advice",
            )

    def _compose_optimise(self) -> ComposeResult:
        operations = KeyedTable(
            [
                ("operation", "Operation", None),
                ("dry_run", "Last dry run", None),
                ("run", "Last run", None),
            ],
            id="operations",
        )
        operations.border_title = "Optimisations: d dry run, x run, e parameters"
        yield operations
        yield Static(Text(""), id="operation-params")
        yield Static(
            Text("Dry-run an optimisation to see exactly what it would change.", style="dim"),
            id="change-summary",
        )
        changes = KeyedTable(
            [
                ("action", "Action", 10),
                ("bytes", "Bytes", 10),
                ("target", "Target", None),
                ("reason", "Reason", None),
                ("error", "Error", None),
            ],
            id="changes",
        )
        changes.border_title = "Changes"
        yield changes

    def _compose_quarantine(self) -> ComposeResult:
        table = KeyedTable(
            [
                ("size", "Size", 10),
                ("when", "Quarantined", 16),
                ("path", "Original path", None),
                ("operation", "Operation", None),
                ("actor", "By", None),
                ("entry", "Entry", 8),
            ],
            id="quarantine",
        )
        table.border_title = "Quarantine"
        yield table
        yield Static(Text("Select a file to see its details.", style="dim"), id="quarantine-detail")

    def on_mount(self) -> None:
        """Follow the host; draw the optimisations."""
        self.follow_metrics()
        if self.operator:
            self._draw_operations()

    # --- the live sample -------------------------------------------------------------------

    @work(exclusive=True, group="hardware-metrics")
    async def follow_metrics(self) -> None:
        """Draw every sample as it arrives."""
        try:
            async with opened(
                self.api.watch_hardware_metrics(
                    interval_seconds=self.settings.hardware_interval_seconds,
                    top_processes=self.settings.hardware_processes,
                )
            ) as samples:
                async for sample in samples:
                    if self.torn_down:
                        return
                    self.show_sample(sample)
        except ClientError as error:
            self.report(error, "Watching the host")

    def show_sample(self, sample: hardware_pb.HostSample) -> None:
        """Draw one sample: summary, trends, the Host and Processes panes.

        Every sample's rates are measured (the service's sampler waits for a window before it
        answers, the first sample of a stream included), so each one is drawn.
        """
        self.sample = sample
        self.samples += 1
        zone = self.now().tzinfo
        self.query_one("#hw-summary", Static).update(view.summary_line(sample, zone), layout=False)
        self.query_one("#trend-cpu", Trend).add(sample.cpu.percent, view.cpu_figure(sample))
        self.query_one("#trend-memory", Trend).add(
            sample.memory.percent, view.memory_figure(sample)
        )
        disk, network = (
            self.query_one("#trend-disk", Trend),
            self.query_one("#trend-network", Trend),
        )
        disk.add(sum(view.disk_rates(sample)), view.disk_figure(sample))
        network.add(sum(view.network_rates(sample)), view.network_figure(sample))
        self._draw_host(sample)
        self._draw_processes(sample)

    def _draw_host(self, sample: hardware_pb.HostSample) -> None:
        self.query_one("#host-figures", Static).update(view.host_figures(sample))
        rows: dict[str, list[Cell]] = {}
        for disk in sample.disks:
            rows[disk.mountpoint] = [
                Text(
                    view.share(disk.percent), justify="right", style=view.share_style(disk.percent)
                ),
                Text(data_size(disk.used_bytes), justify="right"),
                Text(data_size(disk.total_bytes), justify="right"),
                Text(byte_rate(disk.read_bytes_per_second), justify="right"),
                Text(byte_rate(disk.write_bytes_per_second), justify="right"),
                Text(disk.mountpoint),
                Text(disk.device or MISSING),
                Text(disk.fstype or MISSING),
            ]
        self.query_one("#disks", KeyedTable).sync(rows)
        sensors = self.query_one("#sensors", KeyedTable)
        sensors.sync(
            {
                f"{found.sensor}/{found.label}/{index}": view.temperature_cells(found)
                for index, found in enumerate(sample.temperatures)
            }
        )
        sensors.display = bool(sample.temperatures)
        gpus = self.query_one("#gpus", KeyedTable)
        gpus.sync({str(gpu.index): view.gpu_cells(gpu) for gpu in sample.gpus})
        gpus.display = bool(sample.gpus)
        absent = [
            what
            for what, present in (
                ("temperature sensors", sample.temperatures),
                ("GPUs", sample.gpus),
            )
            if not present
        ]
        self.query_one("#host-absent", Static).update(
            Text(f"The host reports no {' and no '.join(absent)}." if absent else "", style="dim")
        )

    def _draw_processes(self, sample: hardware_pb.HostSample) -> None:
        rows: dict[str, list[Cell]] = {}
        for process in sample.top_processes:
            rows[str(process.pid)] = [
                Text(str(process.pid), justify="right"),
                Text(
                    view.share(process.cpu_percent),
                    justify="right",
                    style=view.share_style(process.cpu_percent),
                ),
                Text(data_size(process.memory_bytes), justify="right"),
                Text(view.share(process.memory_percent), justify="right"),
                Text(str(process.nice), justify="right"),
                Text("yes", style="cyan") if process.mesh else Text("no", style="dim"),
                Text(process.username or MISSING),
                Text(process.name or MISSING),
            ]
        table = self.query_one("#processes", KeyedTable)
        table.sync(rows)
        if not sample.top_processes:
            table.border_title = (
                "Busiest processes: none asked for (SUTAZAI_TUI_HARDWARE_PROCESSES)"
            )

    # --- panes -----------------------------------------------------------------------------

    def action_pane(self, name: str) -> None:
        """Show pane ``name`` (one this role sees) and focus its main widget.

        The focus moves too: a widget focused in the pane being hidden would take its pane
        back (``TabbedContent`` shows the pane of whatever gets the focus), and the keys of the
        pane shown (arrows, page up and down) work at once.
        """
        if any(p.name == name for p in self.panes()):
            self.query_one("#hw-panes", TabbedContent).active = pane_id(name)
            self.query_one(PANE_FOCUS[name]).focus()

    @on(TabbedContent.TabActivated, "#hw-panes")
    def _pane_shown(self, event: TabbedContent.TabActivated) -> None:
        self.pane = (event.pane.id or pane_id("host")).removeprefix(PANE_PREFIX)
        if self.pane == "advice" and not self.recommended:
            self.recommended = True
            self.fetch_recommendations()
        if self.pane == "quarantine" and not self.quarantine_loads:
            self.load_quarantine()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys exist on their panes (operator keys for operators); greyed out when not ready."""
        if action == "pane":
            return bool(parameters) and any(p.name == parameters[0] for p in self.panes())
        if action not in PANE_ACTIONS:
            return True
        if action in OPERATOR_ACTIONS and not self.operator:
            return False
        if action == "purge" and not self.admin:
            return False
        if self.pane not in PANE_ACTIONS[action]:
            return False
        if action in {"edit_params", "dry_run", "run"}:
            return self._optimise_ready(action)
        if action in {"restore", "purge"}:
            return True if self.selected_entry() is not None else None
        if action == "ask_model":
            return None if self.advising else True
        return True

    def _optimise_ready(self, action: str) -> bool | None:
        operation = self.selected_operation()
        if operation is None or self.busy is not None:
            return None
        if action == "edit_params":
            return True if operation.fields else None
        if action == "run":
            return True if self.can_run(operation) else None
        return True

    def action_fetch(self) -> None:
        """Ask again for what the current pane shows (the storage report on Storage)."""
        if self.pane == "storage":
            self.fetch_storage()
        elif self.pane == "advice":
            self.fetch_recommendations()
        elif self.pane == "quarantine" and self.operator:
            self.load_quarantine()

    # --- storage ---------------------------------------------------------------------------

    def action_storage_report(self) -> None:
        """Open the Storage pane and ask for the report."""
        self.action_pane("storage")
        self.fetch_storage()

    @work(exclusive=True, group="storage-report")
    async def fetch_storage(self) -> None:
        """Ask for the storage report and show it."""
        pane = self.query_one("#storage", Static)
        self.storage_loading = True
        pane.update(Text("Walking every allowed root for the storage report…", style="dim"))
        try:
            report = await self.api.storage_report()
        except ClientError as error:
            pane.update(Text(f"The storage report failed: {error}", style="red"))
            self.report(error, "Reading the storage report")
            return
        finally:
            self.storage_loading = False
        if not self.torn_down:
            self.storage = report
            pane.update(view.storage_text(report, self.now().tzinfo))

    # --- recommendations and advice --------------------------------------------------------

    @work(exclusive=True, group="recommendations")
    async def fetch_recommendations(self) -> None:
        """Ask for the recommendations on a fresh sample and show them."""
        pane = self.query_one("#recommendations", Static)
        try:
            reply = await self.api.hardware_recommendations()
        except ClientError as error:
            pane.update(Text(f"The recommendations failed: {error}", style="red"))
            self.report(error, "Reading the recommendations")
            return
        if not self.torn_down:
            pane.update(view.recommendations_text(reply, self.now().tzinfo))

    def action_ask_model(self) -> None:
        """Ask the model for advice (with the question typed, if any)."""
        self.action_pane("advice")
        if not self.advising:
            self.fetch_advice(self.query_one("#advice-question", Input).value.strip())

    @on(Input.Submitted, "#advice-question")
    def _question_submitted(self) -> None:
        self.action_ask_model()

    @work(exclusive=True, group="advice")
    async def fetch_advice(self, question: str) -> None:
        """Ask ``GetAdvice`` and show the text under its model-output label."""
        pane = self.query_one("#advice", Static)
        self.advising = True
        self.refresh_bindings()
        pane.update(Text("Asking the model (model output, it may take a while)…", style="dim"))
        try:
            reply = await self.api.hardware_advice(question=question[:QUESTION_MAX])
        except ClientError as error:
            pane.update(Text(f"The advice failed: {error}", style="red"))
            self.report(error, "Asking for advice")
            return
        finally:
            self.advising = False
            if not self.torn_down:
                self.refresh_bindings()
        if not self.torn_down:
            pane.update(view.advice_text(reply, self.now().tzinfo))

    # --- optimisations (operators) ---------------------------------------------------------

    def selected_operation(self) -> Operation | None:
        """The optimisation under the cursor of the operations table."""
        found = self.query("#operations")
        key = found.first(KeyedTable).highlighted_key() if found else None
        return BY_KEY.get(key or "")

    def can_run(self, operation: Operation) -> bool:
        """Whether ``operation`` has a dry run with its current parameters to run for real."""
        done = self.dry_runs.get(operation.key)
        return done is not None and done.params == self.params[operation.key]

    def _draw_operations(self) -> None:
        rows: dict[str, list[Cell]] = {}
        for operation in OPERATIONS:
            dry, ran = self.dry_runs.get(operation.key), self.runs.get(operation.key)
            busy = self.busy == operation.key
            rows[operation.key] = [
                Text(operation.title, style="bold" if self.shown == operation.key else ""),
                Text("running…", style="yellow")
                if busy
                else (view.outcome_cell(dry.outcome.report, dry.when) if dry else Text(MISSING)),
                view.outcome_cell(ran.outcome.report, ran.when) if ran else Text(MISSING),
            ]
        self.query_one("#operations", KeyedTable).sync(rows)
        self._draw_params()

    def _draw_params(self) -> None:
        operation = self.selected_operation() or OPERATIONS[0]
        line = Text(f"{operation.title}: ", style="bold")
        line.append(describe(operation, self.params[operation.key]))
        if operation.fields:
            line.append("  (e sets them)", style="dim")
        self.query_one("#operation-params", Static).update(line)

    def _focus_operation(self, key: str) -> None:
        self.action_pane("optimise")
        table = self.query_one("#operations", KeyedTable)
        if key in table.keys:
            table.move_cursor(row=table.keys.index(key))

    def action_edit_params(self, key: str | None = None) -> None:
        """Set the highlighted (or ``key``) optimisation's parameters."""
        operation = self._operation(key)
        if operation is None or not operation.fields or self.busy is not None:
            return

        def chosen(params: Params | None) -> None:
            if params is not None and params != self.params[operation.key]:
                self.params[operation.key] = params
                self._draw_operations()
                self.refresh_bindings()

        self.app.push_screen(OptimiseFormScreen(operation, self.params[operation.key]), chosen)

    def _operation(self, key: str | None) -> Operation | None:
        if not self.operator:
            return None
        if key is not None:
            self._focus_operation(key)
            return BY_KEY.get(key)
        return self.selected_operation()

    def action_dry_run(self, key: str | None = None) -> None:
        """Dry-run the highlighted (or ``key``) optimisation: list what it would change."""
        operation = self._operation(key)
        if operation is not None and self.busy is None:
            self.change(operation, self.params[operation.key], dry_run=True)

    def action_run(self, key: str | None = None) -> None:
        """Confirm, then run the optimisation its dry run showed, with the same parameters."""
        operation = self._operation(key)
        if operation is None or self.busy is not None:
            return
        if not self.can_run(operation):
            self.notify(
                f"Dry-run {operation.title} first (d): a run makes the changes its dry run listed.",
                title="Dry run first",
                severity="warning",
            )
            return
        done = self.dry_runs[operation.key]
        report = done.outcome.report
        where = done.params.path or "the first allowed root"
        scope = f" under {where}" if "path" in operation.fields else ""
        question = (
            f"Run {operation.title}{scope} for real? The dry run at {done.when} listed "
            f"{count(report.changed)} changes ({data_size(report.bytes_freed)}). "
            f"{operation.effect}"
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.change(operation, done.params, dry_run=False)

        self.app.push_screen(ConfirmScreen(question, action="Run"), answered)

    @work(group="optimise")
    async def change(self, operation: Operation, params: Params, *, dry_run: bool) -> None:
        """Make one dry run or run, then show its report."""
        self.busy = operation.key
        self._draw_operations()
        self.refresh_bindings()
        doing = f"{'Dry run of' if dry_run else 'Running'} {operation.title}"
        try:
            outcome = await operation.call(self.api, params, dry_run)
        except ClientError as error:
            self._refused(error, doing)
            return
        finally:
            self.busy = None
            if not self.torn_down:
                self._draw_operations()
                self.refresh_bindings()
        if self.torn_down:
            return
        done = Done(params, outcome, self.now().strftime("%H:%M:%S"))
        if dry_run:
            self.dry_runs[operation.key] = done
        else:
            # A run uses its dry run up: the next run needs a fresh look at what it would do.
            self.dry_runs.pop(operation.key, None)
            self.runs[operation.key] = done
            report = outcome.report
            self.notify(
                f"{operation.title}: {count(report.changed)} changed, "
                f"{data_size(report.bytes_freed)} freed, {count(report.failed)} failed",
                title="Done",
                severity="error" if report.failed else "information",
            )
            self.load_quarantine()
        self.show_changes(operation, done)

    def show_changes(self, operation: Operation, done: Done) -> None:
        """The summary line and one row per planned (or made) change."""
        self.shown = operation.key
        self._draw_operations()
        outcome = done.outcome
        self.query_one("#change-summary", Static).update(
            view.change_summary(
                operation.title,
                outcome.report,
                done.when,
                rss=(outcome.rss_before_bytes, outcome.rss_after_bytes),
            )
        )
        limit = self.settings.change_rows
        rows: dict[str, list[Cell]] = {}
        for index, change in enumerate(list(outcome.report.changes)[:limit]):
            rows[str(index)] = [
                Text(change.action),
                Text(data_size(change.bytes), justify="right"),
                Text(change.target),
                Text(change.reason, style="dim"),
                Text(change.error or "", style="bold red"),
            ]
        table = self.query_one("#changes", KeyedTable)
        table.forget()
        table.sync(rows)
        total = len(outcome.report.changes)
        shown = f"first {count(limit)} of {count(total)}" if total > limit else count(total)
        kind = "would change" if outcome.report.dry_run else "changed"
        table.border_title = f"Changes: {operation.title} {kind} ({shown})"
        self.refresh_bindings()

    # --- quarantine (operators; purge: admins) ---------------------------------------------

    @work(exclusive=True, group="quarantine")
    async def load_quarantine(self) -> None:
        """List the quarantined files, newest first."""
        if not self.operator:
            return
        try:
            entries = await self.api.list_quarantine(limit=self.settings.quarantine_rows)
        except ClientError as error:
            self.report(error, "Listing the quarantine")
            return
        if not self.torn_down:
            self.show_quarantine(entries)

    def show_quarantine(self, entries: list[hardware_pb.QuarantinedFile]) -> None:
        """Draw the quarantined files and the highlighted one's details."""
        self.quarantine = {entry.entry_id: entry for entry in entries}
        zone = self.now().tzinfo
        rows: dict[str, list[Cell]] = {}
        for entry in entries:
            rows[entry.entry_id] = [
                Text(data_size(entry.size_bytes), justify="right"),
                Text(date_time(entry.quarantined_at, zone)),
                Text(entry.original_path),
                Text(entry.operation or MISSING),
                Text(entry.actor or MISSING),
                Text(short_id(entry.entry_id)),
            ]
        table = self.query_one("#quarantine", KeyedTable)
        table.sync(rows)
        total = sum(entry.size_bytes for entry in entries)
        table.border_title = (
            f"Quarantine: {view.files(len(entries))}, {data_size(total)}"
            f" (listed {clock_time_now(self)})"
        )
        self.quarantine_loads += 1
        self._draw_entry()
        self.refresh_bindings()

    def selected_entry(self) -> hardware_pb.QuarantinedFile | None:
        """The quarantined file under the cursor."""
        found = self.query("#quarantine")
        key = found.first(KeyedTable).highlighted_key() if found else None
        return self.quarantine.get(key or "")

    def _draw_entry(self) -> None:
        entry = self.selected_entry()
        detail = self.query_one("#quarantine-detail", Static)
        if entry is None:
            detail.update(Text("Select a file to see its details.", style="dim"))
        else:
            detail.update(view.quarantine_detail(entry, self.now().tzinfo))

    @on(KeyedTable.RowHighlighted, "#quarantine")
    def _entry_highlighted(self) -> None:
        self._draw_entry()
        self.refresh_bindings()

    @on(KeyedTable.RowHighlighted, "#operations")
    def _operation_highlighted(self) -> None:
        self._draw_params()
        self.refresh_bindings()

    def action_restore(self) -> None:
        """Confirm, then move the highlighted file back where it was."""
        entry = self.selected_entry()
        if entry is None or not self.operator:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.restore(entry.entry_id)

        self.app.push_screen(
            ConfirmScreen(
                f"Restore {entry.original_path} ({data_size(entry.size_bytes)})? It goes back "
                "where it was, byte for byte; if something is there now, nothing is overwritten "
                "and the restore fails.",
                action="Restore",
            ),
            answered,
        )

    @work(group="quarantine-actions")
    async def restore(self, entry_id: str) -> None:
        """Restore one entry and say how it went; list the quarantine again."""
        try:
            results = await self.api.restore_quarantined([entry_id])
        except ClientError as error:
            self._refused(error, "Restoring")
            return
        for result in results:
            if result.restored:
                self.notify(f"{result.original_path} restored", title="Restored")
            else:
                self.notify(
                    f"{result.original_path or result.entry_id}: {result.error or 'not restored'}",
                    title="Not restored",
                    severity="error",
                )
        self.load_quarantine()

    def action_purge(self, every: bool = False) -> None:
        """Dry-run purging the highlighted entry (or ``every`` one past retention); confirm."""
        if not self.admin:
            return
        if every:
            self.action_pane("quarantine")
            self.purge([], dry_run=True)
            return
        entry = self.selected_entry()
        if entry is not None:
            self.purge([entry.entry_id], dry_run=True)

    @work(group="quarantine-actions")
    async def purge(self, entry_ids: list[str], *, dry_run: bool) -> None:
        """Purge (or dry-run purging) ``entry_ids`` (none: every entry past retention)."""
        try:
            reply = await self.api.purge_quarantine(entry_ids, dry_run=dry_run)
        except ClientError as error:
            self._refused(error, "Purging the quarantine")
            return
        if self.torn_down:
            return
        if not dry_run:
            self.notify(
                f"{view.files(len(reply.purged))} deleted for good, "
                f"{data_size(reply.bytes_freed)} freed",
                title="Purged",
            )
            self.load_quarantine()
            return
        if not reply.purged:
            entry = self.quarantine.get(entry_ids[0]) if entry_ids else None
            until = (
                f": kept until {date_time(entry.purgeable_at, self.now().tzinfo)}"
                if entry is not None
                else ""
            )
            self.notify(f"Nothing is past its retention{until}.", title="Nothing to purge")
            return
        paths = ", ".join(found.original_path for found in list(reply.purged)[:3])
        more = f" and {count(len(reply.purged) - 3)} more" if len(reply.purged) > 3 else ""

        def answered(yes: bool | None) -> None:
            if yes:
                self.purge([found.entry_id for found in reply.purged], dry_run=False)

        self.app.push_screen(
            ConfirmScreen(
                f"Delete {view.files(len(reply.purged))} from the quarantine "
                f"({data_size(reply.bytes_freed)}) for good: {paths}{more}? They cannot be "
                "restored afterwards.",
                action="Purge",
            ),
            answered,
        )

    def _refused(self, error: ClientError, doing: str) -> None:
        if isinstance(error, CallFailed) and error.violations:
            fields = "; ".join(f"{name}: {why}" for name, why in error.violations.items())
            self.notify(f"{doing}: {fields}", title="Refused", severity="error")
            return
        self.report(error, doing)

    # --- palette ---------------------------------------------------------------------------

    def commands(self) -> list[Command]:
        """The palette entries of the hardware screen (optimise and quarantine: operators)."""
        found: list[Command] = [
            (f"Hardware: show {p.title}", f"Key {p.key}", partial(self.action_pane, p.name))
            for p in self.panes()
        ]
        found += [
            (
                "Hardware: fetch the storage report",
                "Walks every allowed root",
                self.action_storage_report,
            ),
            (
                "Hardware: fetch the recommendations",
                "On a fresh sample",
                partial(self._fetch_on, "advice"),
            ),
            ("Hardware: ask the model for advice", "m (model output)", self.action_ask_model),
        ]
        if not self.operator:
            return found
        for operation in OPERATIONS:
            found.append(
                (
                    f"Hardware: dry run {operation.title}",
                    "List what it would change",
                    partial(self.action_dry_run, operation.key),
                )
            )
            found.append(
                (
                    f"Hardware: run {operation.title}",
                    "After its dry run; confirm first",
                    partial(self.action_run, operation.key),
                )
            )
            if operation.fields:
                found.append(
                    (
                        f"Hardware: set the parameters of {operation.title}",
                        "Path, age, patterns, ...",
                        partial(self.action_edit_params, operation.key),
                    )
                )
        found += [
            (
                "Hardware: reload the quarantine",
                "g on its pane",
                partial(self._fetch_on, "quarantine"),
            ),
            (
                "Hardware: restore the selected quarantined file",
                "Confirm first",
                self.action_restore,
            ),
        ]
        if self.admin:
            found += [
                (
                    "Hardware: purge the selected quarantined file",
                    "Past its retention; confirm first",
                    self.action_purge,
                ),
                (
                    "Hardware: purge every quarantined file past its retention",
                    "Dry run, then confirm",
                    partial(self.action_purge, True),
                ),
            ]
        return found

    def _fetch_on(self, pane: str) -> None:
        self.action_pane(pane)
        if pane == "advice":
            self.fetch_recommendations()
        elif pane == "quarantine":
            self.load_quarantine()


def clock_time_now(screen: MeshScreen) -> str:
    """The screen clock's ``HH:MM:SS``."""
    return screen.now().strftime("%H:%M:%S")
