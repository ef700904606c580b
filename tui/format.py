"""How figures and states read on screen: pure functions of protobuf values, no Textual.

Every cell the dashboard draws goes through here, so a missing figure is always shown as a
dash (never as a made-up zero) and times are shown in the clock's time zone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo

from google.protobuf.timestamp_pb2 import Timestamp

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.auth.v1 import access_pb2
from sutazai.coordinator.v1 import coordinator_service_pb2 as coordinator_pb
from sutazai.hardware.v1 import hardware_service_pb2 as hardware_pb
from sutazai.inference.v1 import inference_service_pb2 as inference_pb
from sutazai.system.v1 import system_service_pb2 as system_pb
from sutazai.tasks.v1 import task_service_pb2 as tasks_pb

MISSING = "—"
"""What a cell shows when the RPC did not give the figure."""

ROLE_NAMES: dict[int, str] = {
    access_pb2.ROLE_USER: "user",
    access_pb2.ROLE_OPERATOR: "operator",
    access_pb2.ROLE_ADMIN: "admin",
}
"""Each role as operators write it (``sutazai users create --role``)."""

_OVERALL: dict[int, str] = {
    system_pb.HEALTHY: "healthy",
    system_pb.DEGRADED: "degraded",
    system_pb.CRITICAL: "critical",
}
_COMPONENT: dict[int, str] = {
    system_pb.COMPONENT_STATE_HEALTHY: "healthy",
    system_pb.COMPONENT_STATE_UNHEALTHY: "unhealthy",
}
_KIND: dict[int, str] = {
    system_pb.COMPONENT_KIND_INFRASTRUCTURE: "infra",
    system_pb.COMPONENT_KIND_SERVICE_INSTANCE: "service",
}
_ENDPOINT: dict[int, str] = {
    system_pb.ENDPOINT_HEALTH_HEALTHY: "healthy",
    system_pb.ENDPOINT_HEALTH_FAILING_HEALTH_CHECK: "failing hc",
    system_pb.ENDPOINT_HEALTH_EJECTED: "ejected",
    system_pb.ENDPOINT_HEALTH_DRAINING: "draining",
}
LEVEL_NAMES: dict[int, str] = {
    system_pb.LOG_LEVEL_DEBUG: "debug",
    system_pb.LOG_LEVEL_INFO: "info",
    system_pb.LOG_LEVEL_WARNING: "warning",
    system_pb.LOG_LEVEL_ERROR: "error",
    system_pb.LOG_LEVEL_CRITICAL: "critical",
}
_BREAKER: dict[int, str] = {
    inference_pb.BREAKER_STATE_CLOSED: "closed",
    inference_pb.BREAKER_STATE_OPEN: "open",
    inference_pb.BREAKER_STATE_HALF_OPEN: "half-open",
}
_BACKEND_KIND: dict[int, str] = {
    inference_pb.BACKEND_KIND_EMBEDDED: "embedded",
    inference_pb.BACKEND_KIND_OLLAMA: "ollama",
    inference_pb.BACKEND_KIND_OPENAI_COMPATIBLE: "openai",
}
_FINISH: dict[int, str] = {
    inference_pb.FINISH_REASON_STOP: "stop",
    inference_pb.FINISH_REASON_LENGTH: "length",
}


def role_name(role: int) -> str:
    """``user``, ``operator`` or ``admin``; ``unknown`` for anything else."""
    return ROLE_NAMES.get(role, "unknown")


def overall_name(state: int) -> str:
    """The mesh's overall state in lower case; ``unknown`` before the first probe."""
    return _OVERALL.get(state, "unknown")


def component_state_name(state: int) -> str:
    """``healthy``, ``unhealthy``, or ``unknown`` (not probed yet)."""
    return _COMPONENT.get(state, "unknown")


def kind_name(kind: int) -> str:
    """``infra`` or ``service``."""
    return _KIND.get(kind, "other")


def endpoint_health_name(health: int) -> str:
    """Envoy's verdict on an endpoint; ``unknown`` when Envoy does not know it."""
    return _ENDPOINT.get(health, "unknown")


