"""A fake of the mesh client for the dashboard's tests: fixed data, streams fed by the test.

It has the :class:`sutazai.tui.source.MeshApi` methods and nothing else. Every stream reads
from a queue the test can push to (a message, or an exception to raise); every call is
recorded, so a test checks what the dashboard asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf import duration_pb2, struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import status_pb2

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.auth.v1 import access_pb2
from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.chat.v1 import chat_service_pb2 as chat_pb
from sutazai.coordinator.v1 import coordinator_service_pb2 as coord_pb
from sutazai.hardware.v1 import hardware_service_pb2 as hw_pb
from sutazai.inference.v1 import inference_service_pb2 as inf_pb
from sutazai.system.v1 import system_service_pb2 as system_pb
from sutazai.tasks.v1 import task_service_pb2 as tasks_pb
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


EMBEDDED = "smollm2-135m-instruct"

MODELS = inf_pb.ListModelsResponse(
    default_model=EMBEDDED,
    models=[
        inf_pb.Model(
            name=EMBEDDED,
            backend="embedded",
            backend_kind=inf_pb.BACKEND_KIND_EMBEDDED,
            loaded=True,
            context_tokens=8192,
            size_bytes=270_600_000,
            embeddings=True,
        ),
        inf_pb.Model(
            name="llama3.2:1b",
            backend="ollama",
            backend_kind=inf_pb.BACKEND_KIND_OLLAMA,
            loaded=True,
            context_tokens=131_072,
            size_bytes=1_321_098_329,
        ),
        inf_pb.Model(
            name="qwen2.5-0.5b",
            backend="openai",
            backend_kind=inf_pb.BACKEND_KIND_OPENAI_COMPATIBLE,
            loaded=False,
        ),
    ],
)


def breaker(state: int, failures: int = 0, error: str = "") -> inf_pb.Breaker:
    """A circuit breaker that opens after 3 failures and cools down for 30 s."""
    found = inf_pb.Breaker(
        state=state,  # type: ignore[arg-type]
        consecutive_failures=failures,
        failure_threshold=3,
        cooldown_seconds=30.0,
        last_error=error,
        successes_total=420,
        failures_total=failures,
    )
    if state == inf_pb.BREAKER_STATE_OPEN:
        found.opened_at.CopyFrom(ago(12))
    return found


BACKENDS = [
    inf_pb.Backend(
        name="embedded",
        kind=inf_pb.BACKEND_KIND_EMBEDDED,
        breaker=breaker(inf_pb.BREAKER_STATE_CLOSED),
        max_concurrency=1,
        in_flight=1,
        max_queue=8,
        queued=2,
        tokens_generated_total=52_310,
        last_tokens_per_second=48.7,
    ),
    inf_pb.Backend(
        name="ollama",
        kind=inf_pb.BACKEND_KIND_OLLAMA,
        url="http://127.0.0.1:11434",
        breaker=breaker(inf_pb.BREAKER_STATE_OPEN, 3, "connect: connection refused"),
        max_concurrency=4,
        max_queue=16,
    ),
    inf_pb.Backend(
        name="openai",
        kind=inf_pb.BACKEND_KIND_OPENAI_COMPATIBLE,
        url="http://127.0.0.1:8081/v1",
        breaker=breaker(inf_pb.BREAKER_STATE_HALF_OPEN, 2, "HTTP 502"),
        max_concurrency=2,
        max_queue=8,
        last_tokens_per_second=131.2,
    ),
]

CACHE = chat_pb.GetCacheStatsResponse(
    hits=120, misses=40, hit_rate=0.75, keys=36, memory_bytes=48_213, ttl_seconds=3600
)


def conversation(number: int, title: str, messages: int) -> chat_pb.Conversation:
    """A conversation last active ``number`` minutes ago."""
    return chat_pb.Conversation(
        conversation_id=f"conv-{number}",
        title=title,
        model=EMBEDDED,
        created_at=ago(86_400 + number * 60),
        updated_at=ago(number * 60),
        message_count=messages,
    )


CONVERSATIONS = [
    conversation(1, "What is a circuit breaker?", 4),
    conversation(2, "Write a haiku about [bold]Envoy[/] and gRPC streams", 2),
    conversation(3, "Explain the difference between p50 and p99 latency in one paragraph", 6),
]
"""Most recent first."""

CONVERSATION_1 = [
    chat_pb.ChatMessage(
        message_id="m-1", role=inf_pb.MESSAGE_ROLE_USER, content="What is a circuit breaker?"
    ),
    chat_pb.ChatMessage(
        message_id="m-2",
        role=inf_pb.MESSAGE_ROLE_ASSISTANT,
        content="It stops calls to a failing backend for a while, so they fail fast.",
        model=EMBEDDED,
    ),
]


def started(conversation_id: str = "conv-9", *, cached: bool = False) -> chat_pb.ChatStreamResponse:
    """The first event of a streamed reply."""
    return chat_pb.ChatStreamResponse(
        started=chat_pb.ChatStarted(conversation_id=conversation_id, model=EMBEDDED, cached=cached)
    )


def delta(text: str) -> chat_pb.ChatStreamResponse:
    """A piece of a streamed reply."""
    return chat_pb.ChatStreamResponse(delta=inf_pb.TextDelta(text=text))


def done(tokens: int = 5) -> chat_pb.ChatStreamResponse:
    """The last event of a streamed reply."""
    return chat_pb.ChatStreamResponse(
        done=chat_pb.ChatDone(
            message_id="m-9",
            finish_reason=inf_pb.FINISH_REASON_STOP,
            usage=inf_pb.Usage(prompt_tokens=21, completion_tokens=tokens),
            latency_ms=182.4,
            time_to_first_token_ms=31.6,
        )
    )


def agent(
    agent_id: str,
    *,
    state: int = agents_pb.AGENT_STATE_ONLINE,
    running: int = 0,
    slots: int = 4,
    done: int = 0,
    failed: int = 0,
    beat_ago: float = 2,
    capabilities: tuple[str, ...] = ("text.generate", "text.summarize"),
    runtime: str = "python/sutazai-sdk 0.1",
) -> agents_pb.Agent:
    """An agent instance as the registry reports it."""
    return agents_pb.Agent(
        heartbeat=agents_pb.AgentHeartbeat(
            agent_id=agent_id,
            capabilities=list(capabilities),
            max_concurrency=slots,
            running=running,
            # An offline agent's last heartbeat still said it was online.
            state=min(state, agents_pb.AGENT_STATE_DRAINING),  # type: ignore[arg-type]
            succeeded=done,
            failed=failed,
            mean_duration_ms=850.0,
            started_at=ago(7200),
            heartbeat_at=ago(beat_ago),
            version="0.1.0",
            runtime=runtime,
        ),
        state=state,  # type: ignore[arg-type]
        load=running / slots if slots else 0.0,
    )


AGENTS = [
    agent("text.1", running=3, done=1_204, failed=7),
    agent("text.2", running=1, done=1_187, failed=2, beat_ago=4),
    agent(
        "polyglot.1",
        state=agents_pb.AGENT_STATE_DRAINING,
        running=1,
        slots=2,
        done=96,
        capabilities=("text.reverse",),
        runtime="typescript/nats.js",
    ),
    agent(
        "polyglot.2",
        state=agents_pb.AGENT_STATE_OFFLINE,
        slots=2,
        done=41,
        failed=1,
        beat_ago=95,
        capabilities=("text.reverse",),
        runtime="typescript/nats.js",
    ),
]

STRATEGY = coord_pb.GetStrategyResponse(
    strategy=coord_pb.STRATEGY_ROUND_ROBIN, changed_at=ago(3600), changed_by="oscar"
)

STATS = coord_pb.GetStatsResponse(
    queued_by_priority=[5, 2, 1, 0],
    queued_by_type={"text.summarize": 6, "text.generate": 2},
    in_flight=5,
    succeeded_last_minute=42,
    failed_last_minute=1,
    succeeded_total=2_528,
    failed_total=11,
    dead_letters=1,
    strategy=coord_pb.STRATEGY_ROUND_ROBIN,
)

STREAMS = [
    coord_pb.StreamInfo(
        name="SUTAZAI_TASKS",
        messages=8,
        bytes=9_120,
        consumers=[coord_pb.ConsumerInfo(name="coordinator", pending=3, ack_pending=5)],
    ),
    coord_pb.StreamInfo(
        name="SUTAZAI_WORK",
        messages=5,
        bytes=6_400,
        consumers=[
            coord_pb.ConsumerInfo(name="agent-text-1", ack_pending=3, redelivered=1),
            coord_pb.ConsumerInfo(name="agent-text-2", ack_pending=1),
        ],
    ),
    coord_pb.StreamInfo(name="SUTAZAI_DEAD_LETTERS", messages=1, bytes=1_100),
]


# --- hardware ------------------------------------------------------------------------------

GIB = 1024**3
MIB = 1024**2


def host_sample(step: int) -> hw_pb.HostSample:
    """The ``step``-th sample of the host: four cores, a busy one, disks and network moving."""
    wave = (step * 7) % 12
    return hw_pb.HostSample(
        sampled_at=stamp(NOW - timedelta(seconds=12 - step)),
        hostname="mesh-host",
        uptime=duration_pb2.Duration(seconds=3 * 86_400 + 4 * 3600 + step),
        cpu=hw_pb.CpuStatus(
            percent=20.0 + wave * 5,
            per_core_percent=[12.0 + wave, 34.5, 5.0, 91.0 if step % 2 else 60.0],
            logical_cores=4,
            physical_cores=2,
            load_1m=1.2,
            load_5m=0.8,
            load_15m=0.5,
            frequency_mhz=2400.0,
        ),
        memory=hw_pb.MemoryStatus(
            total_bytes=16 * GIB,
            available_bytes=8 * GIB + step * MIB,
            used_bytes=7 * GIB + 200 * MIB,
            percent=45.0 + step,
            swap_total_bytes=2 * GIB,
            swap_used_bytes=64 * MIB,
            swap_percent=3.1,
        ),
        disks=[
            hw_pb.DiskStatus(
                mountpoint="/",
                device="/dev/sda1",
                fstype="ext4",
                total_bytes=100 * GIB,
                used_bytes=62 * GIB,
                free_bytes=38 * GIB,
                percent=62.0,
                read_bytes_per_second=1.5 * MIB * (step % 4),
                write_bytes_per_second=300 * 1024 * (step % 3),
            ),
            hw_pb.DiskStatus(
                mountpoint="/srv/data",
                device="/dev/sdb1",
                fstype="xfs",
                total_bytes=500 * GIB,
                used_bytes=470 * GIB,
                free_bytes=30 * GIB,
                percent=94.0,
                read_bytes_per_second=2 * MIB,
                write_bytes_per_second=0.0,
            ),
        ],
        networks=[
            hw_pb.NetworkStatus(
                interface="lo",
                bytes_sent=10 * GIB,
                bytes_received=10 * GIB,
                sent_bytes_per_second=40_000.0 + step * 1000,
                received_bytes_per_second=40_000.0 + step * 1000,
                is_up=True,
            ),
            hw_pb.NetworkStatus(
                interface="eth0",
                bytes_sent=2 * GIB,
                bytes_received=5 * GIB,
                sent_bytes_per_second=12_000.0,
                received_bytes_per_second=80_000.0 * (step % 5),
                is_up=True,
            ),
        ],
        top_processes=[
            hw_pb.ProcessInfo(
                pid=31337,
                name="ffmpeg",
                username="alice",
                cpu_percent=95.2,
                memory_bytes=1 * GIB,
                memory_percent=6.3,
                nice=0,
            ),
            hw_pb.ProcessInfo(
                pid=4242,
                name="python3 [bold]x[/]",
                username="sutazai",
                cpu_percent=38.5,
                memory_bytes=420 * MIB,
                memory_percent=2.6,
                nice=0,
                mesh=True,
            ),
            hw_pb.ProcessInfo(
                pid=977,
                name="postgres",
                username="sutazai",
                cpu_percent=12.0,
                memory_bytes=180 * MIB,
                memory_percent=1.1,
                nice=0,
                mesh=True,
            ),
        ],
        temperatures=[
            hw_pb.Temperature(
                sensor="coretemp",
                label="Package id 0",
                celsius=52.0,
                high_celsius=80.0,
                critical_celsius=100.0,
            ),
            hw_pb.Temperature(sensor="nvme", label="Composite", celsius=41.0),
        ],
        gpus=[
            hw_pb.Gpu(
                index=0,
                name="NVIDIA T4",
                utilization_percent=17.0,
                memory_total_bytes=16 * GIB,
                memory_used_bytes=3 * GIB,
                temperature_celsius=48.0,
            )
        ],
    )


def file_entry(path: str, size: int, modified_ago: float) -> hw_pb.FileEntry:
    """A file of the storage report."""
    return hw_pb.FileEntry(path=path, size_bytes=size, modified_at=ago(modified_ago))


def bucket(label: str, files: int, size: int) -> hw_pb.Bucket:
    """A size or age bucket."""
    return hw_pb.Bucket(label=label, files=files, bytes=size)


STORAGE_REPORT = hw_pb.GetStorageReportResponse(
    generated_at=ago(2),
    roots=[
        hw_pb.RootReport(
            root="/srv/data",
            disk=hw_pb.DiskStatus(
                mountpoint="/srv/data",
                device="/dev/sdb1",
                fstype="xfs",
                total_bytes=500 * GIB,
                used_bytes=470 * GIB,
                free_bytes=30 * GIB,
                percent=94.0,
            ),
            analysis=hw_pb.AnalyzeStorageResponse(
                scan=hw_pb.ScanSummary(
                    resolved_path="/srv/data",
                    files_scanned=1_204,
                    directories_scanned=87,
                    entries_skipped=3,
                    elapsed=duration_pb2.Duration(seconds=1, nanos=250_000_000),
                ),
                total_files=1_204,
                total_bytes=3 * GIB,
                by_extension=[
                    hw_pb.ExtensionUsage(extension=".log", files=120, bytes=2 * GIB),
                    hw_pb.ExtensionUsage(extension=".tmp", files=40, bytes=600 * MIB),
                    hw_pb.ExtensionUsage(extension="", files=1_044, bytes=424 * MIB),
                ],
                by_size=[
                    bucket("<1KiB", 900, 300 * 1024),
                    bucket("1KiB-1MiB", 250, 80 * MIB),
                    bucket("1MiB-100MiB", 53, 1 * GIB),
                    bucket(">=100MiB", 1, 2 * GIB),
                ],
                by_age=[
                    bucket("<7d", 600, 1 * GIB),
                    bucket("7d-30d", 400, 1 * GIB),
                    bucket("30d-365d", 200, 1 * GIB),
                    bucket(">=365d", 4, 1 * MIB),
                ],
            ),
            top_duplicates=[
                hw_pb.DuplicateGroup(
                    sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    size_bytes=40 * MIB,
                    files=[
                        file_entry("/srv/data/models/a.bin", 40 * MIB, 3600),
                        file_entry("/srv/data/backup/a.bin", 40 * MIB, 86_400),
                    ],
                    wasted_bytes=40 * MIB,
                )
            ],
            largest_files=[
                file_entry("/srv/data/logs/app.log", 2 * GIB, 60),
                file_entry("/srv/data/models/a.bin", 40 * MIB, 3600),
            ],
        )
    ],
)

RECOMMENDATIONS = hw_pb.GetRecommendationsResponse(
    sample=host_sample(11),
    recommendations=[
        hw_pb.Recommendation(
            rule="disk_full",
            severity=hw_pb.SEVERITY_CRITICAL,
            reason="/srv/data is 94.0% full; writes fail when it fills.",
            action="Clean temporary files and compress old logs under /srv/data",
            rpc="CleanFiles",
            measurements=[
                hw_pb.Measurement(
                    name="disk./srv/data.percent", value=94.0, threshold=90.0, unit="%"
                )
            ],
        ),
        hw_pb.Recommendation(
            rule="cpu_hog",
            severity=hw_pb.SEVERITY_WARNING,
            reason="ffmpeg (pid 31337) uses 95.2% CPU.",
            action="Lower its priority",
            rpc="ReniceProcesses",
            measurements=[
                hw_pb.Measurement(
                    name="process.31337.cpu_percent", value=95.2, threshold=25.0, unit="%"
                )
            ],
        ),
    ],
)

ADVICE = hw_pb.GetAdviceResponse(
    label="model output",
    model="smollm2-135m-instruct",
    advice="Your data disk is nearly full. Clean [bold]old[/] temporary files first.",
    sample=host_sample(11),
    recommendations=list(RECOMMENDATIONS.recommendations),
)


def entry_id(number: int) -> str:
    """A deterministic quarantine entry id."""
    return f"{number:08x}-1111-4000-8000-000000000000"


def quarantined(
    number: int, path: str, size: int, *, moved_ago: float, operation: str = "CleanFiles"
) -> hw_pb.QuarantinedFile:
    """A quarantined file; purgeable 7 days after it was moved."""
    return hw_pb.QuarantinedFile(
        entry_id=entry_id(number),
        original_path=path,
        size_bytes=size,
        sha256=f"{number:02x}" * 32,
        quarantined_at=ago(moved_ago),
        operation=operation,
        actor="alice",
        purgeable_at=ago(moved_ago - 7 * 86_400),
        mode=0o644,
        modified_at=ago(moved_ago + 10 * 86_400),
    )


QUARANTINE = [
    quarantined(0xE1, "/srv/data/tmp/render-1.tmp", 12 * MIB, moved_ago=3600),
    quarantined(
        0xE2, "/srv/data/backup/a.bin", 40 * MIB, moved_ago=9 * 86_400, operation="Deduplicate"
    ),
]
"""Newest first; the second is past its retention."""


def planned(action: str, target: str, size: int, reason: str, **extra: Any) -> hw_pb.PlannedChange:
    """One change of a report."""
    return hw_pb.PlannedChange(action=action, target=target, bytes=size, reason=reason, **extra)


CLEANABLE = [
    ("/srv/data/tmp/a.tmp", 3 * MIB),
    ("/srv/data/tmp/b.tmp", 1 * MIB),
    ("/srv/data/cache/c.cache", 512 * 1024),
]


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    """A JSON object as a protobuf Struct."""
    found = struct_pb2.Struct()
    found.update(values)
    return found


def task_id(number: int) -> str:
    """A deterministic task id."""
    return f"{number:08x}-0000-4000-8000-000000000000"


def task(
    number: int,
    task_type: str,
    state: int,
    *,
    created_ago: float,
    priority: int = 1,
    attempt: int = 0,
    agent_id: str = "",
    owner: str = "id-alice",
    **extra: Any,
) -> tasks_pb.Task:
    """A task of the fake's list."""
    found = tasks_pb.Task(
        task_id=task_id(number),
        type=task_type,
        priority=priority,
        state=state,  # type: ignore[arg-type]
        attempt=attempt,
        max_attempts=3,
        agent_id=agent_id,
        owner_id=owner,
        timeout_seconds=300,
        created_at=ago(created_ago),
        queued_at=ago(created_ago - 1),
        updated_at=ago(max(0.0, created_ago - 5)),
        **extra,
    )
    if attempt:
        found.started_at.CopyFrom(ago(created_ago - 2))
    if state in {tasks_pb.TASK_STATE_SUCCEEDED, tasks_pb.TASK_STATE_FAILED}:
        found.finished_at.CopyFrom(ago(created_ago - 5))
    return found


