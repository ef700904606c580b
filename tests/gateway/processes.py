"""Starting and stopping the real server binaries the gateway tests run."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

BIN = Path(sys.executable).parent
ENVOY = BIN / "envoy"
NATS_SERVER = BIN / "nats-server"


def start_process(
    argv: Sequence[str],
    *,
    log: Path,
    stdout: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stderr (and stdout, unless ``stdout`` names a file) in ``log``."""
    with log.open("ab") as errors, (stdout or log).open("ab") as output:
        return subprocess.Popen(argv, stdout=output, stderr=errors, env=env)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def tcp_accepting(port: int, process: subprocess.Popen[bytes]) -> bool:
    """Whether 127.0.0.1:``port`` accepts connections; fails fast if ``process`` died."""
    if process.poll() is not None:
        raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def read_log(path: Path) -> str:
    """A process's log so far, for assertion messages."""
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
