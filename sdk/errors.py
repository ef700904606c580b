"""The agent SDK's exception tree.

AgentSdkError                 root of every error defined by :mod:`sutazai.sdk`
├── AgentDefinitionError      agent: a name, instance id, capability or handler is not acceptable
└── TaskError               raised by a handler: the attempt fails with this status
    └── InvalidPayloadError        raised by a handler: the payload is wrong; never retried

A handler may raise anything: :class:`TaskError` says precisely how the attempt failed (its
gRPC code, message and whether another attempt can help); any other exception fails the attempt
as retryable with code ``UNKNOWN``.

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import status_pb2

from sutazai.runtime.faults import RpcStatusError, invalid_argument


class AgentSdkError(Exception):
    """Root of every error defined by :mod:`sutazai.sdk`."""


class AgentDefinitionError(AgentSdkError):
    """An agent's name, instance id, capability, concurrency or handler is not acceptable."""


class TaskError(AgentSdkError):
    """Raise in a handler to fail the attempt with this status.

    Args:
        message: what went wrong, for the task's owner (at most 512 characters are kept).
        retryable: whether another attempt can help; ``False`` fails the task at once.
        code: the ``google.rpc.Status`` code reported.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.fault = RpcStatusError(code, message)

    def status(self) -> status_pb2.Status:
        """The ``google.rpc.Status`` the failure report carries."""
        return self.fault.to_proto()


class InvalidPayloadError(TaskError):
    """Raise in a handler when the payload is wrong: INVALID_ARGUMENT, never retried.

    Args:
        violations: one description per offending payload field, e.g.
            ``{"prompt": "required"}``; they travel as ``google.rpc.BadRequest`` field
            violations, the way the mesh's gRPC services name bad fields.
    """

    def __init__(self, violations: Mapping[str, str]) -> None:
        fault = invalid_argument(violations)
        super().__init__(fault.message, retryable=False, code=fault.code)
        self.fault = fault
        self.violations = dict(violations)
