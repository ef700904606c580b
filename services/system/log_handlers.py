"""gRPC handlers of the system service's log RPCs (``ListLogs``, ``TailLogs``), for operators.

A mixin of :class:`~sutazai.services.system.handlers.SystemHandlers`: the log RPCs keep their
code apart from the status RPCs, and share the servicer's stream slots (a tail counts against
the same per-instance and per-caller limits as a watch). Only operators
reach these methods (the access option in the proto, enforced by the guard before they run).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Final

import grpc

from sutazai.runtime.faults import invalid_argument, not_found
from sutazai.services.system.log_reader import LogReader, follow, tail
from sutazai.services.system.logs import (
    DEFAULT_LINES,
    MAX_CONTAINS,
    MAX_LINES,
    Level,
    LineFilter,
    LogLine,
    component_problem,
)
from sutazai.system.v1 import system_service_pb2 as pb

_BATCH_LINES: Final = 100
"""Lines per message: at most 100 lines of 8 KiB, well under the message size limits."""
_WIRE: Final = {
    Level.NONE: pb.LOG_LEVEL_UNSPECIFIED,
    Level.DEBUG: pb.LOG_LEVEL_DEBUG,
    Level.INFO: pb.LOG_LEVEL_INFO,
    Level.WARNING: pb.LOG_LEVEL_WARNING,
    Level.ERROR: pb.LOG_LEVEL_ERROR,
    Level.CRITICAL: pb.LOG_LEVEL_CRITICAL,
}
_LEVELS: Final = {wire: level for level, wire in _WIRE.items()}


class LogHandlers:
    """``ListLogs`` and ``TailLogs``; the servicer mixing this in provides reader and slots."""

    _logs: LogReader
    _stream_slot: Callable[[grpc.aio.ServicerContext], AbstractContextManager[None]]
    """One of the servicer's stream slots for the block, or RESOURCE_EXHAUSTED."""

    async def ListLogs(  # noqa: N802 - generated servicer method name
        self, request: pb.ListLogsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLogsResponse:
        """Every component's log, by name, with its size and last write."""
        files = await asyncio.to_thread(self._logs.list)
        response = pb.ListLogsResponse()
        for found in files:
            entry = response.logs.add(component=found.component, size_bytes=found.size_bytes)
            entry.modified_at.FromDatetime(found.modified_at)
        return response

    async def TailLogs(  # noqa: N802 - generated servicer method name
        self, request: pb.TailLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.TailLogsResponse]:
        """The last matching lines at once (one message even when none match), then new ones."""
        count, line_filter = _tail_request(request)
        reader = self._logs
        with self._stream_slot(context):
            handle = await asyncio.to_thread(reader.open, request.component)
            if handle is None:
                raise not_found("log", request.component)
            try:
                lines, end = await asyncio.to_thread(tail, handle, count, line_filter)
                batches = _batches(lines) or [[]]
                for batch in batches:
                    yield _message(batch)
                if not request.follow:
                    return
                async for batch in follow(reader.path(request.component), handle, end, line_filter):
                    for part in _batches(batch) or [[]]:
                        yield _message(part)
            finally:
                handle.close()


def _tail_request(request: pb.TailLogsRequest) -> tuple[int, LineFilter]:
    """The line count and filter of a request.

    Raises:
        RpcStatusError: INVALID_ARGUMENT naming each bad field.

    """
    violations = {}
    problem = component_problem(request.component)
    if problem is not None:
        violations["component"] = problem
    count = request.lines if request.HasField("lines") else DEFAULT_LINES
    if count > MAX_LINES:
        violations["lines"] = f"must be 0 to {MAX_LINES}"
    if len(request.contains) > MAX_CONTAINS:
        violations["contains"] = f"must be at most {MAX_CONTAINS} characters"
    if request.min_level not in _LEVELS:
        violations["min_level"] = "not a LogLevel"
    if violations:
        raise invalid_argument(violations)
    return count, LineFilter(_LEVELS[request.min_level], request.contains)


def _batches(lines: list[LogLine]) -> list[list[LogLine]]:
    return [lines[i : i + _BATCH_LINES] for i in range(0, len(lines), _BATCH_LINES)]


def _message(lines: list[LogLine]) -> pb.TailLogsResponse:
    return pb.TailLogsResponse(
        lines=[pb.LogLine(text=line.text, level=_WIRE[line.level]) for line in lines]
    )
