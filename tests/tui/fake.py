"""A fake of the mesh client for the dashboard's tests: fixed data, streams fed by the test.

It has the :class:`sutazai.tui.source.MeshApi` methods and nothing else. Every stream reads
from a queue the test can push to (a message, or an exception to raise); every call is
recorded, so a test checks what the dashboard asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from sutazai.auth.v1 import access_pb2
from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.system.v1 import system_service_pb2 as system_pb
from sutazai.tui.source import CallFailed, ConnectionState

NOW = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)
"""The fixed now of every test."""


def fixed_clock() -> datetime:
    """The tests' clock: always :data:`NOW` (UTC)."""
    return NOW


def stamp(moment: datetime) -> Timestamp:
    """A protobuf timestamp of ``moment``."""
    result = Timestamp()
    result.FromDatetime(moment)
    return result


def ago(seconds: float) -> Timestamp:
    """A timestamp ``seconds`` before :data:`NOW`."""
    return stamp(NOW - timedelta(seconds=seconds))


def user(
    name: str, role: int, *, active: bool = True, login_ago: float | None = 3600
) -> auth_pb.User:
    """An account with a deterministic id and e-mail."""
    account = auth_pb.User(
        user_id=f"id-{name}",
        username=name,
        email=f"{name}@example.org",
        role=role,  # type: ignore[arg-type]
        active=active,
        created_at=ago(86_400 * 30),
    )
    if login_ago is not None:
        account.last_login_at.CopyFrom(ago(login_ago))
    return account


ADMIN = user("alice", access_pb2.ROLE_ADMIN, login_ago=60)
OPERATOR = user("oscar", access_pb2.ROLE_OPERATOR)
USER = user("ursula", access_pb2.ROLE_USER, login_ago=None)
LOCKED_OUT = user("mallory", access_pb2.ROLE_USER, active=False)


def component(
    name: str, kind: int, *, healthy: bool = True, latency: float = 1.2, error: str = ""
) -> system_pb.ComponentStatus:
    """One component of a probe round."""
    return system_pb.ComponentStatus(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        state=system_pb.COMPONENT_STATE_HEALTHY if healthy else system_pb.COMPONENT_STATE_UNHEALTHY,
        address="127.0.0.1:10000" if kind == system_pb.COMPONENT_KIND_INFRASTRUCTURE else "",
        latency_ms=latency,
        last_error=error,
        since=ago(600),
        version="",
    )


def status(*, auth_healthy: bool = True) -> system_pb.WatchStatusResponse:
    """A probe round: four infrastructure components and two service instances."""
    infra = system_pb.COMPONENT_KIND_INFRASTRUCTURE
    service = system_pb.COMPONENT_KIND_SERVICE_INSTANCE
    return system_pb.WatchStatusResponse(
        overall=system_pb.HEALTHY if auth_healthy else system_pb.DEGRADED,
        components=[
            component("postgres", infra, latency=2.4),
            component("redis", infra, latency=0.8),
            component("nats", infra, latency=1.1),
            component("envoy", infra, latency=3.6),
            component(
                "auth/4c1e9a02b7d3",
                service,
                healthy=auth_healthy,
                latency=4.2,
                error="" if auth_healthy else "connection refused",
            ),
            component("system/9f3b1d6e0a55", service, latency=2.9),
        ],
        checked_at=ago(1),
        reported_by="system/9f3b1d6e0a55",
    )


def figures(
    rps: float, errors: float, p50: float, p99: float, total: int
) -> system_pb.TrafficFigures:
    """Traffic figures of one window."""
    return system_pb.TrafficFigures(
        requests_per_second=rps,
        error_rate=errors,
        client_error_rate=0.01,
        p50_ms=p50,
        p99_ms=p99,
        requests_total=total,
        errors_total=int(total * errors),
        active_requests=2,
    )


def traffic(step: int) -> system_pb.WatchTrafficResponse:
    """The ``step``-th traffic sample: a steady load on auth, a slow and failing system."""
    return system_pb.WatchTrafficResponse(
        sampled_at=stamp(NOW - timedelta(seconds=5 * (12 - step))),
        window_seconds=5.0,
        edge=figures(40.0 + step, 0.02, 3.1, 48.0, 10_000 + 200 * step),
        services=[
            system_pb.ServiceTraffic(
                service="auth",
                grpc_service="sutazai.auth.v1.AuthService",
                figures=figures(30.0 + (step % 4) * 3, 0.0, 2.5, 21.0, 7_000 + 150 * step),
            ),
            system_pb.ServiceTraffic(
                service="system",
                grpc_service="sutazai.system.v1.SystemService",
                figures=figures(10.0 + step % 3, 0.12, 5.2, 1250.0, 3_000 + 50 * step),
            ),
        ],
    )


