"""The refusals of the OpenAI-compatible API, in OpenAI's error shape.

Every refusal (a bad request, an unknown model, a failed engine call) is an :class:`ApiError`,
which the handlers render as ``{"error": {"message", "type", "param", "code"}}`` with its HTTP
status: the one shape OpenAI's clients parse. It is a branch of the inference service's tree
(:mod:`sutazai.services.inference.errors`).
"""

from __future__ import annotations

from sutazai.services.inference.errors import InferenceError


class ApiError(InferenceError):
    """A refusal to answer in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        """OpenAI's ``type``: ``invalid_request_error``, ``server_error``, ..."""
        self.param = param
        """The request field at fault, e.g. ``temperature`` or ``messages[0].content``."""
        self.code = code
        self.retry_after_seconds = retry_after_seconds
        """When the caller may try again (a ``Retry-After`` header), if known."""

    def body(self) -> dict[str, object]:
        """The JSON body OpenAI's clients expect."""
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


def timed_out() -> ApiError:
    """The call ran out of its time (HTTP 504, as OpenAI answers a timeout)."""
    return ApiError(504, "the call ran out of time", kind="server_error", code="timeout")