def failure(message: str) -> status_pb2.Status:
    """An error status (INTERNAL) with ``message``."""
    return status_pb2.Status(code=13, message=message)


TASKS = [
    task(
        0xA1,
        "text.summarize",
        tasks_pb.TASK_STATE_RUNNING,
        created_ago=12,
        priority=2,
        attempt=1,
        agent_id="text.1",
        progress=0.4,
        progress_message="reading",
    ),
    task(
        0xA2,
        "text.generate",
        tasks_pb.TASK_STATE_QUEUED,
        created_ago=30,
        waiting_reason="no free slot on an agent offering text.generate",
    ),
    task(
        0xA3,
        "text.summarize",
        tasks_pb.TASK_STATE_SUCCEEDED,
        created_ago=75,
        attempt=2,
        agent_id="text.2",
        result=struct({"summary": "Envoy routes [bold]gRPC[/] to the mesh."}),
    ),
    task(
        0xA4,
        "text.reverse",
        tasks_pb.TASK_STATE_FAILED,
        created_ago=300,
        priority=0,
        attempt=3,
        agent_id="polyglot.1",
        error=failure("handler raised: payload has no text"),
        owner="id-ursula",
    ),
    task(
        0xA5,
        "text.generate",
        tasks_pb.TASK_STATE_CANCELLED,
        created_ago=900,
        priority=3,
        error=status_pb2.Status(code=1, message="cancelled by alice"),
    ),
]
"""Newest first."""

