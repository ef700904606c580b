"""The dashboard's notion of now, injected so tests draw the same ages every run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

Clock = Callable[[], datetime]
"""Returns an aware datetime; its time zone is the one times are shown in."""


def local_clock() -> datetime:
    """Now, in the machine's local time zone."""
    return datetime.now().astimezone()
