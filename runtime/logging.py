"""Structured JSON logs; every line logged inside an RPC carries its request id."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(service: str, *, level: int = logging.INFO) -> None:
    """Send JSON lines to stderr, tagged with the service name and any bound context.

    Context bound with ``structlog.contextvars`` (the request id, by the server interceptor)
    is merged into every line logged while it is bound.
    """
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
