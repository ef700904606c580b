"""Sign-in throttling in Redis (keys under ``sutazai:auth:``), without lock-out abuse.

Three limits, each keyed so that nobody can use it against someone else:

- **Per client address** (Login, Register, Refresh): a token bucket. Password spraying (one
  password tried on many names) and registration floods from one address are held to
  ``sign_in_rate_per_second``; each attempt costs an argon2 hash, so this is also the CPU guard.
- **Per (username, address)**: each failed login makes the pair wait (``failure_delay_seconds``,
  doubled per failure), and ``lockout_threshold`` failures lock the pair for
  ``lockout_seconds``. Wrong passwords for ``ada`` from one address never stop ``ada`` signing
  in from another: no state is kept per account alone.
- **Per username, all addresses together**: a bucket of failures (``username_failure_burst``,
  refilled at ``username_failure_per_second``) against guessing one password from many
  addresses. When it is empty, attempts for that name are held back, except from addresses the
  user signed in from successfully within ``refresh_ttl_seconds``: an attacker can slow down
  the user's sign-ins from new places while the attack lasts, never lock them out of places
  they already use. Held-back attempts get RESOURCE_EXHAUSTED with a retry delay, not a lock.

Usernames and addresses appear in keys only as truncated SHA-256 hashes: attacker-chosen text
never becomes an unbounded key. Redis's clock (``TIME``) is the one "now" of every instance.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sutazai.runtime.faults import RpcStatusError, resource_exhausted, unavailable
from sutazai.runtime.ratelimit import RateLimiter
from sutazai.runtime.settings import AuthSettings

PREFIX = "sutazai:auth:"
_PAIR = PREFIX + "pair:"
_NAME = PREFIX + "name:"
_KNOWN = PREFIX + "known:"

# KEYS: pair, name bucket, known marker. ARGV: name rate, name burst.
# Returns seconds to wait (0: go ahead).
_CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local blocked = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if blocked > now then return tostring(blocked - now) end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[2], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
if tokens < 1 and redis.call('EXISTS', KEYS[3]) == 0 then
  return tostring((1 - tokens) / rate)
end
return '0'
"""

# KEYS: pair, name bucket. ARGV: threshold, base delay, lock seconds, name rate, name burst.
# Returns {failures so far (0 once locked), seconds the pair must wait, locked 0/1}.
_FAIL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local threshold = tonumber(ARGV[1])
local delay = tonumber(ARGV[2])
local lock = tonumber(ARGV[3])
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local wait = delay * 2 ^ (failures - 1)
local locked = 0
if failures >= threshold then
  wait = lock
  locked = 1
  failures = 0
  redis.call('HSET', KEYS[1], 'failures', 0)
