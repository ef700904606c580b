"""The local supervisor behind ``sutazai up``.

It runs each part of the mesh as a real child process (NATS, PostgreSQL, Redis, the gateway,
Envoy, then the services of ``deploy/mesh.toml``), in health-gated order, restarts crashed
children with capped exponential backoff, and stops everything in reverse order. Any dependency
configured as external is probed instead of started.
"""

from sutazai.ops.supervisor.backoff import RestartPolicy
from sutazai.ops.supervisor.errors import (
    AlreadyRunningError,
    LaunchError,
    StartupError,
    SupervisorError,
)
from sutazai.ops.supervisor.spec import ComponentSpec, Launch, Probe
from sutazai.ops.supervisor.supervisor import ComponentState, Supervisor

__all__ = [
    "AlreadyRunningError",
    "ComponentSpec",
    "ComponentState",
    "Launch",
    "LaunchError",
    "Probe",
    "RestartPolicy",
    "StartupError",
    "Supervisor",
    "SupervisorError",
]
