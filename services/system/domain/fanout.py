"""Handing the latest state to any number of watchers, none of whom can hold the others up.

Each watcher has a one-slot mailbox: a new value replaces one it has not read yet, so a slow
client costs one value's memory however far behind it falls, and it always reads the newest
state. A watcher that needs every intermediate value is not what these streams serve: every
message is a whole state, not a change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    """One watcher's slot: holds at most the latest unread value."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._full = False
        self._closed = False
        self._ready = asyncio.Event()

    def put(self, value: T) -> None:
        """Leave ``value`` for the reader, replacing any unread one."""
        self._value, self._full = value, True
        self._ready.set()

    def close(self) -> None:
        """End the stream: the reader gets what is unread, then the iteration stops."""
        self._closed = True
        self._ready.set()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    async def get(self) -> T | None:
        """The next value, waiting for one; ``None`` once closed and read empty."""
        while not self._full:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        value, self._value, self._full = self._value, None, False
        return value

    def __aiter__(self) -> AsyncIterator[T]:
        return self._values()

    async def _values(self) -> AsyncIterator[T]:
        while (value := await self.get()) is not None:
            yield value


class Broadcast(Generic[T]):
    """Publishes values to every subscribed :class:`Mailbox`; remembers the latest one."""

    def __init__(self) -> None:
        self._mailboxes: set[Mailbox[T]] = set()
        self._latest: T | None = None
        self._closed = False

    @property
    def latest(self) -> T | None:
        """The last published value, ``None`` before the first."""
        return self._latest

    @property
    def subscribers(self) -> int:
        """How many mailboxes are subscribed."""
        return len(self._mailboxes)

    def publish(self, value: T) -> None:
        """Give ``value`` to every subscriber and keep it for the next ones."""
        self._latest = value
        for mailbox in self._mailboxes:
            mailbox.put(value)

    @contextlib.contextmanager
    def subscribe(self, *, replay: bool = True) -> Iterator[Mailbox[T]]:
        """A mailbox that receives every publication until the block ends.

        With ``replay`` it holds the latest value at once (when there is one). After
        :meth:`close` the mailbox is closed at once, so its iteration ends.
        """
        mailbox: Mailbox[T] = Mailbox()
        if replay and self._latest is not None:
            mailbox.put(self._latest)
        if self._closed:
            mailbox.close()
        self._mailboxes.add(mailbox)
        try:
            yield mailbox
        finally:
            self._mailboxes.discard(mailbox)

    def close(self) -> None:
        """End every subscriber's stream (shutdown); later subscribers end at once too."""
        self._closed = True
        for mailbox in self._mailboxes:
            mailbox.close()


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
