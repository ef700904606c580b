"""The auth service's refusals, each with a precise gRPC status (see :mod:`runtime.faults`)."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2

from sutazai.runtime.faults import RpcStatusError

INVALID_CREDENTIALS = "invalid username or password"
"""The one answer to every failed sign-in: wrong password, unknown, locked or inactive."""


def invalid_credentials() -> RpcStatusError:
    """UNAUTHENTICATED for a failed sign-in, saying nothing about whether the account exists."""
    return RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, INVALID_CREDENTIALS)


def unauthenticated(message: str) -> RpcStatusError:
    """UNAUTHENTICATED: a refresh token or account that no longer signs anyone in."""
    return RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, message)


ACCOUNT_TAKEN = "that username or e-mail address cannot be registered"
"""The one answer to a taken username or e-mail: it must not tell which (e-mails are private)."""


def account_taken() -> RpcStatusError:
    """ALREADY_EXISTS for a registration whose username or e-mail address is in use."""
    info = error_details_pb2.ErrorInfo(reason="ACCOUNT_EXISTS", domain="sutazai.auth")
    return RpcStatusError(grpc.StatusCode.ALREADY_EXISTS, ACCOUNT_TAKEN, [info])


def failed_precondition(message: str) -> RpcStatusError:
    """FAILED_PRECONDITION: the call is well-formed but not allowed in this state."""
    return RpcStatusError(grpc.StatusCode.FAILED_PRECONDITION, message)
