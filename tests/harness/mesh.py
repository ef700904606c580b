"""Build settings on free ports and run supervisors that can never outlive the test session."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from sutazai.ops.supervisor import ComponentSpec, RestartPolicy, Supervisor
from sutazai.ops.supervisor.credentials import ensure_credentials
from sutazai.runtime.deployment import AgentEntry, load_agents
from sutazai.runtime.settings import (
    AuthSettings,
    BreakerSettings,
    CoordinatorSettings,
    EdgeSettings,
    EmbeddedBackendSettings,
    EnvoySettings,
    HardwareSettings,
    InferenceSettings,
    MeshSettings,
    NatsSettings,
    OpenAIBackendSettings,
    PostgresSettings,
    RedisSettings,
)

LOOPBACK = "127.0.0.1"
UNLIMITED_EDGE = EdgeSettings(
    user_rate_limit_burst=100_000,
    user_rate_limit_per_second=100_000,
    address_rate_limit_burst=100_000,
    address_rate_limit_per_second=100_000,
    global_rate_limit_burst=100_000,
    global_rate_limit_per_second=100_000,
)
"""Edge limits no load test reaches (the limiter is tested on an Envoy of its own)."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that are free on 127.0.0.1 right now.

    All sockets stay open until every port is picked, so the ports are distinct.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(sock.getsockname()[1])
        return ports


@dataclass(frozen=True, slots=True)
class MeshPorts:
    """Every port of a test mesh."""

    nats: int
    nats_monitor: int
    postgres: int
    redis: int
    envoy: int
    envoy_base_id: int
    """Not a port: Envoy's shared-memory id. A just-free port number is as unique per run."""
    openai_backend: int
    """Where the inference tests run a real ``llama_cpp.server`` (the OpenAI-compatible
    backend the mesh is configured with; nothing listens there unless a test starts it)."""

    @classmethod
    def pick(cls) -> MeshPorts:
        """Fresh free ports for every field."""
        return cls(*free_ports(7))


def new_state_dir() -> Path:
    """A private temporary state directory (removed by :func:`remove_state_dir`).

    Not under pytest's ``tmp_path``: its parent is 0700, and as root PostgreSQL runs as another
    user that must be able to reach its data directory.
    """
    return Path(tempfile.mkdtemp(prefix="sutazai-test-"))


def remove_state_dir(state_dir: Path) -> None:
    """Delete a state directory made by :func:`new_state_dir` (and its hardware root)."""
    shutil.rmtree(state_dir, ignore_errors=True)
    shutil.rmtree(hardware_root(state_dir), ignore_errors=True)


def hardware_root(state_dir: Path) -> Path:
    """The hardware service's one allowed root in a test mesh: beside the state directory.

    Not inside it: the state directory is never an allowed root (its secrets, databases and
    quarantine are protected). Tests make their trees here.
    """
    return state_dir.with_name(f"{state_dir.name}-hardware")


HARNESS_CATALOG = Path(__file__).with_name("mesh.toml")
"""Agents the test mesh has besides those of ``deploy/mesh.toml`` (e.g. the polyglot agent)."""


def mesh_agents() -> list[AgentEntry]:
    """The agents of the test mesh: those of ``deploy/mesh.toml``, then the harness's own."""
    return [*load_agents(), *load_agents(HARNESS_CATALOG)]


