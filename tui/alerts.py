"""Alerts: which components are unhealthy and which services cross a traffic threshold.

Pure bookkeeping over the status and traffic streams (no Textual): the overview feeds it every
message and draws :meth:`AlertBook.active`. An alert is raised when its condition first holds
and cleared when a later message shows it no longer does; ``since`` is when it was raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sutazai.system.v1 import system_service_pb2 as system_pb
from sutazai.tui.format import millis, percent, traffic_key


class Severity(Enum):
    """How bad an alert is; critical ones are drawn first."""

    CRITICAL = "critical"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Alert:
    """One condition that holds now."""

    key: str
    """Stable identity, e.g. ``component:auth/3f2a`` or ``p99:chat``."""
    severity: Severity
    subject: str
    """The component or service it is about."""
    message: str
    since: datetime
    """When the dashboard first saw the condition."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When traffic becomes an alert (from :class:`sutazai.tui.settings.DashboardSettings`)."""

    error_rate: float
    p99_ms: float


_CRITICAL_INFRA = frozenset({"postgres", "redis", "nats"})
"""Components the mesh cannot work without (as the system service judges CRITICAL)."""


class AlertBook:
    """The alerts that hold now, kept up to date from the status and traffic streams."""

    def __init__(self, thresholds: Thresholds) -> None:
        self._thresholds = thresholds
        self._status: dict[str, Alert] = {}
        self._traffic: dict[str, Alert] = {}

    def observe_status(self, message: system_pb.WatchStatusResponse, now: datetime) -> bool:
        """Take a probe round in; return whether the set of alerts changed."""
        found: dict[str, tuple[Severity, str, str]] = {}
        for component in message.components:
            if component.state != system_pb.COMPONENT_STATE_UNHEALTHY:
                continue
            severity = Severity.CRITICAL if component.name in _CRITICAL_INFRA else Severity.WARNING
            reason = component.last_error or "probe failed"
            found[f"component:{component.name}"] = (
                severity,
                component.name,
                f"unhealthy: {reason}",
            )
        return self._replace(self._status, found, now)

    def observe_traffic(self, message: system_pb.WatchTrafficResponse, now: datetime) -> bool:
        """Take a traffic sample in; return whether the set of alerts changed.

        A first sample (no window yet) carries no rates, so it neither raises nor clears.
        """
        if message.window_seconds <= 0:
            return False
        limits = self._thresholds
        found: dict[str, tuple[Severity, str, str]] = {}
        for service in message.services:
            figures = service.figures
            if figures.requests_per_second <= 0:
                continue
            if figures.error_rate > limits.error_rate:
                found[f"error_rate:{traffic_key(service)}"] = (
                    Severity.WARNING,
                    service.service,
                    f"error rate {percent(figures.error_rate)} > {percent(limits.error_rate)}",
                )
            if figures.p99_ms > limits.p99_ms:
                found[f"p99:{traffic_key(service)}"] = (
                    Severity.WARNING,
                    service.service,
                    f"p99 {millis(figures.p99_ms)} ms > {millis(limits.p99_ms)} ms",
                )
        return self._replace(self._traffic, found, now)

    def active(self) -> list[Alert]:
        """Every alert that holds, critical first, then oldest first."""
        alerts = [*self._status.values(), *self._traffic.values()]
        order = {Severity.CRITICAL: 0, Severity.WARNING: 1}
        return sorted(alerts, key=lambda a: (order[a.severity], a.since, a.key))

    @staticmethod
    def _replace(
        book: dict[str, Alert], found: dict[str, tuple[Severity, str, str]], now: datetime
    ) -> bool:
        changed = False
        for key in list(book):
            if key not in found:
                del book[key]
                changed = True
        for key, (severity, subject, text) in found.items():
            old = book.get(key)
            if old is None or old.message != text or old.severity != severity:
                # A changing figure keeps the alert's age: it is the same condition.
                book[key] = Alert(key, severity, subject, text, old.since if old else now)
                changed = True
        return changed
