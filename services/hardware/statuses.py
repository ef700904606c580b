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
    FileChangedError,
    HardwareError,
    InvalidArgumentError,
    PathRefusedError,
    PreconditionError,
    QuarantineEntryBusyError,
    QuarantineEntryNotFoundError,
    RestoreRefusedError,
)

log = structlog.get_logger(__name__)

DOMAIN = "sutazai.hardware"
"""``google.rpc.ErrorInfo.domain`` of the service's refusals."""
BUSY_RETRY_SECONDS = 1.0
"""When to try again after a quarantine entry was busy (another change holds it briefly)."""


def fault_of(exc: HardwareError) -> RpcStatusError:
    """The status a domain error stands for."""
    if isinstance(exc, InvalidArgumentError):
        return invalid_argument({exc.field: exc.reason})
    if isinstance(exc, PathRefusedError):
        return permission_denied(exc.reason, reason="PATH_REFUSED", domain=DOMAIN)
    if isinstance(exc, QuarantineEntryNotFoundError):
        return not_found("quarantine entry", exc.entry_id)
    if isinstance(exc, PreconditionError | FileChangedError | RestoreRefusedError):
        return failed_precondition(str(exc))
    if isinstance(exc, QuarantineEntryBusyError):
        return unavailable(str(exc), BUSY_RETRY_SECONDS)
    if isinstance(exc, Cancelled):
        return cancelled("the operation was cancelled")
    log.error("hardware.unmapped_error", error_type=type(exc).__name__, exc_info=exc)
    return internal("the operation failed unexpectedly")
