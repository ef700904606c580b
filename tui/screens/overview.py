"""Overview: the mesh's state, every component, per-service traffic, and the alerts."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from sutazai.system.v1 import system_service_pb2 as system_pb
from sutazai.tui.alerts import AlertBook, Thresholds
from sutazai.tui.format import (
    MISSING,
    clock_time,
    component_state_name,
    kind_name,
    millis,
    overall_name,
)
from sutazai.tui.screens.base import MeshScreen
from sutazai.tui.source import ClientError, opened
from sutazai.tui.widgets.alerts import AlertsPanel
from sutazai.tui.widgets.tables import Cell, KeyedTable
from sutazai.tui.widgets.traffic import TrafficTable

STATE_STYLE = {"healthy": "green", "unhealthy": "bold red", "unknown": "yellow"}
OVERALL_STYLE = {
    "healthy": "bold green",
    "degraded": "bold yellow",
    "critical": "bold red",
    "unknown": "bold yellow",
}


class OverviewScreen(MeshScreen):
    """Live from ``WatchStatus`` and ``WatchTraffic``; alerts from both, per the settings."""

    SCREEN_NAME = "overview"

    def on_mount(self) -> None:
        """Start the screen's stream workers."""
        self.alert_book = AlertBook(
            Thresholds(error_rate=self.settings.error_rate_alert, p99_ms=self.settings.p99_alert_ms)
        )
        self.follow_status()
        self.follow_traffic()

    def compose_body(self) -> ComposeResult:
        """The screen's widgets."""
        yield Static(Text("Waiting for the first probe round…"), id="overall")
        with Vertical(id="overview-body"):
            components = KeyedTable(
                [
                    ("name", "Component", None),
                    ("kind", "Kind", 7),
                    ("state", "State", 9),
                    ("latency", "Probe ms", 8),
                    ("since", "Since", 8),
                    ("checked", "Checked", 8),
                ],
                id="components",
            )
            components.border_title = "Components"
            yield components
            traffic = TrafficTable(
                history=self.settings.sparkline_points,
                error_rate_alert=self.settings.error_rate_alert,
                p99_alert_ms=self.settings.p99_alert_ms,
                id="traffic",
            )
            traffic.border_title = "Traffic (edge)"
            yield traffic
            alerts = AlertsPanel(id="alerts")
            alerts.border_title = "Alerts: none"
            yield alerts

    @work(exclusive=True, group="status")
    async def follow_status(self) -> None:
        """Draw every probe round as it arrives."""
        try:
            async with opened(self.api.watch_status()) as rounds:
                async for status in rounds:
                    if self.torn_down:
                        return
                    self.show_status(status)
        except ClientError as error:
            self.report(error, "Watching the mesh status")

    @work(exclusive=True, group="traffic")
    async def follow_traffic(self) -> None:
        """Draw every traffic sample as it arrives."""
        try:
            async with opened(self.api.watch_traffic()) as samples:
                async for sample in samples:
                    if self.torn_down:
                        return
                    self.show_traffic(sample)
        except ClientError as error:
            self.report(error, "Watching the traffic")

    def show_status(self, status: system_pb.WatchStatusResponse) -> None:
        """Draw one probe round: the summary line, the components table, the alerts."""
        zone = self.now().tzinfo
        overall = overall_name(status.overall)
        unhealthy = sum(
            1 for c in status.components if c.state == system_pb.COMPONENT_STATE_UNHEALTHY
        )
        line = Text("Mesh ")
        line.append(overall.upper(), style=OVERALL_STYLE[overall])
        line.append(f"  {len(status.components)} components, {unhealthy} unhealthy")
        line.append(f"  checked {clock_time(status.checked_at, zone)}")
        # One line high and as wide as the screen whatever it says: no layout to redo.
        self.query_one("#overall", Static).update(line, layout=False)
        rows: dict[str, list[Cell]] = {}
        for component in status.components:
            state = component_state_name(component.state)
            probed = component.state != system_pb.COMPONENT_STATE_UNSPECIFIED
            rows[component.name] = [
                Text(component.name),
                Text(kind_name(component.kind)),
                Text(state, style=STATE_STYLE[state]),
                Text(millis(component.latency_ms) if probed else MISSING, justify="right"),
                Text(clock_time(component.since, zone)),
                Text(clock_time(status.checked_at, zone)),
            ]
        table = self.query_one("#components", KeyedTable)
        table.sync(rows)
        table.border_subtitle = f"by {status.reported_by}" if status.reported_by else ""
        if self.alert_book.observe_status(status, self.now()):
            self._show_alerts()

    def show_traffic(self, sample: system_pb.WatchTrafficResponse) -> None:
        """Draw one traffic sample and re-judge the traffic alerts."""
        self.query_one("#traffic", TrafficTable).take(sample)
        window = f"{sample.window_seconds:.0f} s window" if sample.window_seconds else "first"
        self.query_one(
            "#traffic", TrafficTable
        ).border_title = (
            f"Traffic (edge, {window}, {clock_time(sample.sampled_at, self.now().tzinfo)})"
        )
        if self.alert_book.observe_traffic(sample, self.now()):
            self._show_alerts()

    def _show_alerts(self) -> None:
        self.query_one("#alerts", AlertsPanel).show(self.alert_book.active(), self.now().tzinfo)