def services_view() -> system_pb.WatchServicesResponse:
    """Two services, one instance each, both routed by Envoy."""

    def instance(name: str, instance_id: str, pid: int, up: float) -> system_pb.InstanceView:
        cluster = f"sutazai.{name}.v1.{name.capitalize()}Service"
        return system_pb.InstanceView(
            instance_id=instance_id,
            address=f"/var/lib/sutazai/run/{name}.{instance_id}.sock",
            version="0.1.0",
            pid=pid,
            started_at=ago(up),
            heartbeat_at=ago(2),
            state=system_pb.COMPONENT_STATE_HEALTHY,
            requests_total=1234 * pid % 9000,
            errors_total=3,
            endpoints=[
                system_pb.EndpointView(
                    grpc_service=cluster,
                    health=system_pb.ENDPOINT_HEALTH_HEALTHY,
                    requests_total=1200,
                    errors_total=1,
                    active_requests=0,
                )
            ],
        )

    return system_pb.WatchServicesResponse(
        observed_at=ago(1),
        services=[
            system_pb.ServiceView(
                name="auth",
                grpc_services=["sutazai.auth.v1.AuthService"],
                desired_instances=1,
                instances=[instance("auth", "4c1e9a02b7d3", 4242, 3725)],
            ),
            system_pb.ServiceView(
                name="system",
                grpc_services=["sutazai.system.v1.SystemService"],
                desired_instances=1,
                instances=[instance("system", "9f3b1d6e0a55", 4243, 3790)],
            ),
        ],
    )


def audit_event(
    event_id: int, actor: str, action: str, target: str, outcome: str = "ok"
) -> auth_pb.AuditEvent:
    """An audit event ``event_id`` minutes before now... in seconds, deterministic."""
    return auth_pb.AuditEvent(
        event_id=event_id,
        occurred_at=ago(600 - event_id * 10),
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        detail="",
        request_id=f"req-{event_id}",
    )


AUDIT = [
    audit_event(1, "alice", "auth.login", "alice"),
    audit_event(2, "mallory", "auth.login", "mallory", "UNAUTHENTICATED"),
    audit_event(3, "alice", "/sutazai.auth.v1.AuthService/SetUserRole", "oscar"),
    audit_event(4, "alice", "/sutazai.auth.v1.AuthService/DeactivateUser", "mallory"),
]
"""Oldest first."""

LOGS = [
    system_pb.LogInfo(component=name, size_bytes=4096, modified_at=ago(5))
    for name in ("auth", "envoy", "nats", "system")
]

LOG_LINES = [
    system_pb.LogLine(
        text="2026-01-15T11:59:50Z info service.started port=0", level=system_pb.LOG_LEVEL_INFO
    ),
    system_pb.LogLine(
        text="2026-01-15T11:59:55Z warning slow probe redis 120ms",
        level=system_pb.LOG_LEVEL_WARNING,
    ),
    system_pb.LogLine(
        text="2026-01-15T11:59:58Z error login failed for [bold]mallory[/]",
        level=system_pb.LOG_LEVEL_ERROR,
    ),
]