end
wait = math.min(wait, lock)
redis.call('HSET', KEYS[1], 'until', tostring(now + wait))
redis.call('EXPIRE', KEYS[1], math.ceil(lock * 2))
local rate = tonumber(ARGV[4])
local burst = tonumber(ARGV[5])
local state = redis.call('HMGET', KEYS[2], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.max(0, math.min(burst, tokens + math.max(0, now - at) * rate) - 1)
redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[2], math.ceil(burst / rate) + 1)
return {failures, tostring(wait), locked}
"""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Failure:
    """What one more failed login did to its (username, address) pair."""

    failures: int
    """Consecutive failures of the pair (0 once it locked)."""
    wait_seconds: float
    locked: bool
    """This failure locked the pair for ``lockout_seconds``."""


class SignInThrottle:
    """The three limits of the module docstring over one Redis client."""

    def __init__(self, client: aioredis.Redis, settings: AuthSettings) -> None:
        self._client = client
        self._settings = settings
        self._address = RateLimiter(
            client,
            per_second=settings.sign_in_rate_per_second,
            burst=settings.sign_in_rate_burst,
            key_prefix=PREFIX + "address:",
        )
        self._audit = RateLimiter(
            client,
            per_second=settings.failure_audit_per_second,
            burst=settings.failure_audit_burst,
            key_prefix=PREFIX + "audit:",
        )
        self._check = client.register_script(_CHECK)
        self._fail = client.register_script(_FAIL)

    async def admit_address(self, address: str) -> None:
        """Take one sign-in call (Login, Register, Refresh) from ``address``'s bucket.

        Raises:
            RpcStatusError: RESOURCE_EXHAUSTED when the address is over its rate; UNAVAILABLE
                when Redis is unreachable.
        """
        try:
            decision = await self._address.take(_digest(address))
        except (RedisError, OSError) as exc:
            raise _unreachable() from exc
        if not decision.allowed:
            raise resource_exhausted(
                "too many sign-in calls from your address: retry in "
                f"{decision.retry_after_seconds:.1f}s",
                decision.retry_after_seconds,
            )

    async def check_login(self, username: str, address: str) -> None:
        """Refuse a login of ``username`` from ``address`` that must wait.

        Raises:
            RpcStatusError: RESOURCE_EXHAUSTED with the wait (the same for existing and unknown
                names); UNAVAILABLE when Redis is unreachable.
        """
        name, place = _digest(username.casefold()), _digest(address)
        try:
            wait = float(
                await self._check(
                    keys=[f"{_PAIR}{name}:{place}", f"{_NAME}{name}", f"{_KNOWN}{name}:{place}"],
                    args=[
                        self._settings.username_failure_per_second,
                        self._settings.username_failure_burst,
                    ],
                )
            )
        except (RedisError, OSError) as exc:
            raise _unreachable() from exc
        if wait > 0:
            raise resource_exhausted(
                f"too many failed sign-ins for this name: retry in {wait:.1f}s", wait
            )

    async def failed(self, username: str, address: str) -> Failure:
        """Count a failed login of ``username`` from ``address``.

        Raises:
            RpcStatusError: UNAVAILABLE when Redis is unreachable.
        """
        name, place = _digest(username.casefold()), _digest(address)
        settings = self._settings
        try:
            failures, wait, locked = await self._fail(
                keys=[f"{_PAIR}{name}:{place}", f"{_NAME}{name}"],
                args=[
                    settings.lockout_threshold,
                    settings.failure_delay_seconds,
                    settings.lockout_seconds,
                    settings.username_failure_per_second,
                    settings.username_failure_burst,
                ],
            )
        except (RedisError, OSError) as exc:
            raise _unreachable() from exc
        return Failure(int(failures), float(wait), bool(int(locked)))

    async def succeeded(self, username: str, address: str) -> None:
        """Clear the pair's failures; remember ``address`` as one the user signs in from."""
        name, place = _digest(username.casefold()), _digest(address)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(f"{_PAIR}{name}:{place}")
                pipe.set(f"{_KNOWN}{name}:{place}", b"1", ex=self._settings.refresh_ttl_seconds)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise _unreachable() from exc

    async def may_audit_failure(self, address: str) -> bool:
        """Whether a failed login from ``address`` may still write an audit row."""
        try:
            return (await self._audit.take(_digest(address))).allowed
        except (RedisError, OSError) as exc:
            raise _unreachable() from exc

    async def unlock(self, username: str) -> int:
        """End every wait and lock of ``username``, from every address; count the pairs.

        Raises:
            RpcStatusError: UNAVAILABLE when Redis is unreachable.
        """
        name = _digest(username.casefold())
        try:
            pairs = [key async for key in self._client.scan_iter(match=f"{_PAIR}{name}:*")]
            if pairs:
                await self._client.delete(*pairs)
            await self._client.delete(f"{_NAME}{name}")
        except (RedisError, OSError) as exc:
            raise _unreachable() from exc
        return len(pairs)


def _unreachable() -> RpcStatusError:
    return unavailable("sign-in limits unavailable (Redis): retry shortly", 1.0)
