"""The hardware service's exception tree, each mapped to one gRPC status by the handlers.

HardwareError                 root of every error raised by :mod:`sutazai.services.hardware`
├── InvalidArgumentError      a request field is malformed or out of range (INVALID_ARGUMENT)
│   └── InvalidPathError      paths: a path field is malformed, missing or of the wrong kind
├── PathRefusedError          paths: outside the allowed roots, or protected (PERMISSION_DENIED)
├── QuarantineEntryNotFoundError  quarantine: no entry has that id (NOT_FOUND)
├── QuarantineEntryBusyError  quarantine: another thread or process holds the entry
├── RestoreRefusedError       quarantine: one entry cannot go back (its RestoreResult.error)
├── FileChangedError          quarantine, cleanup: a file changed while it was being changed
├── Cancelled                 walk: the caller's cancel token was set (CANCELLED)
└── PreconditionError         processes: refused in this state, e.g. as root (FAILED_PRECONDITION)

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""

from __future__ import annotations


class HardwareError(Exception):
    """Root of every error raised by :mod:`sutazai.services.hardware`."""


class InvalidArgumentError(HardwareError):
    """One request field is malformed or out of range: INVALID_ARGUMENT with a field violation.

    ``field`` is the request's field path (``"limits.max_depth"``); ``reason`` says what is
    wrong with it, in words safe to send back to the caller.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidPathError(InvalidArgumentError):
    """A path field is malformed, names nothing, or names the wrong kind of file.

    Malformed: NUL or control characters, not UTF-8, too long, percent-encoded or look-alike
    traversal.
    """


class PathRefusedError(HardwareError):
    """A well-formed path the service must not touch: PERMISSION_DENIED.

    Outside every allowed root once symlinks and ``..`` are resolved, under a protected path
    or name, or inside the mesh's state directory. The reason never names where a symlink
    points, so a refusal reveals nothing about the file system outside the roots.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Cancelled(HardwareError):  # noqa: N818 (the brief's name: it is an outcome, not a fault)
    """The operation stopped because its cancel token was set.

    The RPC was cancelled or its deadline passed: CANCELLED (or DEADLINE_EXCEEDED).
    """


class QuarantineEntryNotFoundError(HardwareError):
    """No quarantine entry has this id (NOT_FOUND); ``entry_id`` is the canonical UUID."""

    def __init__(self, entry_id: str) -> None:
        super().__init__(f"no quarantine entry {entry_id}")
        self.entry_id = entry_id


class FileChangedError(HardwareError):
    """A file was replaced or written while it was being changed, and is left as it is.

    Reported as one change's error in a report (ABORTED, should it ever reach a caller).
    """


class QuarantineEntryBusyError(HardwareError):
    """Another thread or process is moving, restoring or purging this quarantine entry."""


class RestoreRefusedError(HardwareError):
    """One quarantine entry cannot be restored; nothing was changed.

    Its original place is taken or no longer allowed, or its data does not match its hash.
    The message is that entry's error in its RestoreResult.
    """


class PreconditionError(HardwareError):
    """The request is well-formed but refused in this state (FAILED_PRECONDITION)."""