ATTEMPTS = {
    task_id(0xA3): [
        tasks_pb.TaskAttempt(
            number=1,
            agent_id="text.1",
            state=tasks_pb.TASK_STATE_FAILED,
            started_at=ago(73),
            finished_at=ago(72),
            error=failure("agent text.1 went silent"),
        ),
        tasks_pb.TaskAttempt(
            number=2,
            agent_id="text.2",
            state=tasks_pb.TASK_STATE_SUCCEEDED,
            started_at=ago(72),
            finished_at=ago(70),
        ),
    ]
}

DEAD_LETTERS = [
    task(
        0xD1,
        "always.fail",
        tasks_pb.TASK_STATE_FAILED,
        created_ago=600,
        attempt=3,
        agent_id="text.2",
        dead_lettered=True,
        error=failure("handler raised RuntimeError: always fails"),
        owner="id-oscar",
    )
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
            "chat": [started()],
        }
        self.backends = list(BACKENDS)
        self.conversations = list(CONVERSATIONS)
        self.cache = chat_pb.GetCacheStatsResponse()
        self.cache.CopyFrom(CACHE)
        self.listeners: list[Callable[[ConnectionState], None]] = []
        self.initial["agents"] = [
            agents_pb.WatchAgentsResponse(agent=found, snapshot=True) for found in AGENTS
        ]
        self.tasks = {found.task_id: found for found in TASKS}
        self.dead_letters = {found.task_id: found for found in DEAD_LETTERS}
        self.strategy = coord_pb.GetStrategyResponse()
        self.strategy.CopyFrom(STRATEGY)
        self.created = 0
        self.initial["hardware"] = [host_sample(step) for step in range(12)]
        self.quarantine = list(QUARANTINE)
        self.cleaned = 0
        self.restore_refusals: dict[str, str] = {}
        """Entries whose restore fails, with the reason (their place is taken)."""

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

    # --- inference and chat ----------------------------------------------------------------

    async def list_models(self) -> inf_pb.ListModelsResponse:
        self.calls.append(("list_models", ()))
        return MODELS

    async def list_backends(self) -> list[inf_pb.Backend]:
        self.calls.append(("list_backends", ()))
        return list(self.backends)

    async def load_model(self, model: str) -> inf_pb.LoadModelResponse:
        self.calls.append(("load_model", (model,)))
        found = next((m for m in MODELS.models if m.name == model), None)
        if found is None:
            raise CallFailed(grpc.StatusCode.NOT_FOUND, f"no model {model}")
        return inf_pb.LoadModelResponse(model=found, load_ms=840.0)

    async def unload_model(self, model: str) -> inf_pb.Model:
        self.calls.append(("unload_model", (model,)))
        return inf_pb.Model(name=model, loaded=False)

    async def reset_breaker(self, backend: str) -> inf_pb.Backend:
        self.calls.append(("reset_breaker", (backend,)))
        for index, found in enumerate(self.backends):
            if found.name == backend:
                reset = inf_pb.Backend()
                reset.CopyFrom(found)
                reset.breaker.CopyFrom(breaker(inf_pb.BREAKER_STATE_CLOSED))
                self.backends[index] = reset
                return reset
        raise CallFailed(grpc.StatusCode.NOT_FOUND, f"no backend {backend}")

    def chat_stream(
        self,
        message: str,
        *,
        model: str = "",
        conversation_id: str = "",
        options: inf_pb.SamplingOptions | None = None,
        system_prompt: str = "",
        no_cache: bool = False,
    ) -> AsyncIterator[chat_pb.ChatStreamResponse]:
        return self._stream("chat", message, model, conversation_id, options, no_cache)

    async def list_conversations(self, *, limit: int = 1_000) -> list[chat_pb.Conversation]:
        self.calls.append(("list_conversations", (limit,)))
        return self.conversations[:limit]

    async def get_conversation(self, conversation_id: str) -> chat_pb.GetConversationResponse:
        self.calls.append(("get_conversation", (conversation_id,)))
        found = next((c for c in self.conversations if c.conversation_id == conversation_id), None)
        if found is None:
            raise CallFailed(grpc.StatusCode.NOT_FOUND, f"no conversation {conversation_id}")
        return chat_pb.GetConversationResponse(
            conversation=found,
            messages=CONVERSATION_1 if conversation_id == "conv-1" else [],
        )

    async def delete_conversation(self, conversation_id: str) -> int:
        self.calls.append(("delete_conversation", (conversation_id,)))
        found = next((c for c in self.conversations if c.conversation_id == conversation_id), None)
        if found is None:
            raise CallFailed(grpc.StatusCode.NOT_FOUND, f"no conversation {conversation_id}")
        self.conversations.remove(found)
        return found.message_count

    async def cache_stats(self) -> chat_pb.GetCacheStatsResponse:
        self.calls.append(("cache_stats", ()))
        if self.user is not None and self.user.role == access_pb2.ROLE_USER:
            raise CallFailed(grpc.StatusCode.PERMISSION_DENIED, "needs the operator role")
        return self.cache

    async def clear_cache(self) -> int:
        self.calls.append(("clear_cache", ()))
        deleted = int(self.cache.keys)
        self.cache = chat_pb.GetCacheStatsResponse(ttl_seconds=self.cache.ttl_seconds)
        return deleted

    # --- tasks, agents, coordinator --------------------------------------------------------

    def _role(self) -> int:
        return self.user.role if self.user is not None else access_pb2.ROLE_USER

    def _operators_only(self) -> None:
        if self._role() == access_pb2.ROLE_USER:
            raise CallFailed(grpc.StatusCode.PERMISSION_DENIED, "needs the operator role")

    def _changed(self, changed: tasks_pb.Task) -> tasks_pb.Task:
        """Keep ``changed`` and send it on the open task streams, as the service would."""
        self.tasks[changed.task_id] = changed
        for stream in self.open("tasks"):
            if not stream.closed:
                stream.queue.put_nowait(tasks_pb.WatchTasksResponse(task=changed))
        return changed

    async def create_task(
        self,
        task_type: str,
        payload: Mapping[str, Any] | struct_pb2.Struct | None = None,
        *,
        priority: int = 0,
        required_capabilities: Sequence[str] = (),
        resources: Sequence[tasks_pb.ResourceNeed] = (),
        timeout_seconds: int = 0,
        idempotency_key: str = "",
        max_attempts: int = 0,
    ) -> tasks_pb.CreateTaskResponse:
        self.calls.append(("create_task", (task_type, dict(payload or {}), priority)))
        if task_type == "no.agent":
            raise CallFailed(
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid task",
                {"type": "no agent offers no.agent"},
            )
        self.created += 1
        created = task(
            0xB0 + self.created,
            task_type,
            tasks_pb.TASK_STATE_QUEUED,
            created_ago=-self.created,  # newer than every other
            priority=priority,
            payload=struct(dict(payload or {})),
        )
        return tasks_pb.CreateTaskResponse(task=self._changed(created), created=True)

    async def get_task(self, task_id: str) -> tasks_pb.Task:
        self.calls.append(("get_task", (task_id,)))
        found = self.tasks.get(task_id) or self.dead_letters.get(task_id)
        if found is None:
            raise CallFailed(grpc.StatusCode.NOT_FOUND, f"no task {task_id}")
        full = tasks_pb.Task()
        full.CopyFrom(found)
        full.attempts.extend(ATTEMPTS.get(task_id, []))
        return full

    async def cancel_task(self, task_id: str, *, reason: str = "") -> tasks_pb.Task:
        self.calls.append(("cancel_task", (task_id, reason)))
        found = self.tasks.get(task_id)
        if found is None:
            raise CallFailed(grpc.StatusCode.NOT_FOUND, f"no task {task_id}")
        cancelled = tasks_pb.Task()
        cancelled.CopyFrom(found)
        cancelled.state = tasks_pb.TASK_STATE_CANCELLED
        cancelled.error.CopyFrom(status_pb2.Status(code=1, message=reason or "cancelled"))
        return self._changed(cancelled)

    def watch_tasks(
        self,
        *,
        states: Collection[tasks_pb.TaskState.ValueType] = (),
        task_type: str = "",
        all_users: bool = False,
        snapshot_size: int = 50,
    ) -> AsyncIterator[tasks_pb.WatchTasksResponse]:
        if all_users:
            self._operators_only()
        self.initial["tasks"] = [
            tasks_pb.WatchTasksResponse(task=found, snapshot=True)
            for found in list(self.tasks.values())[:snapshot_size]
            if (not states or found.state in states) and (not task_type or found.type == task_type)
        ]
        return self._stream("tasks", tuple(sorted(states)), task_type, all_users, snapshot_size)

    async def list_dead_letters(self, *, limit: int = 100) -> list[tasks_pb.Task]:
        self.calls.append(("list_dead_letters", (limit,)))
        self._operators_only()
        return list(self.dead_letters.values())[:limit]

    async def requeue_dead_letter(self, task_id: str) -> tasks_pb.Task:
        self.calls.append(("requeue_dead_letter", (task_id,)))
        self._operators_only()
        found = self.dead_letters.pop(task_id, None)
        if found is None:
            raise CallFailed(grpc.StatusCode.FAILED_PRECONDITION, "not a dead letter")
        queued = tasks_pb.Task()
        queued.CopyFrom(found)
        queued.state = tasks_pb.TASK_STATE_QUEUED
        queued.dead_lettered = False
        queued.attempt = 0
        queued.ClearField("error")
        return self._changed(queued)

    def watch_agents(self) -> AsyncIterator[agents_pb.WatchAgentsResponse]:
        return self._stream("agents")

    async def get_strategy(self) -> coord_pb.GetStrategyResponse:
        self.calls.append(("get_strategy", ()))
        self._operators_only()
        return self.strategy

    async def set_strategy(
        self, strategy: coord_pb.Strategy.ValueType
    ) -> coord_pb.Strategy.ValueType:
        self.calls.append(("set_strategy", (strategy,)))
        self._operators_only()
        self.strategy = coord_pb.GetStrategyResponse(
            strategy=strategy, changed_at=stamp(NOW), changed_by="alice"
        )
        return strategy

    async def coordinator_stats(self) -> coord_pb.GetStatsResponse:
        self.calls.append(("coordinator_stats", ()))
        self._operators_only()
        found = coord_pb.GetStatsResponse()
        found.CopyFrom(STATS)
        found.strategy = self.strategy.strategy
        return found

    async def list_streams(self) -> list[coord_pb.StreamInfo]:
        self.calls.append(("list_streams", ()))
        self._operators_only()
        return list(STREAMS)

    # --- hardware --------------------------------------------------------------------------

    def watch_hardware_metrics(
        self, *, interval_seconds: float = 1.0, top_processes: int = 0
    ) -> AsyncIterator[hw_pb.HostSample]:
        return self._stream("hardware", interval_seconds, top_processes)

    async def storage_report(self) -> hw_pb.GetStorageReportResponse:
        self.calls.append(("storage_report", ()))
        return STORAGE_REPORT

    async def hardware_recommendations(self) -> hw_pb.GetRecommendationsResponse:
        self.calls.append(("hardware_recommendations", ()))
        return RECOMMENDATIONS

    async def hardware_advice(self, model: str = "", question: str = "") -> hw_pb.GetAdviceResponse:
        self.calls.append(("hardware_advice", (model, question)))
        return ADVICE

    def _report(self, dry_run: bool, changes: list[hw_pb.PlannedChange]) -> hw_pb.ChangeReport:
        return hw_pb.ChangeReport(
            dry_run=dry_run,
            scan=hw_pb.ScanSummary(
                resolved_path="/srv/data",
                files_scanned=120,
                directories_scanned=9,
                elapsed=duration_pb2.Duration(nanos=300_000_000),
            ),
            changes=changes,
            changed=sum(1 for c in changes if not c.error),
            bytes_freed=sum(c.bytes for c in changes if not c.error),
            failed=sum(1 for c in changes if c.error),
        )

    async def clean_files(
        self,
        path: str = "",
        *,
        older_than_days: int = 0,
        patterns: Sequence[str] = (),
        dry_run: bool = True,
    ) -> hw_pb.ChangeReport:
        self.calls.append(("clean_files", (path, older_than_days, tuple(patterns), dry_run)))
        self._operators_only()
        changes = []
        for index, (target, size) in enumerate(CLEANABLE):
            change = planned("quarantine", target, size, "older than 3 days")
            if not dry_run:
                self.cleaned += 1
                moved = quarantined(0xC0 + self.cleaned, target, size, moved_ago=-index)
                self.quarantine.insert(0, moved)
                change.quarantine_id = moved.entry_id
            changes.append(change)
        return self._report(dry_run, changes)

    async def deduplicate(self, path: str = "", *, dry_run: bool = True) -> hw_pb.ChangeReport:
        self.calls.append(("deduplicate", (path, dry_run)))
        self._operators_only()
        return self._report(
            dry_run,
            [planned("quarantine", "/srv/data/backup/a.bin", 40 * MIB, "copy of models/a.bin")],
        )

    async def compress_logs(
        self, path: str = "", *, older_than_days: int = 0, dry_run: bool = True
    ) -> hw_pb.ChangeReport:
        self.calls.append(("compress_logs", (path, older_than_days, dry_run)))
        self._operators_only()
        return self._report(
            dry_run,
            [
                planned("compress", "/srv/data/logs/old.log", 900 * MIB, "older than 7 days"),
                planned(
                    "compress",
                    "/srv/data/logs/busy.log",
                    0,
                    "older than 7 days",
                    error="compressed file not smaller",
                ),
            ],
        )

    async def rotate_logs(
        self, path: str = "", *, min_size_bytes: int = 0, keep: int = 0, dry_run: bool = True
    ) -> hw_pb.ChangeReport:
        self.calls.append(("rotate_logs", (path, min_size_bytes, keep, dry_run)))
        self._operators_only()
        return self._report(
            dry_run, [planned("rotate", "/srv/data/logs/app.log", 0, "2.0 GiB >= 10.0 MiB")]
        )

    async def renice_processes(self, *, dry_run: bool = True) -> hw_pb.ChangeReport:
        self.calls.append(("renice_processes", (dry_run,)))
        self._operators_only()
        return self._report(dry_run, [planned("renice", "pid 31337 ffmpeg", 0, "95.2% CPU")])

    async def reclaim_memory(self, *, dry_run: bool = True) -> hw_pb.ReclaimMemoryResponse:
        self.calls.append(("reclaim_memory", (dry_run,)))
        self._operators_only()
        return hw_pb.ReclaimMemoryResponse(
            report=self._report(dry_run, [planned("reclaim", "pid 4242 python3", 0, "mesh")]),
            rss_before_bytes=420 * MIB,
            rss_after_bytes=420 * MIB if dry_run else 380 * MIB,
        )

    async def list_quarantine(self, *, limit: int = 100) -> list[hw_pb.QuarantinedFile]:
        self.calls.append(("list_quarantine", (limit,)))
        self._operators_only()
        return self.quarantine[:limit]

    async def restore_quarantined(self, entry_ids: Sequence[str]) -> list[hw_pb.RestoreResult]:
        self.calls.append(("restore_quarantined", tuple(entry_ids)))
        self._operators_only()
        results = []
        for wanted in entry_ids:
            found = next((e for e in self.quarantine if e.entry_id == wanted), None)
            if found is None:
                raise CallFailed(grpc.StatusCode.NOT_FOUND, f"no quarantine entry {wanted}")
            refused = self.restore_refusals.get(wanted)
            if refused is not None:
                results.append(
                    hw_pb.RestoreResult(
                        entry_id=wanted, original_path=found.original_path, error=refused
                    )
                )
                continue
            self.quarantine.remove(found)
            results.append(
                hw_pb.RestoreResult(
                    entry_id=wanted, original_path=found.original_path, restored=True
                )
            )
        return results

    async def purge_quarantine(
        self, entry_ids: Sequence[str] = (), *, dry_run: bool = True
    ) -> hw_pb.PurgeQuarantineResponse:
        self.calls.append(("purge_quarantine", (tuple(entry_ids), dry_run)))
        if self._role() != access_pb2.ROLE_ADMIN:
            raise CallFailed(grpc.StatusCode.PERMISSION_DENIED, "needs the admin role")
        chosen = [
            e
            for e in self.quarantine
            if (not entry_ids or e.entry_id in entry_ids)
            and e.purgeable_at.ToDatetime(tzinfo=UTC) <= NOW
        ]
        if not dry_run:
            for found in chosen:
                self.quarantine.remove(found)
        return hw_pb.PurgeQuarantineResponse(
            dry_run=dry_run, purged=chosen, bytes_freed=sum(e.size_bytes for e in chosen)
        )
