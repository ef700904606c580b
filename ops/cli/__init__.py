"""The ``sutazai`` command line: run, inspect and stop the mesh; administer and sign in users."""

from __future__ import annotations

import os
import sys

# Before anything imports grpc: this process is the supervisor, and it forks every child with a
# pre-exec hook (the parent-death signal). With gRPC's fork support on (grpcio's default
# build), its at-fork handlers restart gRPC's poller threads in the child between fork and exec;
# the child then closes its descriptors under them and aborts ("epoll_wait error: Bad file
# descriptor", seen as an Envoy or service that dies with SIGABRT before it starts). Nothing in
# the mesh uses gRPC across a fork, so it is off.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from rich.text import Text

from sutazai.ops.cli.app import app
from sutazai.ops.cli.console import err
from sutazai.ops.cli.errors import CliError
from sutazai.ops.supervisor.errors import SupervisorError
from sutazai.runtime.errors import MeshRuntimeError


def main() -> None:
    """Entry point of the ``sutazai`` console script.

    Expected failures (mesh not running, secrets missing, a component that does not start)
    end with a message on stderr and a non-zero exit status, never a traceback.
    """
    try:
        app()
    except (CliError, SupervisorError, MeshRuntimeError) as exc:
        # Text, not markup: messages quote log lines that may contain brackets.
        err.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
        sys.exit(exc.exit_code if isinstance(exc, CliError) else 1)
    except KeyboardInterrupt:
        # Ctrl-C before a command installed its own handling (e.g. during `status --wait`).
        sys.exit(130)


__all__ = ["app", "main"]
