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
from google.protobuf.message import Message
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
        packed = []
        for detail in self.details:
            holder = any_pb2.Any()
            holder.Pack(detail)
            packed.append(holder)
        proto = status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=packed
        )
        return rpc_status.to_status(proto)


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


def resource_exhausted(message: str, retry_after_seconds: float) -> RpcStatusError:
    """RESOURCE_EXHAUSTED with a ``google.rpc.RetryInfo`` saying when to try again."""
    return RpcStatusError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, message, [_retry_info(retry_after_seconds)]
    )


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


def internal(message: str) -> RpcStatusError:
    """INTERNAL: an unexpected failure; ``message`` must not leak what went wrong."""
    return RpcStatusError(grpc.StatusCode.INTERNAL, message)


def _retry_info(retry_after_seconds: float) -> error_details_pb2.RetryInfo:
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromNanoseconds(int(retry_after_seconds * 1e9))
    return retry
