"""An instance's identity across restarts: the id its slot was given, and its socket path.

A restarted instance takes over its dead predecessor's socket, never a live server's.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sutazai.runtime.server import ServiceHost
from sutazai.runtime.settings import MeshSettings, ServiceSettings
from sutazai.runtime.sockets import claim_socket


def host(tmp_path: Path, settings: ServiceSettings) -> ServiceHost:
    return ServiceHost(
        name="auth",
        mesh=MeshSettings(state_dir=tmp_path),
        settings=settings,
        servicers=[],
        registry=None,
    )


def test_the_host_takes_its_slots_id_else_a_fresh_one(tmp_path: Path) -> None:
    given = host(tmp_path, ServiceSettings(instance_id="0123456789ab"))
    fresh = [host(tmp_path, ServiceSettings(instance_id=None)) for _ in range(2)]

    assert given.instance_id == "0123456789ab"
    assert fresh[0].instance_id != fresh[1].instance_id
    assert all(len(h.instance_id) == 12 for h in fresh)


def bound(path: Path, *, listening: bool) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    if listening:
        sock.listen()
    return sock


def test_a_dead_servers_socket_file_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "auth.0123456789ab.sock"
    bound(path, listening=True).close()  # the file stays, as after a SIGKILL
    assert path.exists()

    claim_socket(path)

    assert not path.exists()


def test_a_live_servers_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth.0123456789ab.sock"
    with bound(path, listening=True), pytest.raises(OSError, match="in use by a running server"):
        claim_socket(path)
    assert path.exists()


def test_something_else_at_the_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth.0123456789ab.sock"
    path.write_text("not a socket")

    with pytest.raises(OSError, match="not a socket"):
        claim_socket(path)
    assert path.read_text() == "not a socket"


def test_a_free_path_is_left_alone(tmp_path: Path) -> None:
    claim_socket(tmp_path / "nothing.sock")
