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
