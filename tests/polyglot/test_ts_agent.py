"""An agent written in TypeScript (``node/agent.ts``), from ``protos/`` and the wire contract alone.

The test plays the coordinator: it publishes ``TaskAssignment`` messages to the agent's work
subject, reads the agent's ``TaskReport`` messages from ``SUTAZAI_REPORTS``, its heartbeat from
the ``sutazai_agents`` bucket, and cancels with ``TaskControl``. The agent runs as an agent
principal whose permissions are the README's ``agent`` role (:mod:`tests.polyglot.stand_ins`)
on a NATS server of this module, with the streams created as ``admin``.
"""

from __future__ import annotations

import secrets
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from google.protobuf import json_format
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from sutazai.agents.v1 import agent_service_pb2
from sutazai.tasks.v1 import dispatch_pb2
from tests.gateway.processes import (
    NATS_SERVER,
    read_log,
    start_process,
    stop_process,
    tcp_accepting,
)
from tests.harness.mesh import free_ports
from tests.harness.waiting import wait_for
from tests.polyglot.agent import (
    CAPABILITIES,
    RUNTIME,
    AgentFailedError,
    AgentProcess,
    running_agent,
    write_credentials,
)
from tests.polyglot.nodejs import NodeToolError, typecheck
from tests.polyglot.stand_ins import (
    AGENTS_BUCKET,
    REPORTS_STREAM,
    WORK_STREAM,
    ensure_task_streams,
    server_config,
)

pytestmark = pytest.mark.integration

AGENT = "polyglot"
INSTANCES = ("ts1", "slow", "term")
"""Instances the agent principal may run (each has its own consumer, named in its grants)."""
FINAL = frozenset({"succeeded", "failed", "cancelled"})
REPORT_TIMEOUT = 20.0

# google.rpc.Code
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
INTERNAL = 13
UNIMPLEMENTED = 12


@dataclass(frozen=True, slots=True)
class PolyglotNats:
    """The module's NATS server and its two users' passwords."""

    url: str
    admin_password: str
    agent_password: str
    log: Path


class Reports:
    """Every ``TaskReport`` the agent publishes, by task id, read from ``SUTAZAI_REPORTS``."""

    def __init__(self) -> None:
        self.by_task: defaultdict[str, list[dispatch_pb2.TaskReport]] = defaultdict(list)

    async def on_message(self, msg: Msg) -> None:
        report = dispatch_pb2.TaskReport.FromString(msg.data)
        self.by_task[report.task_id].append(report)
        await msg.ack()

    def events(self, task_id: str) -> list[str]:
        """The task's report kinds in stream order."""
        return [str(r.WhichOneof("event")) for r in self.by_task[task_id]]

    async def final(self, task_id: str, timeout: float = REPORT_TIMEOUT) -> dispatch_pb2.TaskReport:  # noqa: ASYNC109
        """Wait for the task's final report (succeeded, failed or cancelled) and return it."""
        await wait_for(
            lambda: FINAL.intersection(self.events(task_id)),
            timeout=timeout,
            message=f"a final report of {task_id} (so far {self.events(task_id)})",
        )
        return next(r for r in self.by_task[task_id] if r.WhichOneof("event") in FINAL)


@pytest.fixture(scope="module")
async def polyglot_nats(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolyglotNats]:
    """A nats-server with JetStream, ``admin`` and the agent principal ``polyglot``."""
    (port,) = free_ports(1)
    directory = tmp_path_factory.mktemp("polyglot-nats")
    config = directory / "nats-server.conf"
    admin_password, agent_password = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    config.write_text(
        server_config(
            port=port,
            store_dir=str(directory / "jetstream"),
            admin_password=admin_password,
            agent=AGENT,
            agent_password=agent_password,
            instances=INSTANCES,
        )
    )
    config.chmod(0o600)
    log = directory / "nats.log"
    process = start_process([str(NATS_SERVER), "-c", str(config)], log=log)
    try:
        await wait_for(
            lambda: tcp_accepting(port, process), timeout=10, message="nats-server accepting"
        )
        yield PolyglotNats(f"nats://127.0.0.1:{port}", admin_password, agent_password, log)
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
async def admin(polyglot_nats: PolyglotNats) -> AsyncIterator[Client]:
    """The coordinator's side of the wire, as ``admin``, with the streams and bucket created."""
    nc = await nats.connect(polyglot_nats.url, user="admin", password=polyglot_nats.admin_password)
    await ensure_task_streams(nc.jetstream())
    yield nc
    await nc.close()


