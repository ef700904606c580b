"""Every gRPC status the mesh answers with, and its rich details, is built here.

Handlers, the guard and the gateway raise what the constructors below return (an
:class:`RpcStatusError`); the server interceptor turns it into a ``google.rpc.Status`` with
details, which Envoy's transcoder renders as JSON. Building statuses in one module keeps each
code's details the same wherever it is raised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from sutazai.runtime.errors import MeshRuntimeError


class RpcStatusError(MeshRuntimeError):
    """A failure with the gRPC status code and details to report to the caller."""

    def __init__(
        self, code: grpc.StatusCode, message: str, details: Sequence[Message] = ()
    ) -> None:
        message = _bounded(message)
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = tuple(details)

    def to_status(self) -> grpc.Status:
        """The rich status (``grpc-status-details-bin``) for this fault."""
        return rpc_status.to_status(self.to_proto())

    def to_proto(self) -> status_pb2.Status:
        """The fault as a ``google.rpc.Status`` message.

        For a stream's ``error`` event, or one item's outcome in a batch.
        """
        packed = []
        for detail in self.details:
            holder = any_pb2.Any()
            holder.Pack(detail)
            packed.append(holder)
        return status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=packed
        )


MAX_TEXT = 512
"""Characters of a message or description sent back: errors may echo what the caller sent, and
a status travels in HTTP/2 headers, whose size Envoy caps (a huge echo would become a 502)."""


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_TEXT else f"{text[: MAX_TEXT - 1]}…"


def invalid_argument(violations: Mapping[str, str], message: str = "") -> RpcStatusError:
    """INVALID_ARGUMENT with one ``google.rpc.BadRequest`` field violation per field."""
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=_bounded(field), description=_bounded(description)
            )
            for field, description in violations.items()
        ]
    )
    summary = message or "; ".join(f"{f}: {d}" for f, d in violations.items())
    return RpcStatusError(grpc.StatusCode.INVALID_ARGUMENT, summary, [bad_request])


def not_found(resource_type: str, name: str) -> RpcStatusError:
    """NOT_FOUND with a ``google.rpc.ResourceInfo`` detail."""
    info = error_details_pb2.ResourceInfo(resource_type=resource_type, resource_name=name)
    return RpcStatusError(grpc.StatusCode.NOT_FOUND, f"{resource_type} {name!r} not found", [info])


def resource_exhausted(
    message: str,
    retry_after_seconds: float,
    *,
    reason: str = "",
    domain: str = "sutazai",
    quota: Mapping[str, str] | None = None,
) -> RpcStatusError:
    """RESOURCE_EXHAUSTED with a ``google.rpc.RetryInfo`` saying when to try again.

    With ``reason``, also a ``google.rpc.ErrorInfo`` (a client tells refusals apart by it);
    with ``quota``, a ``google.rpc.QuotaFailure`` with one violation per subject (what ran
    out) and its description.
    """
    details: list[Message] = [_retry_info(retry_after_seconds)]
    if reason:
        details.append(error_details_pb2.ErrorInfo(reason=reason, domain=domain))
    if quota:
        details.append(
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=_bounded(subject), description=_bounded(description)
                    )
                    for subject, description in quota.items()
                ]
            )
        )
    return RpcStatusError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, details)


def unauthenticated(message: str) -> RpcStatusError:
    """UNAUTHENTICATED: no caller, or one whose credentials do not sign anyone in."""
    return RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, message)


def permission_denied(
    message: str, *, reason: str, domain: str, metadata: Mapping[str, str] | None = None
) -> RpcStatusError:
    """PERMISSION_DENIED with a ``google.rpc.ErrorInfo`` a client can act on."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata or {})
    return RpcStatusError(grpc.StatusCode.PERMISSION_DENIED, message, [info])


def already_exists(message: str, *, reason: str, domain: str) -> RpcStatusError:
    """ALREADY_EXISTS with a ``google.rpc.ErrorInfo`` naming what conflicted."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=domain)
    return RpcStatusError(grpc.StatusCode.ALREADY_EXISTS, message, [info])


def failed_precondition(message: str) -> RpcStatusError:
    """FAILED_PRECONDITION: the call is well-formed but not allowed in this state."""
    return RpcStatusError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unavailable(message: str, retry_after_seconds: float | None = None) -> RpcStatusError:
    """UNAVAILABLE, optionally with a ``google.rpc.RetryInfo`` hint."""
    details = [] if retry_after_seconds is None else [_retry_info(retry_after_seconds)]
    return RpcStatusError(grpc.StatusCode.UNAVAILABLE, message, details)


def cancelled(message: str) -> RpcStatusError:
    """CANCELLED: the work stopped because the caller (or an operator) cancelled it."""
    return RpcStatusError(grpc.StatusCode.CANCELLED, message)


def deadline_exceeded(message: str) -> RpcStatusError:
    """DEADLINE_EXCEEDED: the caller's deadline left no time to finish (e.g. a batch's item)."""
    return RpcStatusError(grpc.StatusCode.DEADLINE_EXCEEDED, message)


_DETAILS_KEY = "grpc-status-details-bin"
_MAX_RELAYED_DETAILS = 16
_RELAYED_DETAILS: tuple[type[Message], ...] = (
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
    error_details_pb2.ResourceInfo,
    error_details_pb2.ErrorInfo,
    error_details_pb2.QuotaFailure,
)
"""The detail types a relayed status keeps (those :mod:`faults` itself builds)."""


def relayed(error: grpc.aio.AioRpcError) -> RpcStatusError:
    """The status another service of the mesh answered a call with, passed on unchanged.

    A service that calls another (through the edge) answers its own caller with the callee's
    code, message and details (field violations, retry hints), so ``UNAVAILABLE`` stays
    ``UNAVAILABLE`` (HTTP 503) and ``INVALID_ARGUMENT`` keeps naming the field. Only the detail
    types the mesh builds are kept, at most 16; the message is bounded like every other.
    """
    details: list[Message] = []
    for key, value in error.trailing_metadata() or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            break
        for holder in status.details[:_MAX_RELAYED_DETAILS]:
            for kind in _RELAYED_DETAILS:
                if holder.Is(kind.DESCRIPTOR):
                    detail = kind()
                    if holder.Unpack(detail):
                        details.append(detail)
                    break
        break
    code = error.code()
    if code is grpc.StatusCode.OK:  # not a failure at all: never relay it as one
        code = grpc.StatusCode.UNKNOWN
    return RpcStatusError(code, error.details() or code.name, details)


def internal(message: str) -> RpcStatusError:
    """INTERNAL: an unexpected failure; ``message`` must not leak what went wrong."""
    return RpcStatusError(grpc.StatusCode.INTERNAL, message)


def _retry_info(retry_after_seconds: float) -> error_details_pb2.RetryInfo:
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromNanoseconds(int(retry_after_seconds * 1e9))
    return retry
