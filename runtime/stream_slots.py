"""Limits on open server streams, per instance and per caller, shared by every service."""

from __future__ import annotations


class StreamSlots:
    """Counts open streams against a limit per instance and per caller.

    The instance limit keeps watchers from exhausting it; the caller limit keeps one caller
    (one account, or one address for anonymous callers) from taking every stream.
    """

    def __init__(self, limit: int, per_caller: int) -> None:
        if limit <= 0 or per_caller <= 0:
            raise ValueError("stream limits must be positive")
        self._limit = limit
        self._per_caller = per_caller
        self._open: dict[str, int] = {}

    @property
    def limit(self) -> int:
        """The most streams open at once."""
        return self._limit

    @property
    def per_caller(self) -> int:
        """The most streams one caller may have open at once."""
        return self._per_caller

    @property
    def open(self) -> int:
        """Streams open now."""
        return sum(self._open.values())

    def take(self, caller: str) -> bool:
        """Open a stream for ``caller`` if both limits allow; ``False`` otherwise."""
        held = self._open.get(caller, 0)
        if held >= self._per_caller or self.open >= self._limit:
            return False
        self._open[caller] = held + 1
        return True

    def give_back(self, caller: str) -> None:
        """Close a stream ``caller`` opened with :meth:`take`."""
        held = self._open.get(caller, 0) - 1
        if held > 0:
            self._open[caller] = held
        else:
            self._open.pop(caller, None)