def level_name(level: int) -> str:
    """A log line's level in lower case; empty when the line has none."""
    return LEVEL_NAMES.get(level, "")


def to_datetime(stamp: Timestamp) -> datetime | None:
    """The timestamp as an aware UTC datetime; ``None`` when unset."""
    if not stamp.seconds and not stamp.nanos:
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def clock_time(stamp: Timestamp, zone: tzinfo | None) -> str:
    """``HH:MM:SS`` in ``zone``; a dash when unset."""
    moment = to_datetime(stamp)
    if moment is None:
        return MISSING
    return moment.astimezone(zone).strftime("%H:%M:%S")


def date_time(stamp: Timestamp, zone: tzinfo | None) -> str:
    """``YYYY-MM-DD HH:MM`` in ``zone``; a dash when unset."""
    moment = to_datetime(stamp)
    if moment is None:
        return MISSING
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def duration(seconds: float) -> str:
    """A compact age or uptime: ``42s``, ``5m03s``, ``3h07m``, ``2d04h``."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def since(stamp: Timestamp, now: datetime) -> str:
    """How long ago ``stamp`` was, as :func:`duration`; a dash when unset."""
    moment = to_datetime(stamp)
    if moment is None:
        return MISSING
    return duration((now - moment).total_seconds())


def rate(per_second: float) -> str:
    """Requests per second with one decimal (``0.0`` is a real, measured zero)."""
    return f"{per_second:.1f}"


def percent(fraction: float) -> str:
    """A fraction as a percentage with one decimal."""
    return f"{fraction * 100:.1f}%"


def millis(value: float) -> str:
    """Milliseconds: one decimal below 100 ms, whole above."""
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def count(value: int) -> str:
    """A counter with thousands separators."""
    return f"{value:,}"


def short_address(address: str) -> str:
    """An instance's address for a narrow column: a Unix socket by its file name.

    The full path is shown in the instance's details; the sockets all live in the state
    directory's ``run/``, so the file name is what tells them apart.
    """
    if address.startswith("/"):
        return address.rsplit("/", 1)[-1]
    if address.startswith("unix:"):
        return address.rsplit("/", 1)[-1]
    return address


_LOG_FRAME_KEYS = frozenset({"event", "level", "timestamp", "service"})
"""Keys of a structured log line that its compact form shows in front, or drops (the
component is the one being followed)."""


def traffic_key(traffic: system_pb.ServiceTraffic) -> str:
    """One traffic row's stable key: its gRPC service, or ``http:<service>`` for HTTP routes."""
    return traffic.grpc_service or f"http:{traffic.service}"


def upstream_name(grpc_service: str, http_prefixes: Sequence[str]) -> str:
    """A short name of an Envoy cluster: ``AuthService``, or the HTTP prefixes (``/openai/``)."""
    if grpc_service:
        return grpc_service.rsplit(".", 1)[-1]
    return " ".join(http_prefixes) or "HTTP"


def log_line(text: str) -> str:
    """A log line as the Logs screen shows it: structured lines compacted, others as written.

    The services log one JSON object per line; shown raw, its event name sits past the edge of
    a narrow terminal. ``{"event": "x", "level": "info", "timestamp": "…T17:48:00.5Z", "n": 1}``
    reads ``17:48:00 info x n=1``. Anything else (PostgreSQL, NATS, Envoy, Redis lines, or JSON
    without an event) is shown exactly as written.
    """
    if not text.startswith("{"):
        return text
    try:
        record = json.loads(text)
    except ValueError:
        return text
    if not isinstance(record, dict) or not isinstance(record.get("event"), str):
        return text
    stamp = str(record.get("timestamp", ""))
    clock = stamp[11:19] if len(stamp) >= 19 and stamp[10] == "T" else stamp
    head = [part for part in (clock, str(record.get("level", "")), record["event"]) if part]
    rest = [
        f"{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in record.items()
        if key not in _LOG_FRAME_KEYS
    ]
    return " ".join(head + rest)


