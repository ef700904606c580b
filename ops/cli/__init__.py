"""The ``sutazai`` command line: run, inspect and stop the mesh; administer and sign in users."""

from __future__ import annotations

import sys

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
