"""Per-user token buckets in Redis, shared by every instance of every service."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

# One round trip, atomic: refill by elapsed time, then take `cost` tokens if there are enough.
# Server time (TIME) is used so instances with skewed clocks share one notion of "now".
_TAKE = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local state = redis.call('HMGET', key, 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', key, math.ceil(burst / rate) + 1)
return {allowed, tostring(wait)}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a call may proceed, and if not, how long until it could."""

    allowed: bool
    retry_after_seconds: float


class RateLimiter:
    """Token buckets keyed by caller: ``burst`` tokens, refilled at ``per_second``.

    A bucket is the key ``<key_prefix>ratelimit:<caller>``; ``key_prefix`` is the service's own
    (``sutazai:<service>:``), the only keys its Redis user may reach.
    """

    def __init__(
        self, client: aioredis.Redis, *, key_prefix: str, per_second: float, burst: int
    ) -> None:
        self._client = client
        self._bucket_prefix = f"{key_prefix}ratelimit:"
        self._per_second = per_second
        self._burst = burst
        self._take = client.register_script(_TAKE)

    async def take(self, caller: str, cost: float = 1.0) -> Decision:
        """Take ``cost`` tokens from ``caller``'s bucket if it has them."""
        allowed, wait = await self._take(
            keys=[f"{self._bucket_prefix}{caller}"], args=[self._per_second, self._burst, cost]
        )
        return Decision(bool(int(allowed)), float(wait))
