"""``sutazai tasks``, ``agents`` and ``coordinator`` (a child process) against a stand-in edge.

The stand-in (``tests/client/work_edge.py``) serves the task, agent and coordinator services on
a free loopback port given to the CLI as ``SUTAZAI_ENVOY__PORT``; the CLI's session is a token
file in its own state directory (``operator`` is an operator's token, ``user`` a user's).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sutazai.client import FileTokenStore, SessionTokens
from sutazai.coordinator.v1 import coordinator_service_pb2 as coord_pb
from sutazai.tasks.v1 import task_service_pb2 as pb
from tests.client.work_edge import DEAD_ID, WorkEdge, work_edge
from tests.harness.cli import CliRun, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
async def edge() -> AsyncIterator[WorkEdge]:
    async with work_edge() as started:
        yield started


async def cli(
    edge: WorkEdge,
    tmp_path: Path,
    *args: str,
    token: str = "operator",  # noqa: S107
    stdin: str | None = None,
) -> CliRun:
    state = tmp_path / "state"
    expires = datetime.now(UTC) + timedelta(minutes=10)
    FileTokenStore(state).save(SessionTokens(token, "refresh", expires))
    env = {"SUTAZAI_STATE_DIR": str(state), "SUTAZAI_ENVOY__PORT": str(edge.port)}
    return await run_cli(*args, env=env, stdin=stdin, timeout=60.0)


async def test_create_sends_the_options_and_prints_the_task(edge: WorkEdge, tmp_path: Path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"text": "a long article", "max_words": 20}')
    run = await cli(
        edge,
        tmp_path,
        "tasks",
        "create",
        "slow.task",
        "--payload",
        f"@{payload}",
        "--priority",
        "2",
        "--capability",
        "lang.en",
        "--capability",
        "gpu",
        "--timeout",
        "90",
        "--idempotency-key",
        "k-7",
        "--json",
    )
    assert run.code == 0, run.stderr
    shown = json.loads(run.stdout)
    assert shown["created"] is True
    assert shown["task"]["state"] == "TASK_STATE_QUEUED"
    assert shown["task"]["idempotency_key"] == "k-7"  # the proto's field names
    [sent] = [r for r in edge.tasks.requests if isinstance(r, pb.CreateTaskRequest)]
    assert (sent.type, sent.priority, sent.timeout_seconds) == ("slow.task", 2, 90)
    assert list(sent.required_capabilities) == ["lang.en", "gpu"]
    assert sent.payload["text"] == "a long article"
    again = await cli(edge, tmp_path, "tasks", "create", "slow.task", "--idempotency-key", "k-7")
    assert again.code == 0, again.stderr
    assert "exists (same idempotency key)" in again.stdout
    assert shown["task"]["task_id"] in again.stdout


async def test_create_wait_follows_the_task_to_success(edge: WorkEdge, tmp_path: Path) -> None:
    run = await cli(
        edge,
        tmp_path,
        "tasks",
        "create",
        "text.summarize",
        "--payload",
        "@-",
        "--wait",
        stdin='{"text": "summarise me"}',
    )
    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [s for s in ("queued", "running", "succeeded") if any(s in line for line in lines)] == [
        "queued",
        "running",
        "succeeded",
    ]
    assert '"summary": "short"' in run.stdout
    as_json = await cli(edge, tmp_path, "tasks", "create", "text.summarize", "--wait", "--json")
    assert as_json.code == 0, as_json.stderr
    final = json.loads(as_json.stdout)
    assert final["state"] == "TASK_STATE_SUCCEEDED"
    assert final["result"] == {"summary": "short"}


async def test_a_task_that_fails_exits_non_zero_with_the_reason(
    edge: WorkEdge, tmp_path: Path
) -> None:
    run = await cli(edge, tmp_path, "tasks", "create", "always.fail", "--wait")
    assert run.code == 1
    assert "FAILED" in run.stderr
    assert "RuntimeError" in run.stderr


async def test_bad_input_is_refused_with_the_field_or_before_any_call(
    edge: WorkEdge, tmp_path: Path
) -> None:
    for payload in ("[1, 2]", "{not json", '"text"'):
        run = await cli(edge, tmp_path, "tasks", "create", "x", "--payload", payload)
        assert run.code == 1, payload
        assert "--payload" in run.stderr
    big = await cli(
        edge, tmp_path, "tasks", "create", "x", "--payload", json.dumps({"t": "x" * 70_000})
    )
    assert big.code == 1
    assert "larger than" in big.stderr
    usage = await cli(edge, tmp_path, "tasks", "create", "x", "--priority", "4")
    assert usage.code == 2
    bad_state = await cli(edge, tmp_path, "tasks", "list", "--state", "sleeping")
    assert bad_state.code == 2
    assert edge.tasks.requests == []
    invalid = await cli(edge, tmp_path, "tasks", "get", "not-a-uuid")
    assert invalid.code == 1
    assert "INVALID_ARGUMENT" in invalid.stderr
    assert "task_id: must be a UUID" in invalid.stderr
    missing = await cli(edge, tmp_path, "tasks", "get", "00000000-0000-4000-8000-999999999999")
    assert "NOT_FOUND" in missing.stderr


async def test_get_list_cancel_and_watch_one(edge: WorkEdge, tmp_path: Path) -> None:
    created = await cli(edge, tmp_path, "tasks", "create", "slow.task", "--json")
    task_id = json.loads(created.stdout)["task"]["task_id"]
    got = await cli(edge, tmp_path, "tasks", "get", task_id)
    assert got.code == 0, got.stderr
    assert "queued" in got.stdout
    assert "slow.task" in got.stdout
    listed = await cli(edge, tmp_path, "tasks", "list", "--state", "queued", "--json")
    assert [t["task_id"] for t in json.loads(listed.stdout)] == [task_id]
    table = await cli(edge, tmp_path, "tasks", "list", "--all")
    assert task_id in table.stdout
    assert DEAD_ID in table.stdout
    denied = await cli(edge, tmp_path, "tasks", "list", "--all", token="user")
    assert denied.code == 1
    assert "PERMISSION_DENIED" in denied.stderr
    cancelled = await cli(edge, tmp_path, "tasks", "cancel", task_id, "--reason", "not needed")
    assert cancelled.code == 0, cancelled.stderr
    assert "cancelled" in cancelled.stdout
    assert edge.tasks.tasks[task_id].error.message == "not needed"
    again = await cli(edge, tmp_path, "tasks", "cancel", task_id)
    assert again.code == 1
    assert "FAILED_PRECONDITION" in again.stderr
    watched = await cli(edge, tmp_path, "tasks", "watch", task_id, "--json")
    assert watched.code == 1  # it ended CANCELLED
    [line] = watched.stdout.splitlines()
    assert json.loads(line)["state"] == "TASK_STATE_CANCELLED"
    assert "CANCELLED: not needed" in watched.stderr


async def test_dead_letters_are_listed_and_requeued_by_operators(
    edge: WorkEdge, tmp_path: Path
) -> None:
    refused = await cli(edge, tmp_path, "tasks", "dead-letters", token="user")
    assert refused.code == 1
    assert "PERMISSION_DENIED" in refused.stderr
    listed = await cli(edge, tmp_path, "tasks", "dead-letters")
    assert listed.code == 0, listed.stderr
    assert DEAD_ID in listed.stdout
    assert "RuntimeError" in listed.stdout
    requeued = await cli(edge, tmp_path, "tasks", "requeue", DEAD_ID)
    assert requeued.code == 0, requeued.stderr
    assert "re-queued (queued)" in requeued.stdout
    empty = await cli(edge, tmp_path, "tasks", "dead-letters", "--json")
    assert json.loads(empty.stdout) == []


async def test_agents_and_the_coordinator(edge: WorkEdge, tmp_path: Path) -> None:
    listed = await cli(edge, tmp_path, "agents", token="user")
    assert listed.code == 0, listed.stderr
    assert "text.1" in listed.stdout
    assert "text.summarize" in listed.stdout
    one = await cli(edge, tmp_path, "agents", "get", "text.2", "--json")
    assert json.loads(one.stdout)["heartbeat"]["agent_id"] == "text.2"
    shown = await cli(edge, tmp_path, "coordinator", "strategy")
    assert shown.code == 0, shown.stderr
    assert "round-robin" in shown.stdout
    changed = await cli(edge, tmp_path, "coordinator", "strategy", "weighted-score")
    assert changed.code == 0, changed.stderr
    assert edge.coordinator.strategy == coord_pb.STRATEGY_WEIGHTED_SCORE
    unknown = await cli(edge, tmp_path, "coordinator", "strategy", "random")
    assert unknown.code == 2
    denied = await cli(edge, tmp_path, "coordinator", "strategy", "least-loaded", token="user")
    assert denied.code == 1
    assert "PERMISSION_DENIED" in denied.stderr
    stats = await cli(edge, tmp_path, "coordinator", "stats")
    assert stats.code == 0, stats.stderr
    assert "p3: 0  p2: 1  p1: 2  p0: 4" in stats.stdout
    assert "text.summarize" in stats.stdout
    as_json = await cli(edge, tmp_path, "coordinator", "stats", "--json")
    assert json.loads(as_json.stdout)["queued_by_type"]["text.summarize"] == "6"
    streams = await cli(edge, tmp_path, "coordinator", "streams")
    assert "SUTAZAI_TASKS" in streams.stdout
    assert "coordinator" in streams.stdout
