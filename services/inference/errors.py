"""The inference service's exception tree; the handlers turn each into its gRPC status.

InferenceError               root of every error raised by :mod:`sutazai.services.inference`
├── ModelNotFoundError       no configured backend offers the model (NOT_FOUND)
├── OptionRejectedError      the backend cannot honour an option, or the input does not fit
├── BusyError                every slot and the whole wait queue are taken (RESOURCE_EXHAUSTED)
├── NotSupportedError        the backend cannot do this, e.g. unload (FAILED_PRECONDITION)
├── BackendUnavailableError  the backend failed: down, timed out, server error (UNAVAILABLE)
│   └── BreakerOpenError     refused at once: the backend's breaker is open (UNAVAILABLE)
└── ApiError                 a refusal of the OpenAI-compatible API, in OpenAI's shape

OptionRejectedError becomes INVALID_ARGUMENT naming each field; BackendUnavailableError counts
against the backend's circuit breaker. ApiError (:mod:`.openai_api.errors`) is answered over
HTTP with its own status, never as a gRPC one.

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""

from __future__ import annotations

from collections.abc import Mapping


class InferenceError(Exception):
    """Root of every error raised by :mod:`sutazai.services.inference`."""


class ModelNotFoundError(InferenceError):
    """No configured backend offers the requested model."""

    def __init__(self, model: str) -> None:
        super().__init__(f"model {model!r} not found")
        self.model = model


class OptionRejectedError(InferenceError):
    """The request is valid in general but not for this backend or model."""

    def __init__(self, violations: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{f}: {d}" for f, d in violations.items()))
        self.violations = dict(violations)


class BusyError(InferenceError):
    """The backend's slots and wait queue are full."""

    def __init__(self, backend: str, retry_after_seconds: float) -> None:
        super().__init__(f"backend {backend!r} is busy: its wait queue is full")
        self.backend = backend
        self.retry_after_seconds = retry_after_seconds


class NotSupportedError(InferenceError):
    """The backend cannot perform the operation at all."""


class BackendUnavailableError(InferenceError):
    """The backend failed to answer properly; a failure for its circuit breaker.

    The message is meant for callers: it names the backend and what went wrong, never a URL's
    credentials or a key.
    """

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"backend {backend!r} unavailable: {reason}")
        self.backend = backend
        self.reason = reason


class BreakerOpenError(BackendUnavailableError):
    """The backend's circuit breaker refuses calls until its cool-down ends."""

    def __init__(self, backend: str, retry_after_seconds: float, last_error: str) -> None:
        reason = f"circuit breaker open (last error: {last_error or 'unknown'})"
        super().__init__(backend, reason)
        self.retry_after_seconds = retry_after_seconds
