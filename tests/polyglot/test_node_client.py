"""A gRPC client generated in another language (Node.js) from ``protos/`` calls GetStatus via Envoy.

Node, the pinned npm packages and the generated code come from :mod:`tests.polyglot.nodejs`
(fixtures ``node_modules`` and ``node_workdir`` in ``tests/polyglot/conftest.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sutazai.runtime.settings import MeshSettings
from tests.harness.waiting import wait_for
from tests.polyglot.nodejs import NODE, NodeToolError, Run, node_env, run

CALL_TIMEOUT = 20.0


async def test_node_client_calls_get_status_through_envoy(
    mesh_services: MeshSettings, node_workdir: Path, node_modules: Path, operator_token: str
) -> None:
    base_url = f"http://127.0.0.1:{mesh_services.envoy.port}"
    attempts: list[Run] = []
    statuses: list[dict[str, Any]] = []

    async def healthy() -> bool:
        try:
            attempt = await run(
                NODE,
                "get_status.mjs",
                base_url,
                "5000",
                cwd=node_workdir,
                env={**node_env(node_modules), "SUTAZAI_TOKEN": operator_token},
                timeout=CALL_TIMEOUT,
            )
        except NodeToolError as error:
            pytest.fail(str(error))
        attempts.append(attempt)
        if attempt.code != 0:
            return False
        try:
            status = json.loads(attempt.stdout)
        except json.JSONDecodeError as error:
            pytest.fail(f"the Node client printed no JSON ({error})\n{attempt.describe()}")
        statuses.append(status)
        return status.get("overall") == "HEALTHY"

    timed_out = False
    try:
        await wait_for(healthy, timeout=30, interval=0.2, message="overall HEALTHY via Node")
    except TimeoutError:
        timed_out = True
    if timed_out:
        last = attempts[-1].describe() if attempts else "(no attempt finished)"
        pytest.fail(
            f"the Node client never saw overall HEALTHY through Envoy at {base_url} "
            f"in {len(attempts)} attempts; the last one:\n{last}"
        )

    status = statuses[-1]
    components = {c["name"]: c for c in status["components"]}
    assert {"postgres", "redis", "nats", "envoy"} <= components.keys(), status
    assert any(name.startswith("system/") for name in components), status
    assert all(c["state"] == "COMPONENT_STATE_HEALTHY" for c in components.values()), status
    assert all("latency_ms" in c and "since" in c for c in components.values()), status
    assert status["reported_by"].startswith("system/"), status
    assert status["checked_at"], status
