"""The auth service's refusals, each with a precise gRPC status (see :mod:`runtime.faults`)."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2

from sutazai.services.runtime.faults import RpcStatusError

INVALID_CREDENTIALS = "invalid username or password"
"""The one answer to every failed sign-in: wrong password, unknown, locked or inactive."""


def invalid_credentials() -> RpcStatusError:
    """UNAUTHENTICATED for a failed sign-in, saying nothing about whether the account exists."""
    return RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, INVALID_CREDENTIALS)


def unauthenticated(message: str) -> RpcStatusError:
    """UNAUTHENTICATED: a refresh token or account that no longer signs anyone in."""
    return RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, message)


def already_exists(field: str, value: str) -> RpcStatusError:
    """ALREADY_EXISTS naming the taken field (``ErrorInfo.metadata["field"]``) for clients."""
    info = error_details_pb2.ErrorInfo(
        reason=f"{field.upper()}_TAKEN", domain="sutazai.auth", metadata={"field": field}
    )
    resource = error_details_pb2.ResourceInfo(
        resource_type="user", resource_name=value, description=f"{field} is taken"
    )
    return RpcStatusError(
        grpc.StatusCode.ALREADY_EXISTS, f"{field} {value!r} is already taken", [info, resource]
    )


def failed_precondition(message: str) -> RpcStatusError:
    """FAILED_PRECONDITION: the call is well-formed but not allowed in this state."""
    return RpcStatusError(grpc.StatusCode.FAILED_PRECONDITION, message)
