"""Where the CLI writes: results to stdout, diagnostics to stderr."""

from __future__ import annotations

from rich.console import Console

# A file or pipe has no width to fit, and 80 columns would fold table rows; a terminal's own
# width (or $COLUMNS) still wins.
_UNBOUNDED = 200


def _stdout() -> Console:
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=_UNBOUNDED)


out = _stdout()
err = Console(stderr=True, highlight=False)