class Stream:
    """A queue behind one open stream: push messages, or an exception to raise."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False

    async def iterate(self) -> AsyncIterator[Any]:
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed = True


class FakeMesh:
    """Fixed data and test-fed streams, with the MeshApi methods."""

    def __init__(self, *, saved: auth_pb.User | None = ADMIN) -> None:
        self.target = "127.0.0.1:10005"
        self.user: auth_pb.User | None = None
        self.saved = saved
        self.passwords = {"alice": ("pw-alice", ADMIN), "ursula": ("pw-ursula", USER)}
        self.users = [ADMIN, OPERATOR, USER, LOCKED_OUT]
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.streams: dict[str, list[Stream]] = {}
        self.initial: dict[str, list[Any]] = {
            "status": [status()],
            "traffic": [traffic(step) for step in range(12)],
            "services": [services_view()],
            "audit": [],
            "logs": [LOG_LINES],
        }
        self.listeners: list[Callable[[ConnectionState], None]] = []

    # --- test controls ---------------------------------------------------------------------

    def open(self, kind: str) -> list[Stream]:
        """The streams of ``kind`` opened so far (latest last)."""
        return self.streams.get(kind, [])

    def push(self, kind: str, item: Any) -> None:
        """Send ``item`` on the latest open stream of ``kind``."""
        self.streams[kind][-1].queue.put_nowait(item)

    def set_connection(self, state: ConnectionState) -> None:
        """Tell the listeners the connection changed, as the client would."""
        for listener in list(self.listeners):
            listener(state)

    def _stream(self, kind: str, *args: Any) -> AsyncIterator[Any]:
        self.calls.append((f"watch_{kind}", args))
        stream = Stream()
        for item in self.initial.get(kind, []):
            stream.queue.put_nowait(item)
        self.streams.setdefault(kind, []).append(stream)
        return stream.iterate()

    # --- MeshApi ---------------------------------------------------------------------------

    async def sign_in(self, username: str, password: str) -> auth_pb.User:
        self.calls.append(("sign_in", (username,)))
        known = self.passwords.get(username)
        if known is None or known[0] != password:
            raise CallFailed(grpc.StatusCode.UNAUTHENTICATED, "invalid username or password")
        self.user = known[1]
        return known[1]

    async def resume(self) -> auth_pb.User | None:
        self.calls.append(("resume", ()))
        self.user = self.saved
        return self.saved

    async def sign_out(self) -> None:
        self.calls.append(("sign_out", ()))
        self.user = None

    def on_connection_change(
        self, callback: Callable[[ConnectionState], None]
    ) -> Callable[[], None]:
        self.listeners.append(callback)
        return lambda: self.listeners.remove(callback)

    def watch_status(self) -> AsyncIterator[system_pb.WatchStatusResponse]:
        return self._stream("status")

    def watch_traffic(self) -> AsyncIterator[system_pb.WatchTrafficResponse]:
        return self._stream("traffic")

    def watch_services(self) -> AsyncIterator[system_pb.WatchServicesResponse]:
        return self._stream("services")

    async def list_logs(self) -> list[system_pb.LogInfo]:
        self.calls.append(("list_logs", ()))
        return list(LOGS)

    def tail_logs(
        self,
        component: str,
        *,
        lines: int = 200,
        follow: bool = True,
        min_level: system_pb.LogLevel.ValueType = system_pb.LOG_LEVEL_UNSPECIFIED,
        contains: str = "",
    ) -> AsyncIterator[list[system_pb.LogLine]]:
        return self._stream("logs", component, lines, follow, min_level, contains)

    async def list_users(self) -> list[auth_pb.User]:
        self.calls.append(("list_users", ()))
        return list(self.users)

    def _replace_user(self, username: str, **changes: Any) -> auth_pb.User:
        for index, account in enumerate(self.users):
            if account.username == username:
                changed = auth_pb.User()
                changed.CopyFrom(account)
                for field, value in changes.items():
                    setattr(changed, field, value)
                self.users[index] = changed
                return changed
        raise CallFailed(grpc.StatusCode.NOT_FOUND, f"no user {username}")

    async def set_user_role(self, username: str, role: int) -> auth_pb.User:
        self.calls.append(("set_user_role", (username, role)))
        return self._replace_user(username, role=role)

    async def deactivate_user(self, username: str) -> auth_pb.User:
        self.calls.append(("deactivate_user", (username,)))
        return self._replace_user(username, active=False)

    async def unlock_user(self, username: str) -> int:
        self.calls.append(("unlock_user", (username,)))
        return 2

    async def revoke_user_sessions(self, username: str) -> int:
        self.calls.append(("revoke_user_sessions", (username,)))
        return 3

    async def list_audit_events(
        self, *, actor: str = "", action: str = "", limit: int = 100
    ) -> list[auth_pb.AuditEvent]:
        self.calls.append(("list_audit_events", (actor, action, limit)))
        chosen = [
            e
            for e in AUDIT
            if (not actor or e.actor == actor) and (not action or e.action == action)
        ]
        return list(reversed(chosen))[:limit]

    def watch_audit_events(
        self, *, actor: str = "", action: str = "", after_event_id: int = 0
    ) -> AsyncIterator[list[auth_pb.AuditEvent]]:
        return self._stream("audit", actor, action, after_event_id)
