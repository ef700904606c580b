"""The unit tier cannot start servers: this test is unmarked, so every door refuses it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from tests.harness.tiers import mark_integration

REFUSED = "not marked 'integration'"


async def test_a_unit_test_cannot_open_a_server() -> None:
    with pytest.raises(
        pytest.fail.Exception, match=f"a grpc.aio server started by a test {REFUSED}"
    ):
        grpc.aio.server()
    with pytest.raises(pytest.fail.Exception, match=REFUSED):
        await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)


def test_a_unit_test_cannot_start_the_projects_programs() -> None:
    with pytest.raises(pytest.fail.Exception, match=f"child process .*python.* {REFUSED}"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)


async def test_nor_through_asyncio() -> None:
    with pytest.raises(pytest.fail.Exception, match=REFUSED):
        await asyncio.create_subprocess_exec(Path(sys.executable).parent / "nats-server")


def test_other_programs_are_allowed() -> None:
    assert subprocess.run(["git", "--version"], check=True, capture_output=True).returncode == 0


@dataclass
class _Item:
    fixturenames: list[str]
    markers: list[str] = field(default_factory=list)

    def add_marker(self, name: str) -> None:
        self.markers.append(name)


def test_a_test_standing_on_a_server_fixture_is_marked() -> None:
    # `fixturenames` is the closure: `admin_token` needs `mesh_services`, ..., `infrastructure`.
    on_the_mesh = _Item(["admin_token", "mesh_services", "envoy", "infrastructure", "tmp_path"])
    on_nats = _Item(["nats_client", "nats_url"])
    plain = _Item(["tmp_path"])

    mark_integration([on_the_mesh, on_nats, plain])  # type: ignore[list-item]

    assert on_the_mesh.markers == on_nats.markers == ["integration"]
    assert plain.markers == []
