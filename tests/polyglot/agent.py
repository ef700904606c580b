"""Start the TypeScript agent (``node/agent.ts``) as a child process, for any test or fixture.

The agent needs what a supervisor-run agent gets: the NATS URL(s), its principal's credentials
file (``nats_user`` is the agent's name) and an instance id. A sketch for a fixture on the
session mesh, once the supervisor knows agent principals::

    async with running_agent(
        node_workdir,
        node_modules,
        servers=settings.nats_servers,
        credentials_file=credentials_path(settings.state_dir, "polyglot"),
        instance="ts1",
        log=tmp_path / "agent.log",
    ) as agent:
        ...  # agent.agent_id == "polyglot.ts1"; it takes tasks of type agent.capabilities
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from sutazai.runtime.credentials import ProcessCredentials
from sutazai.runtime.files import replace_file
from tests.harness.waiting import wait_for
from tests.polyglot.nodejs import NODE, node_env

CAPABILITIES = ("text.reverse", "polyglot.echo", "polyglot.sleep", "polyglot.fail")
"""The task types the agent runs (documented at the top of ``node/agent.ts``)."""
RUNTIME = "typescript/nats.js"
"""What its heartbeats give as ``runtime``."""
READY_LINE = "ready as "
"""Logged once the agent heartbeats and pulls."""
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


class AgentFailedError(Exception):
    """The agent exited or never became ready; the message holds its log."""


@dataclass
class AgentProcess:
    """A running TypeScript agent instance."""

    name: str
    instance: str
    process: asyncio.subprocess.Process
    log: Path
    capabilities: tuple[str, ...] = field(default=CAPABILITIES)

    @property
    def agent_id(self) -> str:
        """``<name>.<instance>``: its registry key and the id its reports carry."""
        return f"{self.name}.{self.instance}"

    def output(self) -> str:
        """Its log so far (stdout and stderr), for failure messages."""
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int:  # noqa: ASYNC109  (then SIGKILL)
        """SIGTERM (the agent drains and leaves the registry), SIGKILL after ``timeout``.

        Returns:
            The exit status (negative: killed by that signal).

        """
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no goodbye, the heartbeat just stops."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


def write_credentials(path: Path, user: str, password: str) -> Path:
    """Write an agent principal's credentials file as the supervisor does (0600, NATS only)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    credentials = ProcessCredentials(
        principal=user, nats_user=user, nats_password=SecretStr(password)
    )
    replace_file(path, credentials.document())
    return path


def agent_name(credentials_file: Path) -> str:
    """The agent's name: the NATS user of its credentials file."""
    credentials = ProcessCredentials.model_validate_json(credentials_file.read_text())
    return credentials.nats_user or ""


async def start_agent(
    workdir: Path,
    node_modules: Path,
    *,
    servers: Sequence[str],
    credentials_file: Path,
    instance: str,
    log: Path,
    max_concurrency: int = 4,
    heartbeat_ms: int | None = None,
    ack_wait_ms: int | None = None,
    env: Mapping[str, str] | None = None,
) -> AgentProcess:
    """Start the agent in ``workdir`` (see :func:`tests.polyglot.nodejs.prepare_workdir`).

    Returns once it logged that it is ready: connected, its consumer created, its first
    heartbeat written and its control subject subscribed.

    Raises:
        AgentFailedError: it exited, or was not ready within ``START_TIMEOUT`` (then killed).

    """
    settings = {
        "SUTAZAI_NATS__URL": ",".join(servers),
        "SUTAZAI_CREDENTIALS_FILE": str(credentials_file),
        "SUTAZAI_AGENT_INSTANCE_ID": instance,
        "SUTAZAI_AGENT_MAX_CONCURRENCY": str(max_concurrency),
    }
    if heartbeat_ms is not None:
        settings["SUTAZAI_AGENT_HEARTBEAT_MS"] = str(heartbeat_ms)
    if ack_wait_ms is not None:
        settings["SUTAZAI_AGENT_ACK_WAIT_MS"] = str(ack_wait_ms)
    name = agent_name(credentials_file)
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            str(NODE),
            "agent.ts",
            cwd=workdir,
            env={**node_env(node_modules), **settings, **(env or {})},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
    agent = AgentProcess(name, instance, process, log)

    def ready() -> bool:
        if process.returncode is not None:
            raise AgentFailedError(
                f"the TypeScript agent exited with {process.returncode}\n{agent.output()}"
            )
        return READY_LINE in agent.output()

    try:
        await wait_for(ready, timeout=START_TIMEOUT, message=f"agent {agent.agent_id} ready")
    except TimeoutError:
        agent.kill()
        await process.wait()
        raise AgentFailedError(
            f"the TypeScript agent was not ready in {START_TIMEOUT:.0f}s\n{agent.output()}"
        ) from None
    return agent


@contextlib.asynccontextmanager
async def running_agent(
    workdir: Path,
    node_modules: Path,
    *,
    servers: Sequence[str],
    credentials_file: Path,
    instance: str,
    log: Path,
    max_concurrency: int = 4,
    heartbeat_ms: int | None = None,
    ack_wait_ms: int | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[AgentProcess]:
    """:func:`start_agent`, stopped (SIGTERM, then SIGKILL) when the block ends."""
    agent = await start_agent(
        workdir,
        node_modules,
        servers=servers,
        credentials_file=credentials_file,
        instance=instance,
        log=log,
        max_concurrency=max_concurrency,
        heartbeat_ms=heartbeat_ms,
        ack_wait_ms=ack_wait_ms,
        env=env,
    )
    try:
        yield agent
    finally:
        await agent.stop()