def build_settings(
    state_dir: Path,
    ports: MeshPorts,
    *,
    services: Iterable[str] | None = None,
    agents: Iterable[AgentEntry] | None = None,
) -> MeshSettings:
    """Settings for a mesh on ``ports``, bound to 127.0.0.1, with credentials generated.

    As ``sutazai up`` does: secrets (a NATS password for each principal: ``admin``, ``gateway``,
    ``services``, by default those of ``deploy/mesh.toml``, and ``agents``, by default
    :func:`mesh_agents`) and the signing key ring.
    """
    settings = MeshSettings(
        state_dir=state_dir,
        host=LOOPBACK,
        nats=NatsSettings(port=ports.nats, monitor_port=ports.nats_monitor),
        postgres=PostgresSettings(port=ports.postgres),
        redis=RedisSettings(port=ports.redis),
        envoy=EnvoySettings(port=ports.envoy, base_id=ports.envoy_base_id),
        # The shared test mesh carries load tests (a steady stream of calls through a failover);
        # the edge limiter itself is tested on an Envoy of its own (tests/gateway).
        edge=UNLIMITED_EDGE,
        # Every test signs in and registers from 127.0.0.1; the per-address sign-in limits and
        # the slow-down after a failure are tested on auth instances of their own (tests/auth).
        auth=AuthSettings(
            failure_delay_seconds=0.0,
            sign_in_rate_burst=100_000,
            sign_in_rate_per_second=100_000,
            failure_audit_burst=100_000,
            failure_audit_per_second=100_000,
            # Inference tests make many generation calls as one user; the per-user limit is
            # tested on a guard of its own (tests/runtime/test_guard.py).
            user_rate_burst=100_000,
            user_rate_per_second=100_000,
        ),
        inference=inference_settings(ports),
        # The harness's agents are not in deploy/mesh.toml: the coordinator learns what each
        # may run from its settings.
        coordinator=CoordinatorSettings(
            agent_task_types={
                agent.name: list(agent.task_types.patterns)
                for agent in load_agents(HARNESS_CATALOG)
            }
        ),
        # Storage operations may touch only this tree (and the mesh's logs directory).
        # Short advice: the embedded model answers within the edge's 15 s on a shared machine.
        hardware=HardwareSettings(
            allowed_roots=[_made(hardware_root(state_dir))], advice_max_tokens=32
        ),
    )
    ensure_credentials(
        settings, services=services, agents=mesh_agents() if agents is None else agents
    )
    return settings


def _made(directory: Path) -> Path:
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


OPENAI_BACKEND_MODEL = "smollm2-server"
"""The name the test ``llama_cpp.server`` serves the SmolLM2 GGUF under (the embedded backend
serves the same file as ``smollm2-135m-instruct``)."""


EMBEDDED_MAX_QUEUE = 50
"""Calls that may wait for the test mesh's embedded backend (issue 9: 50 concurrent streaming
chats complete, queueing allowed; one more is RESOURCE_EXHAUSTED)."""


def inference_settings(ports: MeshPorts) -> InferenceSettings:
    """Inference settings of the test mesh: small limits that tests can fill, quick breakers."""
    return InferenceSettings(
        # One generation at a time and EMBEDDED_MAX_QUEUE waiting: the load test queues 50
        # streaming chats behind a held slot, then shows the next call refused (the queue-full
        # tests fill it up to exactly this). One thread: the suite shares two cores with
        # everything else.
        embedded=EmbeddedBackendSettings(
            n_threads=1, n_ctx=1024, max_concurrency=1, max_queue=EMBEDDED_MAX_QUEUE
        ),
        openai=OpenAIBackendSettings(
            url=f"http://{LOOPBACK}:{ports.openai_backend}/v1",
            # llama.cpp's server honours both.
            extra_options=("top_k", "repeat_penalty"),
            connect_timeout_seconds=1.0,
            read_timeout_seconds=30.0,
            max_concurrency=2,
            breaker=BreakerSettings(failure_threshold=2, cooldown_seconds=1.0),
        ),
    )


# Quick restarts keep crash tests short; the cap still bounds a crash loop.
TEST_RESTART_POLICY = RestartPolicy(initial_seconds=0.1, max_seconds=2.0)


@contextlib.asynccontextmanager
async def supervised(
    settings: MeshSettings,
    components: Sequence[ComponentSpec],
    *,
    restart_policy: RestartPolicy = TEST_RESTART_POLICY,
) -> AsyncIterator[Supervisor]:
    """Start ``components`` under a supervisor; stop them on exit, whatever happens.

    Should the interpreter exit without running the ``finally`` (an interrupted session), an
    atexit hook kills what is left; should the whole process be killed, the children's
    parent-death signal does.
    """
    supervisor = Supervisor(settings, components, restart_policy=restart_policy)
    reaper = _Reaper(supervisor)
    atexit.register(reaper)
    try:
        await supervisor.start()
        yield supervisor
    finally:
        await supervisor.stop()
        atexit.unregister(reaper)


class _Reaper:
    """Kills, synchronously, the process groups of a supervisor's children."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def __call__(self) -> None:
        for state in self._supervisor.snapshot():
            if state.pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(state.pid, signal.SIGKILL)


def component_pid(supervisor: Supervisor, name: str) -> int | None:
    """The current pid of the started component ``name``, or ``None``."""
    return next((s.pid for s in supervisor.snapshot() if s.name == name), None)


def running(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
