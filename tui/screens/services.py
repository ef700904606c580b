"""Services: every mesh service, its registered instances, and Envoy's view of each."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from sutazai.system.v1 import system_service_pb2 as system_pb
from sutazai.tui.format import (
    MISSING,
    clock_time,
    component_state_name,
    count,
    endpoint_health_name,
    short_address,
    since,
    upstream_name,
)
from sutazai.tui.screens.base import MeshScreen
from sutazai.tui.source import ClientError, opened
from sutazai.tui.widgets.tables import Cell, KeyedTable

HEALTH_STYLE = {"healthy": "green", "unhealthy": "bold red", "unknown": "yellow"}
ENDPOINT_STYLE = {
    "healthy": "green",
    "failing hc": "bold red",
    "ejected": "bold red",
    "draining": "yellow",
    "unknown": "yellow",
}


class ServicesScreen(MeshScreen):
    """Live from ``WatchServices``; uptimes tick with the clock between messages."""

    SCREEN_NAME = "services"

    def compose_body(self) -> ComposeResult:
        """The screen's widgets."""
        yield Static(Text("Waiting for the service registry…"), id="services-summary")
        with Vertical(id="services-body"):
            instances = KeyedTable(
                [
                    ("service", "Service", None),
                    ("instance", "Instance", None),
                    ("version", "Version", None),
                    ("uptime", "Uptime", 7),
                    ("health", "Health", 9),
                    ("requests", "Requests", 9),
                    ("errors", "Errors", 7),
                ],
                id="instances",
            )
            instances.border_title = "Instances (registry)"
            yield instances
            yield Static(Text("Select an instance to see its details."), id="instance-detail")
            endpoints = KeyedTable(
                [
                    ("cluster", "Cluster", None),
                    ("health", "Envoy", 10),
                    ("flags", "Flags", None),
                    ("requests", "Requests", 9),
                    ("errors", "Errors", 7),
                    ("active", "Active", 6),
                ],
                id="endpoints",
            )
            endpoints.border_title = "Endpoints (Envoy)"
            yield endpoints

    def on_mount(self) -> None:
        """Start the screen's stream workers."""
        self._latest: system_pb.WatchServicesResponse | None = None
        self._instances: dict[str, system_pb.InstanceView] = {}
        self.follow_services()
        self.set_interval(1.0, self._tick)

    @work(exclusive=True, group="services")
    async def follow_services(self) -> None:
        """Draw every view of the services as it arrives."""
        try:
            async with opened(self.api.watch_services()) as views:
                async for view in views:
                    if self.torn_down:
                        return
                    self.show_services(view)
        except ClientError as error:
            self.report(error, "Watching the services")

    def show_services(self, view: system_pb.WatchServicesResponse) -> None:
        """Draw one view: the instances table, then the highlighted instance's details."""
        self._latest = view
        self._instances = {
            f"{service.name}/{instance.instance_id}": instance
            for service in view.services
            for instance in service.instances
        }
        registered = sum(len(service.instances) for service in view.services)
        summary = Text(f"{len(view.services)} services, {registered} instances")
        short = [s.name for s in view.services if s.desired_instances > len(s.instances)]
        if short:
            summary.append(f", missing instances: {', '.join(short)}", style="bold red")
        summary.append(f"  observed {clock_time(view.observed_at, self.now().tzinfo)}")
        # One line high and as wide as the screen whatever it says: no layout to redo.
        self.query_one("#services-summary", Static).update(summary, layout=False)
        self._draw_instances()
        self._draw_detail()

    def _draw_instances(self) -> None:
        if self._latest is None:
            return
        now = self.now()
        rows: dict[str, list[Cell]] = {}
        for service in self._latest.services:
            if not service.instances:
                wanted = service.desired_instances
                rows[f"{service.name}/"] = [
                    Text(service.name),
                    Text("no instance", style="bold red" if wanted else "yellow"),
                    Text(MISSING),
                    Text(MISSING),
                    Text(f"0/{wanted}", style="bold red" if wanted else ""),
                    Text(MISSING),
                    Text(MISSING),
                ]
            for instance in service.instances:
                health = component_state_name(instance.state)
                rows[f"{service.name}/{instance.instance_id}"] = [
                    Text(service.name),
                    Text(instance.instance_id),
                    Text(instance.version or MISSING),
                    Text(since(instance.started_at, now), justify="right"),
                    Text(health, style=HEALTH_STYLE[health]),
                    Text(count(instance.requests_total), justify="right"),
                    Text(count(instance.errors_total), justify="right"),
                ]
        self.query_one("#instances", KeyedTable).sync(rows)

    def _draw_detail(self) -> None:
        key = self.query_one("#instances", KeyedTable).highlighted_key()
        instance = self._instances.get(key or "")
        detail = self.query_one("#instance-detail", Static)
        endpoints = self.query_one("#endpoints", KeyedTable)
        if instance is None:
            detail.update(Text("Select an instance to see its details."))
            endpoints.sync({})
            return
        zone = self.now().tzinfo
        text = Text()
        text.append("Address ", style="bold")
        text.append(instance.address or MISSING)
        text.append("  pid ", style="bold")
        text.append(str(instance.pid) if instance.pid else MISSING)
        text.append("\nStarted ", style="bold")
        text.append(clock_time(instance.started_at, zone))
        text.append("  heartbeat ", style="bold")
        text.append(clock_time(instance.heartbeat_at, zone))
        if instance.last_error:
            text.append("\nLast error ", style="bold red")
            text.append(instance.last_error)
        detail.update(text)
        rows: dict[str, list[Cell]] = {}
        for endpoint in instance.endpoints:
            health = endpoint_health_name(endpoint.health)
            key = endpoint.grpc_service or "http"  # an instance has one HTTP cluster at most
            rows[key] = [
                Text(upstream_name(endpoint.grpc_service, endpoint.http_prefixes)),
                Text(health, style=ENDPOINT_STYLE[health]),
                Text(endpoint.health_flags),
                Text(count(endpoint.requests_total), justify="right"),
                Text(count(endpoint.errors_total), justify="right"),
                Text(count(endpoint.active_requests), justify="right"),
            ]
        endpoints.sync(rows)
        endpoints.border_title = f"Endpoints (Envoy) of {short_address(instance.address)}"

    def _tick(self) -> None:
        # Uptimes age with the clock between messages; only those cells change.
        self._draw_instances()

    @on(DataTable.RowHighlighted, "#instances")
    def _highlighted(self) -> None:
        self._draw_detail()
