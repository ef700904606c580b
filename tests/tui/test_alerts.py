"""The alert book: raised when a condition first holds, cleared when it no longer does."""

from __future__ import annotations

from datetime import timedelta

from sutazai.tui.alerts import AlertBook, Severity, Thresholds
from tests.tui.fake import NOW, status, traffic


def book() -> AlertBook:
    return AlertBook(Thresholds(error_rate=0.05, p99_ms=1000.0))


def test_an_unhealthy_instance_is_a_warning_until_it_recovers() -> None:
    alerts = book()
    assert not alerts.observe_status(status(), NOW)
    assert alerts.observe_status(status(auth_healthy=False), NOW)
    [alert] = alerts.active()
    assert alert.severity is Severity.WARNING
    assert alert.subject == "auth/4c1e9a02b7d3"
    assert "connection refused" in alert.message
    later = NOW + timedelta(seconds=4)
    assert not alerts.observe_status(status(auth_healthy=False), later)
    assert alerts.active()[0].since == NOW  # the same condition keeps its age
    assert alerts.observe_status(status(), later)
    assert alerts.active() == []


def test_unhealthy_critical_infrastructure_comes_first() -> None:
    alerts = book()
    round_ = status(auth_healthy=False)
    round_.components[0].state = round_.components[4].state  # postgres unhealthy too
    alerts.observe_status(round_, NOW)
    assert [a.severity for a in alerts.active()] == [Severity.CRITICAL, Severity.WARNING]


def test_traffic_over_either_threshold_is_an_alert_per_service() -> None:
    alerts = book()
    assert alerts.observe_traffic(traffic(1), NOW)
    keys = {a.key for a in alerts.active()}
    assert keys == {
        "error_rate:sutazai.system.v1.SystemService",
        "p99:sutazai.system.v1.SystemService",
    }
    relaxed = AlertBook(Thresholds(error_rate=0.5, p99_ms=5000.0))
    assert not relaxed.observe_traffic(traffic(1), NOW)


def test_a_first_sample_or_an_idle_service_raises_nothing() -> None:
    alerts = book()
    first = traffic(1)
    first.window_seconds = 0
    assert not alerts.observe_traffic(first, NOW)
    idle = traffic(1)
    for service in idle.services:
        service.figures.requests_per_second = 0
    assert not alerts.observe_traffic(idle, NOW)
    assert alerts.active() == []
