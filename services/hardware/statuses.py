"""The hardware domain's errors as the gRPC statuses the proto promises (handlers and agent).

Malformed input is INVALID_ARGUMENT naming the field; a path outside the roots or protected
PERMISSION_DENIED; an unknown quarantine entry NOT_FOUND; a file that changed under a change,
or a refusal in this state, FAILED_PRECONDITION; a stopped walk CANCELLED.
"""

from __future__ import annotations

import structlog

from sutazai.runtime.faults import (
    RpcStatusError,
    cancelled,
    failed_precondition,
    internal,
    invalid_argument,
    not_found,
    permission_denied,
    unavailable,
)
from sutazai.services.hardware.errors import (
    Cancelled,
    HardwareError,
    InvalidArgumentError,
    PathRefusedError,
    PreconditionError,
)

log = structlog.get_logger(__name__)

DOMAIN = "sutazai.hardware"
"""``google.rpc.ErrorInfo.domain`` of the service's refusals."""


def fault_of(exc: HardwareError) -> RpcStatusError:
    """The status a domain error stands for."""
    name = type(exc).__name__
    if isinstance(exc, InvalidArgumentError):
        return invalid_argument({exc.field: exc.reason})
    if isinstance(exc, PathRefusedError):
        return permission_denied(exc.reason, reason="PATH_REFUSED", domain=DOMAIN)
    if isinstance(exc, PreconditionError):
        return failed_precondition(str(exc))
    if isinstance(exc, Cancelled):
        return cancelled("the operation was cancelled")
    if name == "QuarantineEntryNotFoundError":
        return not_found("quarantine entry", str(getattr(exc, "entry_id", "")) or str(exc))
    if name == "QuarantineEntryBusyError":
        return unavailable(str(exc), 1.0)
    if name in {"FileChangedError", "RestoreRefusedError"}:
        return failed_precondition(str(exc))
    log.error("hardware.unmapped_error", error_type=name, exc_info=exc)
    return internal("the operation failed unexpectedly")
