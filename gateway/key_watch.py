"""Following the public key file, so a rotation reaches Envoy without a restart.

The gateway reads only the public JWKS (``<state dir>/jwks.json``), never the private ring: what
it hands Envoy over ECDS (and what Envoy's admin interface prints) holds public keys only. The
file is small and replaced atomically, so polling its inode and times once a second is enough
and needs no inotify. The change time is in the stamp too, so fixing the file's mode is noticed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Final

import structlog

from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.key_files import file_stamp, load_public_keys
from sutazai.runtime.keys import PublicKeys

log = structlog.get_logger(__name__)

POLL_INTERVAL: Final = 1.0
"""Seconds between two looks at the public key file."""

PublicKeysListener = Callable[[PublicKeys], None]
"""Called (on the event loop) with the new keys after they changed."""


class PublicKeysWatch:
    """The public keys at ``path``, re-read when the file changes.

    A file that vanishes or cannot be read keeps the last good keys in force (logged as an
    error): dropping every key would lock every caller out, and a half-written or mistyped
    file should not do that either.
    """

    def __init__(self, path: Path, *, interval: float = POLL_INTERVAL) -> None:
        self._path = path
        self._interval = interval
        self._keys: PublicKeys | None = None
        self._stamp: tuple[int, int, int, int] | None = None

    @property
    def path(self) -> Path:
        """The public key file."""
        return self._path

    def load(self) -> PublicKeys:
        """Read the keys now.

        Raises:
            ConfigurationError: the file is missing, malformed, empty or writable by others.
        """
        stamp = file_stamp(self._path)
        keys = load_public_keys(self._path)
        self._keys, self._stamp = keys, stamp
        return keys

    async def run(self, on_change: PublicKeysListener) -> None:
        """Poll the file until cancelled; call ``on_change`` whenever the keys change."""
        while True:
            await asyncio.sleep(self._interval)
            changed = self.poll()
            if changed is not None:
                on_change(changed)

    def poll(self) -> PublicKeys | None:
        """Look at the file once; the new keys if they changed, else ``None``."""
        stamp = file_stamp(self._path)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        if stamp is None:
            log.error("gateway.keys_missing", path=str(self._path), keeping="last keys")
            return None
        try:
            keys = load_public_keys(self._path)
        except ConfigurationError as exc:
            log.error("gateway.keys_unreadable", error=str(exc), keeping="last keys")
            return None
        if self._keys is not None and keys.jwks() == self._keys.jwks():
            return None
        self._keys = keys
        log.info("gateway.keys_changed", kids=[k.kid for k in keys.keys])
        return keys
