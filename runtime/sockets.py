"""The mesh's Unix sockets: Envoy admin, the gateway, and each service instance.

They live in one run directory (``<state dir>/run``, mode 0700), so only the mesh's own user
can connect: another local user cannot reach Envoy's admin interface, the gateway's ADS or a
service's socket (where the client address Envoy forwards is trusted). Each socket is also
made 0600 itself.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Final

import httpx

from sutazai.runtime.errors import ConfigurationError

RUN_DIR_MODE: Final = 0o700
SOCKET_MODE: Final = 0o600
MAX_SOCKET_PATH: Final = 107
"""``sun_path`` holds 108 bytes on Linux, one of them the terminating NUL."""
ENVOY_ADMIN_BASE_URL: Final = "http://envoy"
"""Base URL of admin requests over its socket (the host part only fills the Host header)."""


def prepare_run_dir(run_dir: Path) -> Path:
    """Create ``run_dir`` (and parents) if missing and make it 0700 whatever it was before.

    Raises:
        ConfigurationError: it exists but belongs to another user, or cannot be made.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True, mode=RUN_DIR_MODE)
        info = run_dir.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise ConfigurationError(f"{run_dir} is not a directory owned by this user")
        if stat.S_IMODE(info.st_mode) != RUN_DIR_MODE:
            os.chmod(run_dir, RUN_DIR_MODE)
    except OSError as exc:
        raise ConfigurationError(f"cannot prepare the run directory {run_dir}: {exc}") from exc
    return run_dir


def checked_socket_path(path: Path) -> Path:
    """``path`` if a Unix socket can be bound there.

    Raises:
        ConfigurationError: the path is too long for a socket address (move the state dir).
    """
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ConfigurationError(
            f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
            "choose a shorter state directory (SUTAZAI_STATE_DIR)"
        )
    return path


def grpc_target(path: Path) -> str:
    """The gRPC address of a Unix socket (``unix:/abs/path``), to bind or to dial."""
    return f"unix:{path.absolute()}"


def restrict_socket(path: Path) -> None:
    """Make a bound socket file 0600 (the 0700 directory already keeps others out)."""
    os.chmod(path, SOCKET_MODE)


def remove_socket(path: Path) -> None:
    """Delete a socket file left by a server that stopped; a missing file is fine."""
    path.unlink(missing_ok=True)


def claim_socket(path: Path) -> None:
    """Make ``path`` free to bind: remove a dead server's socket file, refuse a live one.

    Raises:
        OSError: a server still accepts connections there, or the path is not a socket.
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        # Nobody listens: the file was left by a process that died without cleaning up.
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise OSError(f"{path} is in use by a running server")


def instance_socket(run_dir: Path, service: str, instance_id: str) -> Path:
    """Where an instance listens: ``<run dir>/<service>.<instance id>.sock`` (its registry key).

    The gateway routes only to this exact path for the key an instance registered under.
    """
    return run_dir / f"{service}.{instance_id}.sock"


def instance_http_socket(run_dir: Path, service: str, instance_id: str) -> Path:
    """Where an instance serves its service's HTTP prefixes: ``<run dir>/<key>.http.sock``.

    Like :func:`instance_socket`, the only path the gateway accepts for that registry key.
    """
    return run_dir / f"{service}.{instance_id}.http.sock"


def is_unix_peer(peer: str) -> bool:
    """Whether a grpc ``context.peer()`` is a Unix-socket client (``unix:…``)."""
    return peer.startswith("unix:")


def envoy_admin_client(socket: Path, *, timeout: float = 2.0) -> httpx.AsyncClient:
    """An HTTP client of Envoy's admin interface over its Unix socket.

    Request paths are relative (``await client.get("/ready")``). Proxy variables are ignored:
    the request never leaves the host.
    """
    return httpx.AsyncClient(
        base_url=ENVOY_ADMIN_BASE_URL,
        transport=httpx.AsyncHTTPTransport(uds=str(socket)),
        timeout=timeout,
        trust_env=False,
    )
