"""A real OpenAI-compatible server for the inference and chat tests: ``python -m llama_cpp.server``.

It serves the same SmolLM2 GGUF as the embedded backend, under the name
:data:`~tests.harness.mesh.OPENAI_BACKEND_MODEL`, on the port the session mesh's OpenAI-compatible
backend is configured with (``MeshPorts.openai_backend``). Tests may stop and restart it (the
breaker tests do). A harness fixture (not a directory's conftest), so that one session runs one
server whichever test directories use it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sutazai.services.inference.embedded import shipped_model_path
from tests.gateway.processes import read_log, start_process, stop_process, tcp_accepting
from tests.harness.mesh import OPENAI_BACKEND_MODEL, MeshPorts
from tests.harness.waiting import wait_for


class LlamaServer:
    """One ``llama_cpp.server`` process at a fixed port; stoppable and restartable."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.model = OPENAI_BACKEND_MODEL
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        """Start it and wait until it accepts connections."""
        argv = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(shipped_model_path()),
            "--model_alias",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            "1024",
            "--n_threads",
            "1",
        ]
        self._process = start_process(argv, log=self.log)
        process = self._process
        try:
            await wait_for(
                lambda: tcp_accepting(self.port, process),
                timeout=60,
                interval=0.1,
                message="llama_cpp.server accepting",
            )
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"llama_cpp.server did not start:\n{read_log(self.log)}") from exc

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL)."""
        if self._process is not None:
            stop_process(self._process)
            self._process = None


@pytest.fixture(scope="session")
async def openai_backend(mesh_ports: MeshPorts) -> AsyncIterator[LlamaServer]:
    """A running ``llama_cpp.server`` where the session mesh expects its OpenAI backend."""
    with tempfile.TemporaryDirectory(prefix="sutazai-llama-server-") as folder:
        server = LlamaServer(mesh_ports.openai_backend, Path(folder) / "llama-server.log")
        await server.start()
        try:
            yield server
        finally:
            server.stop()
