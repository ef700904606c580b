"""Access tokens revoked before they expire (logout), by ``jti``.

Redis is the record (a key per revoked token, expiring with the token) and the broadcast (a
pub/sub message per revocation). Every process keeps a local mirror, filled by a full scan after
subscribing and then by the messages, so checking a token costs no round trip and a Redis outage
does not stop authenticated calls: no token can be revoked while Redis is away (logout needs it),
and the mirror re-scans when the connection comes back.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from sutazai.services.runtime.errors import MeshRuntimeError

log = structlog.get_logger(__name__)

KEY_PREFIX = "sutazai:revoked:"
CHANNEL = "sutazai:revocations"


class RevocationsUnknownError(MeshRuntimeError):
    """The mirror has never been filled, so no token can be trusted yet."""


class DenyList:
    """Revoked token ids, each kept until the token would have expired anyway."""

    def __init__(self, client: aioredis.Redis, *, resync_seconds: float = 1.0) -> None:
        self._client = client
        self._resync_seconds = resync_seconds
        self._revoked: dict[str, float] = {}
        self._synced = asyncio.Event()

    async def revoke(self, token_id: str, ttl_seconds: int) -> None:
        """Refuse ``token_id`` everywhere from now until it would have expired."""
        ttl = max(1, ttl_seconds)
        await self._client.set(f"{KEY_PREFIX}{token_id}", b"1", ex=ttl)
        await self._client.publish(CHANNEL, f"{token_id} {ttl}")
        self._remember(token_id, ttl)

    def is_revoked(self, token_id: str) -> bool:
        """Whether ``token_id`` was revoked.

        Raises:
            RevocationsUnknownError: the mirror was never filled (Redis unreachable since start).
        """
        if not self._synced.is_set():
            raise RevocationsUnknownError("revocations are not known yet: Redis is unreachable")
        expires = self._revoked.get(token_id)
        if expires is None:
            return False
        if expires < time.monotonic():
            del self._revoked[token_id]
            return False
        return True

    async def wait_synced(self) -> None:
        """Return once the mirror has been filled at least once."""
        await self._synced.wait()

    async def run(self) -> None:
        """Follow revocations forever, re-scanning after every reconnection."""
        while True:
            try:
                await self._follow()
            except (RedisError, OSError) as exc:
                log.warning("denylist.disconnected", error=str(exc))
            await asyncio.sleep(self._resync_seconds)

    async def _follow(self) -> None:
        async with self._client.pubsub() as pubsub:
            # Subscribe before scanning: a revocation made during the scan is then not missed.
            await pubsub.subscribe(CHANNEL)
            await self._scan()
            self._synced.set()
            log.info("denylist.synced", revoked=len(self._revoked))
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                token_id, _, ttl = bytes(message["data"]).decode().partition(" ")
                self._remember(token_id, int(ttl or "1"))

    async def _scan(self) -> None:
        async for key in self._client.scan_iter(match=f"{KEY_PREFIX}*", count=500):
            ttl = await self._client.ttl(key)
            if ttl > 0:
                self._remember(bytes(key).decode().removeprefix(KEY_PREFIX), ttl)

    def _remember(self, token_id: str, ttl_seconds: int) -> None:
        self._revoked[token_id] = time.monotonic() + ttl_seconds
