"""The reply cache in Redis, under the chat service's own prefix ``sutazai:chat:cache:``.

Keys are ``sutazai:chat:cache:reply:<sha256>`` (:func:`~.domain.cache_key` of the whole
request), values JSON (:class:`~.domain.CachedReply`; never pickle: a value is data, not
code), each with the configured TTL. Lookups count into two counters under the same prefix.
The cache is an optimisation: when Redis fails, a lookup is a miss and a write is skipped
(logged), the chat goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from sutazai.services.chat.domain import CachedReply

log = structlog.get_logger(__name__)

SCAN_COUNT = 500
"""Keys one SCAN step looks at."""
MEMORY_SAMPLE = 64
"""Cached replies whose MEMORY USAGE is measured; the total is extrapolated from them."""
MAX_SCANNED = 1_000_000
"""Keys counted at most by one GetCacheStats (beyond, the count is a lower bound)."""
# The entry, and one more hit (it is there) or miss: one round trip instead of two.
_LOOKUP = """
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('INCR', KEYS[2])
else
  redis.call('INCR', KEYS[3])
end
return value
"""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What GetCacheStats reports."""

    hits: int
    misses: int
    keys: int
    memory_bytes: int

    @property
    def hit_rate(self) -> float:
        """Hits / lookups; 0 before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class ReplyCache:
    """Replies by request hash, with hit and miss counters."""

    def __init__(self, client: aioredis.Redis, *, key_prefix: str, ttl_seconds: int) -> None:
        """A cache under ``<key_prefix>cache:`` (``key_prefix`` is the service's own)."""
        self._client = client
        self._prefix = f"{key_prefix}cache:"
        self._replies = f"{self._prefix}reply:"
        self._hits = f"{self._prefix}hits"
        self._misses = f"{self._prefix}misses"
        self.ttl_seconds = ttl_seconds
        self._lookup = client.register_script(_LOOKUP)

    async def get(self, key: str) -> CachedReply | None:
        """The cached reply for a request hash, counting the lookup; ``None`` on a miss.

        One round trip: a script reads the entry and counts the hit or miss.
        """
        try:
            raw = await self._lookup(keys=[self._replies + key, self._hits, self._misses])
        except (RedisError, OSError) as exc:
            log.warning("chat.cache_unavailable", operation="get", error=str(exc))
            return None
        if raw is None:
            return None
        reply = CachedReply.from_json(raw)
        if reply is None:
            # Not a reply (never written by this service): the script counted a hit; it is a
            # miss. Rare enough for a second round trip.
            log.warning("chat.cache_entry_invalid")
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.decr(self._hits)
                    pipe.incr(self._misses)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("chat.cache_unavailable", operation="count", error=str(exc))
        return reply

    async def put(self, key: str, reply: CachedReply) -> None:
        """Cache a reply for the TTL."""
        try:
            await self._client.set(self._replies + key, reply.to_json(), ex=self.ttl_seconds)
        except (RedisError, OSError) as exc:
            log.warning("chat.cache_unavailable", operation="put", error=str(exc))

    async def stats(self) -> CacheStats:
        """Counters, cached replies now (SCAN under the prefix) and their memory (sampled).

        Raises:
            RedisError: Redis failed (the caller reports UNAVAILABLE).

        """
        hits, misses = await self._client.mget(self._hits, self._misses)
        keys = 0
        sample: list[bytes] = []
        async for key in self._client.scan_iter(match=f"{self._replies}*", count=SCAN_COUNT):
            keys += 1
            if len(sample) < MEMORY_SAMPLE:
                sample.append(key)
            if keys >= MAX_SCANNED:
                break
        measured = [await self._client.memory_usage(key) for key in sample]
        sizes = [size for size in measured if size is not None]
        memory = round(sum(sizes) / len(sizes) * keys) if sizes else 0
        return CacheStats(_int(hits), _int(misses), keys, memory)

    async def clear(self) -> int:
        """Delete every cached reply (SCAN + UNLINK under the prefix; never FLUSHDB).

        Raises:
            RedisError: Redis failed (the caller reports UNAVAILABLE).

        """
        deleted = 0
        batch: list[bytes] = []
        async for key in self._client.scan_iter(match=f"{self._replies}*", count=SCAN_COUNT):
            batch.append(key)
            if len(batch) >= SCAN_COUNT:
                deleted += await self._client.unlink(*batch)
                batch = []
        if batch:
            deleted += await self._client.unlink(*batch)
        return deleted


def _int(value: bytes | str | None) -> int:
    try:
        return max(0, int(value)) if value is not None else 0
    except ValueError:
        return 0
