"""The dashboard's own settings: alert thresholds and how much history it keeps.

Loaded once by ``sutazai tui`` (environment variables prefixed ``SUTAZAI_TUI_``) and passed to
the app; the mesh's own settings (where the edge is, the state directory) stay in
:class:`sutazai.runtime.settings.MeshSettings`.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    """What the operator may tune about the dashboard (``SUTAZAI_TUI_...``)."""

    model_config = SettingsConfigDict(env_prefix="SUTAZAI_TUI_", frozen=True, extra="ignore")

    error_rate_alert: float = Field(default=0.05, ge=0.0, le=1.0)
    """Alert when a service's server-error rate over a traffic window exceeds this fraction."""
    p99_alert_ms: float = Field(default=1000.0, gt=0.0, le=3_600_000.0)
    """Alert when a service's p99 latency over a traffic window exceeds this many milliseconds."""
    sparkline_points: int = Field(default=60, ge=2, le=1000)
    """Traffic samples kept per service for its sparkline."""
    log_lines: int = Field(default=200, ge=0, le=1000)
    """Lines of history the log view asks for when it starts following a component."""
    log_max_lines: int = Field(default=5000, ge=100, le=100_000)
    """Lines the log view keeps before dropping the oldest."""
    audit_page: int = Field(default=100, ge=1, le=500)
    """Audit events loaded when the identity screen opens or its filters change."""
    audit_max_rows: int = Field(default=1000, ge=10, le=100_000)
    """Audit events kept on screen before dropping the oldest."""
    models_poll_seconds: float = Field(default=2.0, ge=0.5, le=60.0)
    """How often the Models screen asks for backends, models and cache figures (no stream)."""
    chat_conversations: int = Field(default=200, ge=1, le=10_000)
    """Conversations listed on the Chat screen, most recent first."""
    agents_poll_seconds: float = Field(default=2.0, ge=0.5, le=60.0)
    """How often the Agents screen asks for the coordinator's streams and figures (no stream)."""
    task_rows: int = Field(default=200, ge=10, le=5000)
    """Tasks the Tasks screen shows (the first snapshot's size, 200 at most); older ones drop."""
    dead_letters: int = Field(default=200, ge=1, le=10_000)
    """Dead letters listed on the Tasks screen, newest first."""
    hardware_interval_seconds: float = Field(default=1.0, ge=0.25, le=60.0)
    """Seconds between the Hardware screen's samples (``WatchMetrics``' interval)."""
    hardware_points: int = Field(default=120, ge=2, le=1000)
    """Samples each Hardware trend keeps (as many as fit its width are drawn)."""
    hardware_processes: int = Field(default=10, ge=0, le=100)
    """Busiest processes each sample carries for the Hardware screen (0: none)."""
    quarantine_rows: int = Field(default=200, ge=1, le=1000)
    """Quarantined files the Hardware screen lists, newest first."""
    change_rows: int = Field(default=2000, ge=10, le=100_000)
    """Planned changes of one dry run or run the Hardware screen lists (the CLI lists all)."""
    dark: bool = True
    """Start with the dark theme (toggle with ``ctrl+t``)."""
