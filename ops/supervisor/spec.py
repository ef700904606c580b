"""What the supervisor needs to know to run (or just probe) one component."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Probe = Callable[[int | None], Awaitable[None]]
"""Checks a component once; returns when healthy, raises (any exception) when not.

It receives the pid of the supervised process (``None`` for an external component), so a probe
can tell this process apart from another instance of the same service.
"""

Hook = Callable[[], Awaitable[None]]
"""A preparation or bootstrap step; raises :class:`~.errors.LaunchError` on failure."""


async def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start the process of a component."""

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path | None = None
    user: str | None = None
    """Run as this system user (the supervisor must be root); ``None`` keeps the current one."""
    stop_signal: signal.Signals = signal.SIGTERM
    """The signal that asks for a graceful shutdown (PostgreSQL's fast shutdown is SIGINT)."""
    stop_timeout: float = 15.0
    """How long a graceful shutdown may take before the process group is killed."""


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    """One component of the mesh: a supervised child process, or an external server.

    The supervisor runs :attr:`prepare`, starts :attr:`launch` (unless external), polls
    :attr:`probe` until it succeeds, then runs :attr:`bootstrap` once; only then does it start the
    next component. ``prepare`` runs again before every restart.
    """

    name: str
    probe: Probe
    launch: Launch | None = None
    """``None`` marks an external component: it is probed, never started."""
    prepare: Hook = field(default=_nothing)
    bootstrap: Hook = field(default=_nothing)
    start_timeout: float = 30.0
    """Seconds from launch until the component must be healthy."""
    probe_interval: float = 0.1

    @property
    def external(self) -> bool:
        """Whether the component is run by someone else and only probed."""
        return self.launch is None
