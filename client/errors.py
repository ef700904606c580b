"""The client's exception tree: what a caller of the mesh catches, grouped by what to do next.

ClientError                 root of every error raised by :mod:`sutazai.client`
├── MeshUnavailable         errors: the edge, or the service behind it, cannot be reached now
├── SessionEnded            errors: no session, or the mesh refused to renew it: sign in again
│   └── TokenFileError      errors: the saved session is unreadable, malformed or not private
└── CallFailed              errors: the mesh answered with another gRPC error status

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc


class ClientError(Exception):
    """Root of every error raised by :mod:`sutazai.client`."""


class MeshUnavailable(ClientError):  # noqa: N818 - the contract's name (CLIENT_API.md)
    """The edge or the service behind it is unreachable (``UNAVAILABLE``, connect failure).

    Worth retrying later; the client also reports it to its connection-change callbacks.
    """


class SessionEnded(ClientError):  # noqa: N818 - the contract's name (CLIENT_API.md)
    """Nobody is signed in, or the mesh refused to renew the session: the user must sign in."""


class TokenFileError(SessionEnded):
    """The saved session cannot be trusted: unreadable, malformed, or readable by others.

    A kind of :class:`SessionEnded`: signing in again writes a fresh, private file.
    """


class CallFailed(ClientError):  # noqa: N818 - the contract's name (CLIENT_API.md)
    """The mesh answered with an error status other than the ones above.

    Attributes:
        code: the gRPC status code.
        details: the status message (bounded by the server; never a token).
        violations: field -> description, from a ``google.rpc.BadRequest`` detail, if any.

    """

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        violations: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {details}" if details else code.name)
        self.code = code
        self.details = details
        self.violations: dict[str, str] = dict(violations or {})
