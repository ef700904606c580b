"""The alerts panel: what is wrong now, worst first."""

from __future__ import annotations

from datetime import tzinfo

from rich.text import Text

from sutazai.tui.alerts import Alert, Severity
from sutazai.tui.widgets.tables import Cell, KeyedTable


class AlertsPanel(KeyedTable):
    """One row per active alert; the border title counts them."""

    def __init__(self, *, id: str | None = None) -> None:
        """An empty panel."""
        super().__init__(
            [
                ("severity", "Severity", 8),
                ("subject", "Subject", None),
                ("since", "Since", 8),
                ("message", "Alert", None),
            ],
            id=id,
        )

    def show(self, alerts: list[Alert], zone: tzinfo | None) -> None:
        """Draw ``alerts`` (already in order)."""
        rows: dict[str, list[Cell]] = {}
        for alert in alerts:
            style = "bold red" if alert.severity is Severity.CRITICAL else "bold yellow"
            rows[alert.key] = [
                Text(alert.severity.value, style=style),
                Text(alert.subject),
                Text(alert.since.astimezone(zone).strftime("%H:%M:%S")),
                Text(alert.message),
            ]
        self.sync(rows)
        self.border_title = f"Alerts ({len(alerts)})" if alerts else "Alerts: none"
        self.set_class(bool(alerts), "-alerting")
