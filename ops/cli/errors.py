"""The CLI's exception tree: an expected failure, printed as one line, never a traceback.

CliError   root: a command cannot do what was asked (mesh not running, unknown service, …)

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""

from __future__ import annotations


class CliError(Exception):
    """Root of every error raised by :mod:`sutazai.ops.cli`.

    The command ends with :attr:`exit_code` after the message is printed.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
