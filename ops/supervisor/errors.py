"""The supervisor's exception tree: every exception :mod:`sutazai.ops.supervisor` defines.

SupervisorError           root of every error raised by the supervisor
├── StartupError          errors: a component did not become healthy, so the mesh did not start
├── AlreadyRunningError   errors: another supervisor owns the state directory
├── LaunchError           errors: a binary or a preparation step (initdb, config rendering) failed
└── ProbeError            probes: a health probe got an answer, and it says "unhealthy"

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""

from __future__ import annotations


class SupervisorError(Exception):
    """Root of every error raised by :mod:`sutazai.ops.supervisor`."""


class StartupError(SupervisorError):
    """A component did not become healthy within its start timeout."""

    def __init__(self, component: str, reason: str, log_tail: str = "") -> None:
        message = f"{component} did not become healthy: {reason}"
        if log_tail:
            message += f"\n--- last lines of its log ---\n{log_tail}"
        super().__init__(message)
        self.component = component
        self.reason = reason
        self.log_tail = log_tail


class AlreadyRunningError(SupervisorError):
    """Another supervisor holds the state directory's lock."""

    def __init__(self, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "unknown pid"
        super().__init__(f"a supervisor is already running for this state directory ({who})")
        self.pid = pid


class LaunchError(SupervisorError):
    """A component could not be prepared or launched."""
