"""Test harness: real mesh infrastructure on free ports, started by the supervisor's own code.

The fixtures live in :mod:`tests.harness.fixtures` (loaded by ``tests/conftest.py``); the
helpers here are for tests that need their own processes.
"""

from tests.harness.mesh import (
    MeshPorts,
    build_settings,
    component_pid,
    free_ports,
    mesh_agents,
    new_state_dir,
    remove_state_dir,
    running,
    supervised,
)
from tests.harness.waiting import wait_for

__all__ = [
    "MeshPorts",
    "build_settings",
    "component_pid",
    "free_ports",
    "mesh_agents",
    "new_state_dir",
    "remove_state_dir",
    "running",
    "supervised",
    "wait_for",
]
