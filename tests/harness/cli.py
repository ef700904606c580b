"""Run the real ``sutazai`` command in a child process, as a user would."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CliRun:
    """Exit status and output of one ``sutazai`` invocation."""

    code: int
    stdout: str
    stderr: str


async def run_cli(
    *args: str,
    env: Mapping[str, str],
    stdin: str | None = None,
    timeout: float = 120.0,  # noqa: ASYNC109
) -> CliRun:
    """``python -m sutazai.ops.cli ARGS`` with ``env`` over a clean ``SUTAZAI_*`` slate.

    ``stdin`` is fed to the command (e.g. ``--password-stdin``); without it stdin is empty.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUTAZAI_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sutazai.ops.cli",
        *args,
        env={**base, "COLUMNS": "200", **env},
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        fed = None if stdin is None else stdin.encode()
        stdout, stderr = await asyncio.wait_for(process.communicate(fed), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliRun(process.returncode, stdout.decode(), stderr.decode())
