"""``sutazai chat`` and ``sutazai models`` (a child process) against a stand-in edge.

The stand-in (``tests/client/test_chat.py``) serves the chat and inference services on a free
loopback port given to the CLI as ``SUTAZAI_ENVOY__PORT``; the CLI's session is a token file in
its own state directory. The real mesh's CLI tests are in ``tests/inference`` (models).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sutazai.client import FileTokenStore, SessionTokens
from sutazai.inference.v1 import inference_service_pb2 as inf_pb
from tests.client.test_chat import MODEL, Edge, stand_in_edge
from tests.harness.cli import CliRun, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    async with stand_in_edge() as started:
        yield started


async def cli(
    edge: Edge,
    tmp_path: Path,
    *args: str,
    token: str = "operator",  # noqa: S107
) -> CliRun:
    state = tmp_path / "state"
    expires = datetime.now(UTC) + timedelta(minutes=10)
    FileTokenStore(state).save(SessionTokens(token, "refresh", expires))
    env = {
        "SUTAZAI_STATE_DIR": str(state),
        "SUTAZAI_ENVOY__PORT": str(edge.port),
    }
    return await run_cli(*args, env=env, timeout=60.0)


async def test_chat_streams_the_reply_to_stdout_and_the_rest_to_stderr(
    edge: Edge, tmp_path: Path
) -> None:
    run = await cli(
        edge,
        tmp_path,
        "chat",
        "Hi",
        "--model",
        MODEL,
        "--conversation",
        "c7",
        "--temperature",
        "0.5",
        "--max-tokens",
        "32",
        "--no-cache",
        "--system",
        "Be brief.",
    )
    assert run.code == 0, run.stderr
    assert run.stdout == "Hello there\n"
    assert "conversation conv-1" in run.stderr
    [sent] = edge.chat.requests
    assert sent.model == MODEL  # type: ignore[attr-defined]
    assert sent.conversation_id == "c7"  # type: ignore[attr-defined]
    assert sent.options == inf_pb.SamplingOptions(temperature=0.5, max_tokens=32)  # type: ignore[attr-defined]
    assert sent.no_cache  # type: ignore[attr-defined]
    assert sent.system_prompt == "Be brief."  # type: ignore[attr-defined]


async def test_a_failing_reply_exits_non_zero_with_the_status(edge: Edge, tmp_path: Path) -> None:
    run = await cli(edge, tmp_path, "chat", "fail")
    assert run.code != 0
    assert run.stdout == "Hello\n"  # what came before the failure, ended cleanly
    assert "UNAVAILABLE" in run.stderr
    assert "failed mid-reply" in run.stderr


async def test_out_of_range_options_are_refused_before_any_call(edge: Edge, tmp_path: Path) -> None:
    run = await cli(edge, tmp_path, "chat", "Hi", "--temperature", "3")
    assert run.code != 0
    assert edge.chat.requests == []


async def test_models_lists_and_a_refused_load_names_the_status(edge: Edge, tmp_path: Path) -> None:
    listed = await cli(edge, tmp_path, "models", "--json")
    assert listed.code == 0, listed.stderr
    assert json.loads(listed.stdout)["default_model"] == MODEL
    table = await cli(edge, tmp_path, "models")
    assert MODEL in table.stdout
    backends = await cli(edge, tmp_path, "models", "backends")
    assert backends.code == 0, backends.stderr
    assert "embedded" in backends.stdout
    loaded = await cli(edge, tmp_path, "models", "load", MODEL)
    assert loaded.code == 0, loaded.stderr
    assert "loaded" in loaded.stdout
    refused = await cli(edge, tmp_path, "models", "load", MODEL, token="user")
    assert refused.code != 0
    assert "PERMISSION_DENIED" in refused.stderr
    missing = await cli(edge, tmp_path, "models", "unload", "nope")
    assert "NOT_FOUND" in missing.stderr