@pytest.fixture(scope="module")
async def reports(admin: Client) -> AsyncIterator[Reports]:
    """The agent's reports as they reach the stream (an ordered consumer from the start)."""
    collected = Reports()
    subscription = await admin.jetstream().subscribe(
        f"sutazai.reports.agent.{AGENT}.>",
        stream=REPORTS_STREAM,
        ordered_consumer=True,
        cb=collected.on_message,
    )
    yield collected
    await subscription.unsubscribe()


@pytest.fixture(scope="module")
def credentials(polyglot_nats: PolyglotNats, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agent principal's credentials file, as the supervisor would write it."""
    path = tmp_path_factory.mktemp("credentials") / f"{AGENT}.json"
    return write_credentials(path, AGENT, polyglot_nats.agent_password)


@dataclass(frozen=True, slots=True)
class Launch:
    """Everything :func:`running_agent` needs but the instance."""

    workdir: Path
    node_modules: Path
    nats: PolyglotNats
    credentials: Path
    logs: Path

    def agent(self, instance: str, **options: Any) -> Any:
        """``running_agent`` for ``instance`` of the ``polyglot`` principal."""
        return running_agent(
            self.workdir,
            self.node_modules,
            servers=[self.nats.url],
            credentials_file=self.credentials,
            instance=instance,
            log=self.logs / f"agent-{instance}.log",
            **options,
        )


@pytest.fixture(scope="module")
def launch(
    node_workdir: Path,
    node_modules: Path,
    polyglot_nats: PolyglotNats,
    credentials: Path,
    admin: Client,
    tmp_path_factory: pytest.TempPathFactory,
) -> Launch:
    """Starts agent instances (once the streams exist)."""
    logs = tmp_path_factory.mktemp("agent-logs")
    return Launch(node_workdir, node_modules, polyglot_nats, credentials, logs)


@pytest.fixture(scope="module")
async def agent(launch: Launch, polyglot_nats: PolyglotNats) -> AsyncIterator[AgentProcess]:
    """Instance ``ts1``, heart-beating every 0.5 s; stopped after the module."""
    try:
        async with launch.agent("ts1", heartbeat_ms=500) as running:
            yield running
    except AgentFailedError as error:
        pytest.fail(f"{error}\n--- nats-server log ---\n{read_log(polyglot_nats.log)}")


async def assign(
    admin: Client,
    agent: AgentProcess,
    task_type: str,
    payload: Mapping[str, Any],
    *,
    deadline: timedelta = timedelta(minutes=1),
) -> str:
    """Publish a TaskAssignment (attempt 1) to the agent's work subject; return the task id."""
    task_id = str(uuid.uuid4())
    assignment = dispatch_pb2.TaskAssignment(task_id=task_id, attempt=1, type=task_type)
    assignment.payload.update(payload)
    assignment.deadline.FromDatetime(datetime.now(UTC) + deadline)
    ack = await admin.jetstream().publish(
        f"sutazai.work.{agent.name}.{agent.instance}",
        assignment.SerializeToString(),
        headers={"Nats-Msg-Id": f"{task_id}.1"},
    )
    assert ack.stream == WORK_STREAM, ack
    assert not ack.duplicate, ack
    return task_id


def result_of(report: dispatch_pb2.TaskReport) -> dict[str, Any]:
    assert report.WhichOneof("event") == "succeeded", report
    return json_format.MessageToDict(report.succeeded.result)


async def heartbeat(admin: Client, agent: AgentProcess) -> agent_service_pb2.AgentHeartbeat:
    kv = await admin.jetstream().key_value(AGENTS_BUCKET)
    entry = await kv.get(agent.agent_id)
    assert entry.value, entry
    return agent_service_pb2.AgentHeartbeat.FromString(entry.value)


async def heartbeat_running(admin: Client, agent: AgentProcess) -> int:
    return (await heartbeat(admin, agent)).running


async def work_queue_empty(admin: Client, agent: AgentProcess) -> bool:
    """Whether every assignment of the instance was acknowledged (a work queue then drops it)."""
    info = await admin.jetstream().consumer_info(
        WORK_STREAM, f"agent-{agent.name}-{agent.instance}"
    )
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_agent_type_checks(node_workdir: Path, node_modules: Path) -> None:
    try:
        result = await typecheck(node_workdir, node_modules)
    except NodeToolError as error:
        pytest.fail(str(error))
    assert result.code == 0, f"tsc found errors in node/agent.ts\n{result.describe()}"


async def test_type_check_catches_a_type_error(
    node_workdir: Path, node_modules: Path, tmp_path: Path
) -> None:
    # The same check on a copy with one wrong type must fail: the check is not a no-op.
    for name in ("tsconfig.json", "package.json"):
        shutil.copy2(node_workdir / name, tmp_path / name)
    (tmp_path / "gen").symlink_to(node_workdir / "gen", target_is_directory=True)
    (tmp_path / "node_modules").symlink_to(node_modules, target_is_directory=True)
    source = (node_workdir / "agent.ts").read_text()
    broken = source.replace('const RUNTIME = "typescript/nats.js";', 'const RUNTIME: number = "x";')
    assert broken != source
    (tmp_path / "agent.ts").write_text(broken)
    try:
        result = await typecheck(tmp_path, node_modules)
    except NodeToolError as error:
        pytest.fail(str(error))
    assert result.code != 0, result.describe()
    assert "TS2322" in result.stdout, (
        result.describe()
    )  # type 'string' is not assignable to 'number'


async def test_agent_heartbeats_into_the_agent_bucket(admin: Client, agent: AgentProcess) -> None:
    first = await heartbeat(admin, agent)
    assert first.agent_id == "polyglot.ts1"
    assert tuple(first.capabilities) == CAPABILITIES
    assert first.runtime == RUNTIME
    assert first.state == agent_service_pb2.AGENT_STATE_ONLINE
    assert first.max_concurrency == 4
    assert first.started_at.ToDatetime() <= first.heartbeat_at.ToDatetime()

    async def beat_again() -> bool:
        later = await heartbeat(admin, agent)
        return later.heartbeat_at.ToDatetime() > first.heartbeat_at.ToDatetime()

    await wait_for(beat_again, timeout=5, message="a later heartbeat")


async def test_agent_reverses_text_and_acks_after_the_report(
    admin: Client, agent: AgentProcess, reports: Reports
) -> None:
    text = "Grüße, 世界 🌍!"
    task_id = await assign(admin, agent, "text.reverse", {"text": text})
    final = await reports.final(task_id)
    assert reports.events(task_id) == ["started", "succeeded"], agent.output()
    assert result_of(final) == {"text": "!🌍 界世 ,eßürG", "length": len(text)}
    for report in reports.by_task[task_id]:
        assert (report.agent_id, report.attempt, report.task_id) == ("polyglot.ts1", 1, task_id)
        assert report.sent_at.ToDatetime(tzinfo=UTC) > datetime.now(UTC) - timedelta(minutes=1)
    await wait_for(
        lambda: work_queue_empty(admin, agent), timeout=5, message="the assignment acknowledged"
    )

    async def counted() -> bool:
        return (await heartbeat(admin, agent)).succeeded >= 1

    await wait_for(counted, timeout=5, message="the heartbeat counts the success")


async def test_agent_reports_progress_echoes_and_fails_precisely(
    admin: Client, agent: AgentProcess, reports: Reports
) -> None:
    payload = {"nested": {"list": [1, "two", None, True]}, "n": 1.5}
    sleep = await assign(admin, agent, "polyglot.sleep", {"seconds": 0.3, "steps": 3})
    echo = await assign(admin, agent, "polyglot.echo", payload)
    bad_input = await assign(admin, agent, "text.reverse", {"text": 42})
    unknown = await assign(admin, agent, "image.render", {})
    late = await assign(admin, agent, "text.reverse", {"text": "x"}, deadline=timedelta(seconds=-1))
    fail = await assign(admin, agent, "polyglot.fail", {"message": "boom", "retryable": False})

    final = await reports.final(sleep)
    assert reports.events(sleep) == ["started", "progress", "progress", "progress", "succeeded"]
    fractions = [r.progress.fraction for r in reports.by_task[sleep] if r.HasField("progress")]
    assert fractions == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert result_of(final) == {"slept_seconds": 0.3}

    assert result_of(await reports.final(echo)) == {"echo": payload, "agent_id": "polyglot.ts1"}

    expected = {
        bad_input: (INVALID_ARGUMENT, "payload.text must be a string", False),
        unknown: (UNIMPLEMENTED, 'this agent does not run "image.render"', False),
        late: (DEADLINE_EXCEEDED, "the attempt ran past its deadline", True),
        fail: (INTERNAL, "boom", False),
    }
    for task_id, (code, message, retryable) in expected.items():
        report = await reports.final(task_id)
        assert report.WhichOneof("event") == "failed", (reports.events(task_id), agent.output())
        failed = report.failed
        assert (failed.error.code, failed.error.message, failed.retryable) == (
            code,
            message,
            retryable,
        )
    assert reports.events(late) == ["failed"]  # never started: the deadline had passed
    await wait_for(
        lambda: work_queue_empty(admin, agent), timeout=5, message="every assignment acknowledged"
    )


async def test_agent_stops_a_cancelled_task(
    admin: Client, agent: AgentProcess, reports: Reports
) -> None:
    task_id = await assign(admin, agent, "polyglot.sleep", {"seconds": 100, "steps": 100})
    await wait_for(
        lambda: "started" in reports.events(task_id), timeout=10, message="the long task started"
    )
    control = dispatch_pb2.TaskControl(task_id=task_id, attempt=1)
    control.cancel.reason = "the test cancels it"
    cancelled_at = time.monotonic()
    await admin.publish(f"sutazai.control.{AGENT}.{agent.instance}", control.SerializeToString())

    final = await reports.final(task_id, timeout=10)
    assert final.WhichOneof("event") == "cancelled", (final, agent.output())
    assert time.monotonic() - cancelled_at < 10
    await wait_for(
        lambda: work_queue_empty(admin, agent), timeout=5, message="the cancelled task acknowledged"
    )

    async def idle() -> bool:
        return await heartbeat_running(admin, agent) == 0

    await wait_for(idle, timeout=5, message="the heartbeat shows nothing running")


async def test_in_progress_acks_keep_a_task_longer_than_ack_wait(
    launch: Launch, admin: Client, reports: Reports
) -> None:
    # ack_wait 1.5 s and a 4.5 s task: without in-progress acks JetStream would deliver the
    # assignment again (twice), which the consumer's delivery count would show.
    async with launch.agent("slow", ack_wait_ms=1500) as slow:
        consumer = f"agent-{AGENT}-slow"
        before = await admin.jetstream().consumer_info(WORK_STREAM, consumer)
        assert before.config.ack_wait == pytest.approx(1.5)
        task_id = await assign(admin, slow, "polyglot.sleep", {"seconds": 4.5, "steps": 3})
        final = await reports.final(task_id, timeout=20)
        assert result_of(final) == {"slept_seconds": 4.5}, slow.output()
        await wait_for(
            lambda: work_queue_empty(admin, slow), timeout=5, message="the task acknowledged"
        )
        after = await admin.jetstream().consumer_info(WORK_STREAM, consumer)
        assert after.delivered.consumer_seq == before.delivered.consumer_seq + 1, after


async def test_sigterm_removes_the_instance_from_the_agent_bucket(
    launch: Launch, admin: Client
) -> None:
    kv = await admin.jetstream().key_value(AGENTS_BUCKET)
    async with launch.agent("term") as term:
        entry = await kv.get(term.agent_id)
        assert agent_service_pb2.AgentHeartbeat.FromString(entry.value or b"").agent_id == (
            "polyglot.term"
        )
        stopping = time.monotonic()
        assert await term.stop() == 0, term.output()
        assert time.monotonic() - stopping < 10
        with pytest.raises(KeyNotFoundError):
            await kv.get(term.agent_id)
        assert "SIGTERM: stopping" in term.output()
