"""The Hardware screen's optimisations: what each one asks for, checks, and which call makes it.

Pure (no Textual): the parameters form and the screen share it, and the tests check it alone.
Every optimisation is called twice by the screen, first with ``dry_run=True`` (the service
lists exactly what it would change), then, after a confirmation, with the same parameters and
``dry_run=False``. Parameters are checked here before any call, with the service's own bounds
(the service checks them again).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sutazai.hardware.v1 import hardware_service_pb2 as hardware_pb
from sutazai.tui.errors import OptionsError
from sutazai.tui.format import data_size
from sutazai.tui.source import MeshApi

PATH_MAX = 4096
"""Characters of a path (Linux's ``PATH_MAX``)."""
DAYS_MAX = 3650
PATTERNS_MAX = 32
PATTERN_MAX = 255
KEEP_MAX = 50
MIB = 1024 * 1024
MIN_SIZE_MAX_MIB = 1024 * 1024
"""A rotation threshold above 1 TiB is a typo."""


@dataclass(frozen=True, slots=True)
class Params:
    """An optimisation's parameters; zero and empty leave the choice to the service."""

    path: str = ""
    older_than_days: int = 0
    patterns: tuple[str, ...] = ()
    min_size_bytes: int = 0
    keep: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a dry run or a run reported; the resident memory figures of ``ReclaimMemory``."""

    report: hardware_pb.ChangeReport
    rss_before_bytes: int | None = None
    rss_after_bytes: int | None = None


Call = Callable[[MeshApi, Params, bool], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Operation:
    """One optimisation: its key, title, the parameters it takes, what a run does, its call."""

    key: str
    title: str
    fields: frozenset[str]
    effect: str
    """What the real run does, for the confirmation (files can be restored, ...)."""
    call: Call = field(repr=False)


async def _clean(api: MeshApi, params: Params, dry_run: bool) -> Outcome:
    return Outcome(
        await api.clean_files(
            params.path,
            older_than_days=params.older_than_days,
            patterns=list(params.patterns),
            dry_run=dry_run,
        )
    )


async def _dedupe(api: MeshApi, params: Params, dry_run: bool) -> Outcome:
    return Outcome(await api.deduplicate(params.path, dry_run=dry_run))


async def _compress(api: MeshApi, params: Params, dry_run: bool) -> Outcome:
    return Outcome(
        await api.compress_logs(
            params.path, older_than_days=params.older_than_days, dry_run=dry_run
        )
    )


async def _rotate(api: MeshApi, params: Params, dry_run: bool) -> Outcome:
    return Outcome(
        await api.rotate_logs(
            params.path, min_size_bytes=params.min_size_bytes, keep=params.keep, dry_run=dry_run
        )
    )


async def _renice(api: MeshApi, params: Params, dry_run: bool) -> Outcome:
    return Outcome(await api.renice_processes(dry_run=dry_run))


async def _reclaim(api: MeshApi, params: Params, dry_run: bool) -> Outcome:
    reply = await api.reclaim_memory(dry_run=dry_run)
    return Outcome(reply.report, reply.rss_before_bytes, reply.rss_after_bytes)


QUARANTINED = "The files move into the quarantine, from which they can be restored."

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "clean",
        "Clean temp/cache",
        frozenset({"path", "older_than_days", "patterns"}),
        QUARANTINED,
        _clean,
    ),
    Operation(
        "dedupe",
        "Deduplicate",
        frozenset({"path"}),
        f"The newest file of each group stays. {QUARANTINED}",
        _dedupe,
    ),
    Operation(
        "compress",
        "Compress logs",
        frozenset({"path", "older_than_days"}),
        f"Each log is gzipped where that makes it smaller; the originals: {QUARANTINED}",
        _compress,
    ),
    Operation(
        "rotate",
        "Rotate logs",
        frozenset({"path", "min_size_bytes", "keep"}),
        f"Logs are renamed to their next generation; generations beyond the kept ones: "
        f"{QUARANTINED}",
        _rotate,
    ),
    Operation(
        "renice",
        "Renice CPU hogs",
        frozenset(),
        "Their priority is lowered (never a system process, another user's or the mesh's).",
        _renice,
    ),
    Operation(
        "reclaim",
        "Reclaim memory",
        frozenset(),
        "The mesh's own processes collect garbage and return freed heap to the system.",
        _reclaim,
    ),
)
"""Every optimisation, in the order the screen lists them."""
BY_KEY = {operation.key: operation for operation in OPERATIONS}


def describe(operation: Operation, params: Params) -> str:
    """The parameters as the operations table shows them; ``default`` is the service's."""
    parts: list[str] = []
    if "path" in operation.fields:
        parts.append(params.path or "first allowed root")
    if "older_than_days" in operation.fields:
        parts.append(
            f"older than {params.older_than_days} d" if params.older_than_days else "default age"
        )
    if "patterns" in operation.fields:
        parts.append(" ".join(params.patterns) if params.patterns else "any name")
    if "min_size_bytes" in operation.fields:
        parts.append(
            f"from {data_size(params.min_size_bytes)}" if params.min_size_bytes else "default size"
        )
    if "keep" in operation.fields:
        parts.append(f"keep {params.keep}" if params.keep else "default generations")
    return ", ".join(parts) if parts else "no parameters"


def _number(raw: str, name: str, low: int, high: int) -> int:
    text = raw.strip()
    if not text:
        return 0
    if not text.isdigit() or len(text) > 10:
        raise OptionsError(f"{name}: a whole number from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise OptionsError(f"{name}: from {low} to {high}")
    return value


def parse_params(
    operation: Operation,
    *,
    path: str = "",
    older_than_days: str = "",
    patterns: str = "",
    min_size_mib: str = "",
    keep: str = "",
) -> Params:
    """The form's text as :class:`Params` for ``operation``; blank fields take the defaults.

    Raises:
        OptionsError: a value the service would refuse (it checks again).

    """
    fields = operation.fields
    clean_path = path.strip() if "path" in fields else ""
    if len(clean_path) > PATH_MAX or "\x00" in clean_path:
        raise OptionsError(f"path: at most {PATH_MAX} characters, no NUL")
    days = _number(older_than_days, "older than", 1, DAYS_MAX) if "older_than_days" in fields else 0
    names: tuple[str, ...] = ()
    if "patterns" in fields:
        names = tuple(p.strip() for p in patterns.replace(",", " ").split() if p.strip())
        if len(names) > PATTERNS_MAX:
            raise OptionsError(f"patterns: at most {PATTERNS_MAX}")
        for name in names:
            if len(name) > PATTERN_MAX or "/" in name or "\x00" in name:
                raise OptionsError(f"patterns: a name pattern (no '/'), {PATTERN_MAX} at most")
    size = (
        _number(min_size_mib, "min size", 1, MIN_SIZE_MAX_MIB) if "min_size_bytes" in fields else 0
    )
    generations = _number(keep, "keep", 1, KEEP_MAX) if "keep" in fields else 0
    return Params(
        path=clean_path,
        older_than_days=days,
        patterns=names,
        min_size_bytes=size * MIB,
        keep=generations,
    )
