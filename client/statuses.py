"""How a gRPC error status becomes a :class:`~sutazai.client.errors.ClientError`.

The mesh sends rich errors (``google.rpc.Status`` in ``grpc-status-details-bin``, built by
``sutazai.runtime.faults``); field violations of a ``google.rpc.BadRequest`` detail become
:attr:`CallFailed.violations` so a form can show each next to its field.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from sutazai.client.errors import CallFailed, ClientError, MeshUnavailable, SessionEnded

_DETAILS_KEY = "grpc-status-details-bin"
_MAX_VIOLATIONS = 64
"""Violations kept from one status: the server bounds them, a hostile peer might not."""
_MAX_TEXT = 512
"""Characters kept of one field name, description or status message, for the same reason."""
_CODES: dict[int, grpc.StatusCode] = {
    code.value[0]: code for code in grpc.StatusCode if code != grpc.StatusCode.OK
}
"""``google.rpc.Code`` numbers (the same as gRPC's) to the status codes, OK excluded."""


def translate(error: grpc.aio.AioRpcError, target: str) -> ClientError:
    """The client error for a failed call through the edge at ``target``."""
    code = error.code()
    details = _bounded(error.details() or "")
    if code == grpc.StatusCode.UNAVAILABLE:
        return MeshUnavailable(unavailable_detail(target, details))
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return SessionEnded(f"the mesh no longer accepts this session: {details}")
    return CallFailed(code, details, violations(error))


def unavailable_detail(target: str, details: str) -> str:
    """Why the mesh is unavailable, in words for a banner or a one-line CLI error."""
    if _is_connect_failure(details):
        return f"Envoy unreachable at {target}: {details}"
    return f"unavailable through Envoy at {target}: {details}"


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """Field violations of the status's ``google.rpc.BadRequest`` details (empty if none)."""
    status = _rich_status(error)
    return {} if status is None else _violations(status)


def from_rpc_status(status: status_pb2.Status, target: str) -> ClientError:
    """The client error for a ``google.rpc.Status`` sent as a stream's terminal ``error`` event.

    Mapped as :func:`translate` maps a call's status (an unknown or OK code counts as
    ``UNKNOWN``: an error event always means the reply failed).
    """
    code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
    details = _bounded(status.message)
    if code == grpc.StatusCode.UNAVAILABLE:
        return MeshUnavailable(unavailable_detail(target, details))
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return SessionEnded(f"the mesh no longer accepts this session: {details}")
    return CallFailed(code, details, _violations(status))


def service_answered(error: grpc.aio.AioRpcError) -> bool:
    """Whether a mesh service (not Envoy, not the transport) set the status.

    Services build every status with ``sutazai.runtime.faults``, which always sends the rich
    status (``grpc-status-details-bin``); Envoy's own answers (no healthy upstream, connect
    failure) and transport failures never carry it. An ``UNAVAILABLE`` a service sent (e.g. a
    model backend whose breaker is open) means the mesh itself is reachable.
    """
    return any(key == _DETAILS_KEY for key, _ in error.trailing_metadata() or ())


def _violations(status: status_pb2.Status) -> dict[str, str]:
    found: dict[str, str] = {}
    for detail in status.details:
        if not detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            continue
        bad_request = error_details_pb2.BadRequest()
        if not detail.Unpack(bad_request):
            continue
        for violation in bad_request.field_violations:
            if len(found) >= _MAX_VIOLATIONS:
                return found
            found[_bounded(violation.field)] = _bounded(violation.description)
    return found


def _rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    try:
        status: status_pb2.Status | None = rpc_status.from_call(error)
    except (ValueError, DecodeError):
        # from_call insists the rich status repeats the call's code and message exactly; a
        # proxy may rewrite the message, and the details are still the server's.
        return _raw_status(error)
    return status


def _raw_status(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    for key, value in error.trailing_metadata() or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                return None
    return None


def _is_connect_failure(details: str) -> bool:
    lowered = details.lower()
    return any(
        sign in lowered
        for sign in ("failed to connect", "connection refused", "connect failed", "dns resolution")
    )


def _bounded(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else f"{text[: _MAX_TEXT - 1]}…"
