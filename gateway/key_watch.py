"""Following the token key ring file, so a rotation reaches Envoy without a restart.

The ring file is small and rewritten atomically (``save_key_ring`` renames a temp file over
it), so polling its inode and times once a second is enough and needs no inotify. The change
time is in the stamp too, so fixing the file's mode (0644 to 0600) is noticed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Final

import structlog

from sutazai.services.runtime.errors import ConfigurationError
from sutazai.services.runtime.keys import KeyRing, load_key_ring

log = structlog.get_logger(__name__)

POLL_INTERVAL: Final = 1.0
"""Seconds between two looks at the key ring file."""

_Stamp = tuple[int, int, int, int] | None

KeyRingListener = Callable[[KeyRing], None]
"""Called (on the event loop) with the new ring after its keys changed."""


class KeyRingWatch:
    """The key ring at ``path``, re-read when the file changes.

    A file that vanishes or cannot be read keeps the last good ring in force (logged as an
    error): dropping every key would lock every caller out, and a half-written or mistyped
    file should not do that either.
    """

    def __init__(self, path: Path, *, interval: float = POLL_INTERVAL) -> None:
        self._path = path
        self._interval = interval
        self._ring: KeyRing | None = None
        self._stamp: _Stamp = None

    @property
    def path(self) -> Path:
        """The key ring file."""
        return self._path

    def load(self) -> KeyRing:
        """Read the ring now.

        Raises:
            ConfigurationError: the file is missing, malformed, empty or readable by others.
        """
        stamp = _stamp(self._path)
        ring = load_key_ring(self._path)
        self._ring, self._stamp = ring, stamp
        return ring

    @property
    def ring(self) -> KeyRing:
        """The ring in force (after :meth:`load`)."""
        if self._ring is None:
            raise RuntimeError("the key ring is not loaded yet")
        return self._ring

    async def run(self, on_change: KeyRingListener) -> None:
        """Poll the file until cancelled; call ``on_change`` whenever the keys change."""
        while True:
            await asyncio.sleep(self._interval)
            changed = self.poll()
            if changed is not None:
                on_change(changed)

    def poll(self) -> KeyRing | None:
        """Look at the file once; the new ring if its keys changed, else ``None``."""
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        if stamp is None:
            log.error("gateway.keys_missing", path=str(self._path), keeping="last keys")
            return None
        try:
            ring = load_key_ring(self._path)
        except ConfigurationError as exc:
            log.error("gateway.keys_unreadable", error=str(exc), keeping="last keys")
            return None
        if self._ring is not None and ring.jwks() == self._ring.jwks():
            return None
        self._ring = ring
        log.info("gateway.keys_changed", kids=[k.kid for k in ring.keys])
        return ring


def _stamp(path: Path) -> _Stamp:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_size)
