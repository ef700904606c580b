"""The hardware service's exception tree, each mapped to one gRPC status by the handlers.

HardwareError                 root of every error raised by :mod:`sutazai.services.hardware`
├── InvalidArgumentError      a request field is malformed or out of range (INVALID_ARGUMENT)
│   └── InvalidPathError      paths: a path field is malformed, missing or of the wrong kind
├── PathRefusedError          paths: outside the allowed roots, or protected (PERMISSION_DENIED)
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


class PreconditionError(HardwareError):
    """The request is well-formed but refused in this state (FAILED_PRECONDITION)."""
