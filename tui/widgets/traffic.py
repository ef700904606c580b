"""Per-service traffic: rates, error rate, latency percentiles and a sparkline of req/s."""

from __future__ import annotations

from collections import deque

from rich.color import Color
from rich.text import Text
from textual.renderables.sparkline import Sparkline

from sutazai.system.v1 import system_service_pb2 as system_pb
from sutazai.tui.format import MISSING, count, millis, percent, rate, traffic_key, upstream_name
from sutazai.tui.widgets.tables import Cell, KeyedTable

TREND_WIDTH = 16
EDGE_KEY = "edge"


class TrafficTable(KeyedTable):
    """Rows from ``WatchTraffic``: the whole edge, each gRPC service, each service's HTTP routes."""

    def __init__(
        self,
        *,
        history: int,
        error_rate_alert: float,
        p99_alert_ms: float,
        id: str | None = None,
    ) -> None:
        """Keep ``history`` samples per row; flag figures over the alert thresholds."""
        super().__init__(
            [
                ("service", "Service", None),
                ("rps", "req/s", 7),
                ("errors", "err", 6),
                ("p50", "p50 ms", 6),
                ("p99", "p99 ms", 6),
                ("active", "act", 4),
                ("trend", "req/s trend", TREND_WIDTH),
            ],
            id=id,
        )
        self._history_length = history
        self._error_rate_alert = error_rate_alert
        self._p99_alert_ms = p99_alert_ms
        self._history: dict[str, deque[float]] = {}

    def take(self, sample: system_pb.WatchTrafficResponse) -> None:
        """Show ``sample``; a first sample (no window yet) has no rates to show."""
        measured = sample.window_seconds > 0
        shared: dict[str, int] = {}
        for service in sample.services:
            shared[service.service] = shared.get(service.service, 0) + 1
        rows: dict[str, list[Cell]] = {
            EDGE_KEY: self._row(Text("edge (all)", style="bold"), EDGE_KEY, sample.edge, measured)
        }
        for service in sample.services:
            label = service.service
            if shared[service.service] > 1:
                label = f"{label} {upstream_name(service.grpc_service, service.http_prefixes)}"
            key = traffic_key(service)
            rows[key] = self._row(Text(label), key, service.figures, measured)
        for key in [k for k in self._history if k not in rows]:
            del self._history[key]
        self.sync(rows)

    def history(self, key: str) -> list[float]:
        """The req/s samples kept for a row, oldest first."""
        return list(self._history.get(key, ()))

    def _row(
        self, label: Text, key: str, figures: system_pb.TrafficFigures, measured: bool
    ) -> list[Cell]:
        history = self._history.setdefault(key, deque(maxlen=self._history_length))
        if not measured:
            return [
                label,
                Text(MISSING),
                Text(MISSING),
                Text(MISSING),
                Text(MISSING),
                Text(count(figures.active_requests)),
                self._trend(history),
            ]
        history.append(figures.requests_per_second)
        if figures.requests_per_second == 0:
            # No request completed in the window: no error rate or latency to show (the
            # stream sends zeros), and a "0.0 ms" would read as a measurement.
            return [
                label,
                Text(rate(0.0), justify="right"),
                Text(MISSING, justify="right"),
                Text(MISSING, justify="right"),
                Text(MISSING, justify="right"),
                Text(count(figures.active_requests), justify="right"),
                self._trend(history),
            ]
        errors = Text(percent(figures.error_rate), justify="right")
        if figures.requests_per_second > 0 and figures.error_rate > self._error_rate_alert:
            errors.stylize("bold red")
        p99 = Text(millis(figures.p99_ms), justify="right")
        if figures.requests_per_second > 0 and figures.p99_ms > self._p99_alert_ms:
            p99.stylize("bold red")
        return [
            label,
            Text(rate(figures.requests_per_second), justify="right"),
            errors,
            Text(millis(figures.p50_ms), justify="right"),
            p99,
            Text(count(figures.active_requests), justify="right"),
            self._trend(history),
        ]

    @staticmethod
    def _trend(history: deque[float]) -> Cell:
        if len(history) < 2:
            # One point draws no trend; an empty cell says "not yet", a flat line would lie.
            return Text("")
        return Sparkline(
            list(history),
            width=TREND_WIDTH,
            min_color=Color.parse("#3a7bd5"),
            max_color=Color.parse("#e5533d"),
        )
