"""The two test tiers, and the guard that keeps servers out of the unit tier.

- **unit** (``make test-unit``, ``pytest -m "not integration"``): in-process, no server. A unit
  test opens no listening server (``grpc.aio.server``, ``grpc.server``,
  ``asyncio.start_server``) and starts no child process from the project's environment (the
  server binaries NATS, Envoy, PostgreSQL, Redis; the Python interpreter that would run the
  gateway, a service, the CLI or a stand-in).
- **integration** (the ``integration`` marker): everything else. A test is marked by
  :func:`mark_integration` when it uses, even indirectly, one of :data:`SERVER_FIXTURES`, and by
  ``pytestmark = pytest.mark.integration`` when its module starts servers itself.

:func:`install_guards` makes the split enforceable: while a test without the marker is being
set up or run, each of those doors calls :func:`pytest.fail` naming what was started, so a
mis-marked test fails instead of quietly starting servers in the inner loop. Async tests and
fixtures see the verdict through a context variable, which pytest-asyncio copies into each
test's and fixture's task (and those tasks into the tasks they create).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import grpc
import pytest

INTEGRATION = "integration"

SERVER_FIXTURES = frozenset(
    {
        # tests/harness/fixtures.py: the session mesh, layer by layer
        "infrastructure",
        "mesh_settings",
        "gateway",
        "envoy",
        "mesh_services",
        # tests/gateway/conftest.py: a NATS of the module's own
        "nats_url",
        # tests/polyglot/test_ts_agent.py: a NATS with an agent principal, for the TypeScript agent
        "polyglot_nats",
        # tests/harness/llama.py: a real llama_cpp.server (OpenAI-compatible backend)
        "openai_backend",
        # tests/tasks/test_chaos_e2e.py: the chaos agent's instances on the session mesh
        "chaos",
        # tests/tasks/test_resilience_e2e.py: a whole mesh of the module's own
        "restart_mesh",
    }
)
"""Fixtures that start servers (or stand on ones that do): a test using any is integration."""

_servers_allowed: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "servers_allowed", default=None
)
"""Whether the test being set up or run may start servers; ``None`` outside those phases."""

_ENVIRONMENT = Path(sys.prefix)
"""The project's virtual environment: its binaries are the mesh's servers and interpreter."""

P = ParamSpec("P")
R = TypeVar("R")


def mark_integration(items: Iterable[pytest.Item]) -> None:
    """Add the ``integration`` marker to every item that uses a server-starting fixture."""
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(INTEGRATION)


@contextlib.contextmanager
def tier_of(item: pytest.Item) -> Iterator[None]:
    """Within this block the guards judge by ``item``'s marker."""
    token = _servers_allowed.set(item.get_closest_marker(INTEGRATION) is not None)
    try:
        yield
    finally:
        _servers_allowed.reset(token)


def require_integration(what: str) -> None:
    """Fail the running test if it is not marked ``integration``; ``what`` says what it started."""
    if _servers_allowed.get() is False:
        pytest.fail(
            f"{what} started by a test not marked 'integration'. The unit tier starts no "
            "server: use a server fixture of tests/harness, or mark the module "
            "(pytestmark = pytest.mark.integration).",
            pytrace=False,
        )


def install_guards() -> None:
    """Put :func:`require_integration` in front of every way a test can start a server."""
    grpc.aio.server = _guarded(grpc.aio.server, "a grpc.aio server")
    grpc.server = _guarded(grpc.server, "a grpc server")
    asyncio.start_server = _guarded(asyncio.start_server, "an asyncio TCP server")
    asyncio.start_unix_server = _guarded(asyncio.start_unix_server, "an asyncio Unix server")
    # asyncio's subprocesses and subprocess.run go through Popen too.
    start = subprocess.Popen.__init__

    @functools.wraps(start)
    def guarded_start(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        program = _program(args, kwargs.get("executable"))
        if program is not None:
            require_integration(f"the child process {program}")
        start(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = guarded_start  # type: ignore[method-assign]


def _guarded(function: Callable[P, R], what: str) -> Callable[P, R]:
    @functools.wraps(function)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        require_integration(what)
        return function(*args, **kwargs)

    return guarded


def _program(args: Any, executable: Any) -> Path | None:
    """The program a Popen call runs, if it is one of the project's environment."""
    if executable is None:
        first = args if isinstance(args, str | bytes | Path) else next(iter(args), None)
        if first is None:
            return None
        executable = first
    name = executable.decode() if isinstance(executable, bytes) else str(executable)
    path = Path(shutil.which(name) or name).absolute()
    return path if path.is_relative_to(_ENVIRONMENT) else None