def breaker_name(state: int) -> str:
    """A circuit breaker's state: ``closed``, ``open``, ``half-open``; ``unknown`` otherwise."""
    return _BREAKER.get(state, "unknown")


def backend_kind_name(kind: int) -> str:
    """``embedded``, ``ollama`` or ``openai`` (OpenAI-compatible); ``other`` otherwise."""
    return _BACKEND_KIND.get(kind, "other")


def finish_reason_name(reason: int) -> str:
    """Why generation ended: ``stop`` or ``length``; a dash when unknown."""
    return _FINISH.get(reason, MISSING)


def size(value: int) -> str:
    """Bytes in binary units with one decimal (``47.1 KiB``); a dash for zero (not known)."""
    if value <= 0:
        return MISSING
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"  # pragma: no cover - the loop returns


TASK_STATES: dict[int, str] = {
    tasks_pb.TASK_STATE_PENDING: "pending",
    tasks_pb.TASK_STATE_QUEUED: "queued",
    tasks_pb.TASK_STATE_RUNNING: "running",
    tasks_pb.TASK_STATE_SUCCEEDED: "succeeded",
    tasks_pb.TASK_STATE_FAILED: "failed",
    tasks_pb.TASK_STATE_CANCELLED: "cancelled",
}
"""Each task state as the CLI writes it (``sutazai tasks list --state``)."""
FINAL_TASK_STATES = frozenset(
    {tasks_pb.TASK_STATE_SUCCEEDED, tasks_pb.TASK_STATE_FAILED, tasks_pb.TASK_STATE_CANCELLED}
)
_AGENT_STATES: dict[int, str] = {
    agents_pb.AGENT_STATE_ONLINE: "online",
    agents_pb.AGENT_STATE_DRAINING: "draining",
    agents_pb.AGENT_STATE_OFFLINE: "offline",
}
STRATEGIES: dict[int, str] = {
    coordinator_pb.STRATEGY_ROUND_ROBIN: "round-robin",
    coordinator_pb.STRATEGY_LEAST_LOADED: "least-loaded",
    coordinator_pb.STRATEGY_CAPABILITY_MATCH: "capability-match",
    coordinator_pb.STRATEGY_WEIGHTED_SCORE: "weighted-score",
}
"""Each strategy as ``sutazai coordinator strategy`` names it."""


def task_state_name(state: int) -> str:
    """``queued``, ``running``, ...; ``unknown`` for anything else."""
    return TASK_STATES.get(state, "unknown")


def agent_state_name(state: int) -> str:
    """``online``, ``draining`` or ``offline``; ``unknown`` for anything else."""
    return _AGENT_STATES.get(state, "unknown")


def strategy_name(strategy: int) -> str:
    """``round-robin``, ``least-loaded``, ...; a dash when unknown."""
    return STRATEGIES.get(strategy, MISSING)


def short_id(task_id: str) -> str:
    """A task's UUID by its first eight digits, as a narrow column shows it."""
    return task_id[:8]


_SEVERITIES: dict[int, str] = {
    hardware_pb.SEVERITY_INFO: "info",
    hardware_pb.SEVERITY_WARNING: "warning",
    hardware_pb.SEVERITY_CRITICAL: "critical",
}


def severity_name(severity: int) -> str:
    """A recommendation's severity: ``info``, ``warning``, ``critical``; ``unknown`` otherwise."""
    return _SEVERITIES.get(severity, "unknown")


def data_size(value: int) -> str:
    """Bytes as :func:`size` does, but a measured zero is ``0 B`` (not a dash)."""
    return "0 B" if value == 0 else size(value)


def byte_rate(per_second: float) -> str:
    """Bytes per second in binary units (``1.2 MiB/s``); ``0 B/s`` is a measured zero."""
    return f"{data_size(round(per_second))}/s"


def celsius(value: float) -> str:
    """A temperature (``52°C``); a dash for 0, which the sensors report when they have none."""
    return f"{value:.0f}°C" if value else MISSING


def decimal(value: float, places: int = 2) -> str:
    """A measured number with ``places`` decimals (load averages, thresholds)."""
    return f"{value:.{places}f}"
