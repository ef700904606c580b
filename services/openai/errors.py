"""The OpenAI-compatible API's exception tree.

OpenAIApiError     root of every error raised by :mod:`sutazai.services.openai`
└── ApiError       an answer in OpenAI's error shape: HTTP status, message, type, param, code

Every refusal (a bad request, an unknown model, a failed upstream call) is an :class:`ApiError`,
which the handlers render as ``{"error": {"message", "type", "param", "code"}}`` with its HTTP
status: the one shape OpenAI's clients parse.

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""

from __future__ import annotations


class OpenAIApiError(Exception):
    """Root of every error raised by :mod:`sutazai.services.openai`."""


class ApiError(OpenAIApiError):
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
