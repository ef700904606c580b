"""Log lines of the mesh's components: their level, whether they match a filter, how long.

Pure functions over text: each component writes its own format (structlog JSON from the mesh's
Python processes, NATS, Envoy, PostgreSQL, Redis, the supervisor's own lines, gRPC's C core)
and :func:`level_of` maps each to one scale. Reading the files is :mod:`.log_reader`.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Final


class Level(enum.IntEnum):
    """A line's severity, ordered; ``NONE`` when the line names none."""

    NONE = 0
    DEBUG = 1
    INFO = 2
    WARNING = 3
    ERROR = 4
    CRITICAL = 5


_WORDS: Final = {
    "trace": Level.DEBUG,
    "debug": Level.DEBUG,
    "info": Level.INFO,
    "notice": Level.INFO,
    "warn": Level.WARNING,
    "warning": Level.WARNING,
    "error": Level.ERROR,
    "exception": Level.ERROR,
    "critical": Level.CRITICAL,
    "fatal": Level.CRITICAL,
}
_NATS: Final = {
    "TRC": Level.DEBUG,
    "DBG": Level.DEBUG,
    "INF": Level.INFO,
    "WRN": Level.WARNING,
    "ERR": Level.ERROR,
    "FTL": Level.CRITICAL,
}
_POSTGRES: Final = {
    "LOG": Level.INFO,
    "INFO": Level.INFO,
    "NOTICE": Level.INFO,
    "WARNING": Level.WARNING,
    "ERROR": Level.ERROR,
    "FATAL": Level.CRITICAL,
    "PANIC": Level.CRITICAL,
}
_REDIS: Final = {".": Level.DEBUG, "-": Level.DEBUG, "*": Level.INFO, "#": Level.WARNING}
_GLOG: Final = {"I": Level.INFO, "W": Level.WARNING, "E": Level.ERROR, "F": Level.CRITICAL}

# `[2026-11-30 15:56:33.138][24462][warning][main] ...`
_ENVOY = re.compile(r"^\[[^\]]*\]\[\d+\]\[([a-z]+)\]")
# `[24407] 2026/11/30 15:44:42.620085 [WRN] ...`
_NATS_LINE = re.compile(r"^\[\d+\] \S+ \S+ \[([A-Z]{3})\] ")
# `2026-11-30 15:44:43.591 UTC [24429] LOG:  ...`, `... [24429] DEBUG2:  ...`
_POSTGRES_LINE = re.compile(r"^\S+ \S+ \S+ \[\d+\] ([A-Z]+?)([1-5])?:  ")
# `24440:M 30 Nov 2026 15:44:43.874 * ...`
_REDIS_LINE = re.compile(r"^\d+:[XCSM] \d{1,2} [A-Z][a-z]{2} \d{4} [\d:.]+ ([.\-*#]) ")
# The supervisor's console lines: `2026-11-30T15:44:42.598117 [info     ] component.starting`
_CONSOLE = re.compile(r"^\d{4}-\d\d-\d\dT\S+ \[([a-z]+) *\] ")
# What the supervisor writes into a component's log before starting it.
_SUPERVISOR_MARK = re.compile(r"^--- \S+ supervisor ")
# gRPC's C core (glog): `I1130 15:44:46.767696   24405 fork_posix.cc:71] ...`
_GLOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")


def level_of(line: str) -> Level:
    """The level a log line states, in any of the mesh's formats; ``NONE`` if it states none."""
    if line.startswith("{"):
        return _json_level(line)
    for pattern, table in (
        (_NATS_LINE, _NATS),
        (_REDIS_LINE, _REDIS),
        (_GLOG_LINE, _GLOG),
    ):
        match = pattern.match(line)
        if match:
            return table.get(match.group(1), Level.NONE)
    match = _POSTGRES_LINE.match(line)
    if match:
        if match.group(1) == "DEBUG":
            return Level.DEBUG
        return _POSTGRES.get(match.group(1), Level.NONE)
    for pattern in (_ENVOY, _CONSOLE):
        match = pattern.match(line)
        if match:
            return _WORDS.get(match.group(1), Level.NONE)
    if _SUPERVISOR_MARK.match(line):
        return Level.INFO
    return Level.NONE


def _json_level(line: str) -> Level:
    try:
        record = json.loads(line)
    except ValueError:
        return Level.NONE
    level = record.get("level") if isinstance(record, dict) else None
    return _WORDS.get(level.lower(), Level.NONE) if isinstance(level, str) else Level.NONE


MAX_COMPONENT_LENGTH: Final = 64
_COMPONENT = re.compile(r"[A-Za-z0-9._-]+")


def component_problem(name: str) -> str | None:
    """Why ``name`` cannot name a log (it would leave the logs directory, or is no name); else None.

    Allowed: 1 to 64 of ``A-Z a-z 0-9 . _ -``, not starting with a dot. That rules out path
    separators, NUL, ``.`` and ``..`` and hidden files.
    """
    if not 0 < len(name) <= MAX_COMPONENT_LENGTH:
        return f"must be 1 to {MAX_COMPONENT_LENGTH} characters"
    if not _COMPONENT.fullmatch(name):
        return "may hold only letters, digits, '.', '_' and '-'"
    if name.startswith("."):
        return "must not start with '.'"
    return None


MAX_LINE_BYTES: Final = 8192
"""Longest line sent; a longer one is cut and marked (Envoy's JSON access lines can be long,
a component's stray output longer)."""


def bounded_text(raw: bytes, dropped: int = 0) -> str:
    """A raw line as text: invalid UTF-8 replaced, cut at :data:`MAX_LINE_BYTES` with a marker.

    ``dropped`` counts bytes of the line the reader already left out (see the marker).
    """
    if len(raw) <= MAX_LINE_BYTES and not dropped:
        return raw.decode("utf-8", errors="replace")
    kept = raw[:MAX_LINE_BYTES].decode("utf-8", errors="ignore")
    return f"{kept} …[{len(raw) + dropped - len(raw[:MAX_LINE_BYTES])} more bytes]"


MAX_CONTAINS: Final = 200
MAX_LINES: Final = 1000
DEFAULT_LINES: Final = 100


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line as sent: its (bounded) text and level."""

    text: str
    level: Level


@dataclass(frozen=True, slots=True)
class LineFilter:
    """Which lines a reader wants: at least ``min_level`` and containing ``contains``."""

    min_level: Level = Level.NONE
    contains: str = ""

    def __post_init__(self) -> None:
        # Compared case-insensitively; folded once here, not per line.
        object.__setattr__(self, "contains", self.contains.casefold())

    def accept(self, raw: bytes, dropped: int = 0) -> LogLine | None:
        """The line, if it passes; lines without a level pass only when no level is asked for.

        ``dropped``: bytes of an over-long line the reader did not keep (shown in the marker).
        """
        text = raw.decode("utf-8", errors="replace")
        if self.contains and self.contains not in text.casefold():
            return None
        level = level_of(text)
        if self.min_level is not Level.NONE and level < self.min_level:
            return None
        return LogLine(bounded_text(raw, dropped), level)
