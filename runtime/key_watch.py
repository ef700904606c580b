"""Following a key file, so a rotation is seen without a restart: one watcher, one behaviour.

Every reader of a key file uses :class:`KeyFileWatch`: the gateway (the public JWKS it hands
Envoy, polled with a change callback), every service's token verifier (the public JWKS) and the
auth service's signer (the private ring). All fail the same way:

- at start-up (:meth:`KeyFileWatch.load`) a missing, unreadable or refused file is a
  :class:`~sutazai.runtime.errors.ConfigurationError`: the process does not start without keys;
- afterwards, a file that vanishes, cannot be read or is refused (malformed, wrong mode, a
  private key in the public file) keeps the last good keys in force and is logged once per
  change of the file, not on every look: dropping the keys would lock every caller out (or stop
  every sign-in), and a half-written or mistyped file should not do that either.

The files are small and replaced atomically, so a ``stat`` per look (inode, times, size) tells a
change without inotify; the change time is in the stamp, so fixing a file's mode is noticed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Final, Generic, TypeVar

import structlog

from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.key_files import load_key_ring, load_public_keys
from sutazai.runtime.keys import KeyRing, PublicKeys

log = structlog.get_logger(__name__)

POLL_INTERVAL: Final = 1.0
"""Seconds between two looks at a key file by :meth:`KeyFileWatch.run`."""

_Keys = TypeVar("_Keys")
Stamp = tuple[int, int, int, int]


class KeyFileWatch(Generic[_Keys]):
    """The keys in one file, re-read when the file changes (see the module docstring).

    Calling the watch returns the keys in force, looking at the file first (one ``stat``; the
    file is parsed only after it changed). The same object is returned while the keys are the
    same, so callers may key caches on it.
    """

    def __init__(
        self,
        path: Path,
        load: Callable[[Path], _Keys],
        *,
        public: Callable[[_Keys], PublicKeys],
    ) -> None:
        """Watch ``path``, read with ``load``; ``public`` tells whether two readings differ."""
        self._path = path
        self._load = load
        self._public = public
        self._keys: _Keys | None = None
        self._stamp: Stamp | None = None

    @classmethod
    def public_keys(cls, path: Path) -> KeyFileWatch[PublicKeys]:
        """A watch of the public JWKS (verifiers, the gateway)."""
        return KeyFileWatch(path, load_public_keys, public=lambda keys: keys)

    @classmethod
    def key_ring(cls, path: Path) -> KeyFileWatch[KeyRing]:
        """A watch of the private ring (the auth service's signer)."""
        return KeyFileWatch(path, load_key_ring, public=lambda ring: ring.public)

    @property
    def path(self) -> Path:
        """The watched file."""
        return self._path

    def load(self) -> _Keys:
        """Read the keys now, as at start-up.

        Raises:
            ConfigurationError: the file is missing, unreadable or refused.
        """
        stamp = _stamp(self._path)
        keys = self._load(self._path)
        self._keys, self._stamp = keys, stamp
        return keys

    def __call__(self) -> _Keys:
        """The keys in force, re-read first if the file changed.

        Raises:
            ConfigurationError: only before any good copy was read (as :meth:`load`).
        """
        if self._keys is None:
            return self.load()
        self.poll()
        return self._keys

    def poll(self) -> _Keys | None:
        """Look at the file once; the new keys if they changed, else ``None``.

        A failure keeps the keys in force and is logged once until the file changes again.
        """
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        if stamp is None:
            log.error("keys.unreachable", path=str(self._path), keeping="last good keys")
            return None
        try:
            keys = self._load(self._path)
        except ConfigurationError as exc:
            log.error("keys.refused", error=str(exc), keeping="last good keys")
            return None
        if self._keys is not None and self._same(self._keys, keys):
            return None
        self._keys = keys
        kids = [k.kid for k in self._public(keys).keys]
        log.info("keys.changed", path=str(self._path), kids=kids)
        return keys

    async def run(
        self, on_change: Callable[[_Keys], None], interval: float = POLL_INTERVAL
    ) -> None:
        """Poll the file every ``interval`` seconds until cancelled; ``on_change`` new keys."""
        while True:
            await asyncio.sleep(interval)
            changed = self.poll()
            if changed is not None:
                on_change(changed)

    def _same(self, old: _Keys, new: _Keys) -> bool:
        return self._public(old).jwks() == self._public(new).jwks()


def _stamp(path: Path) -> Stamp | None:
    """What changes when a file is replaced or its mode changes.

    ``None`` if it is missing or cannot be looked at (then reading it fails too).
    """
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_size)
