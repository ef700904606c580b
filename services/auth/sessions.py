"""Signing in and out: passwords to token pairs, refresh-token rotation, revocation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc

from sutazai.runtime.faults import invalid_argument, unauthenticated, unavailable
from sutazai.runtime.revocations import Revocations, RevocationStoreError
from sutazai.runtime.tokens import Identity, TokenIssuer
from sutazai.services.auth.domain import (
    User,
    Verdict,
    credential_violations,
    hash_refresh_token,
    new_refresh_token,
)
from sutazai.services.auth.errors import invalid_credentials
from sutazai.services.auth.passwords import Passwords
from sutazai.services.auth.store import AuthStore, NewToken
from sutazai.services.auth.throttle import SignInThrottle
from sutazai.services.auth.trail import (
    LOCKOUT,
    LOGIN,
    LOGOUT,
    REFRESH_REUSED,
    Trail,
)

DENIED = grpc.StatusCode.UNAUTHENTICATED.name
MAX_REFRESH_TOKEN = 256
"""Issued tokens are 43 characters; anything far longer is not worth hashing."""

_REFUSALS = {
    None: "unknown refresh token",
    Verdict.REUSED: "refresh token already used: its session is revoked, sign in again",
    Verdict.REVOKED: "refresh token revoked",
    Verdict.INACTIVE: "refresh token revoked",
    Verdict.EXPIRED: "refresh token expired",
}


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What a sign-in or refresh returns."""

    access_token: str
    refresh_token: str
    expires_in: int
    """Seconds until the access token expires."""


class Sessions:
    """Login, Refresh and Logout."""

    def __init__(
        self,
        *,
        store: AuthStore,
        passwords: Passwords,
        issuer: TokenIssuer,
        revocations: Revocations,
        throttle: SignInThrottle,
        trail: Trail,
        access_ttl: timedelta,
        refresh_ttl: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._passwords = passwords
        self._issuer = issuer
        self._revocations = revocations
        self._throttle = throttle
        self._trail = trail
        self._access_ttl = access_ttl
        self._refresh_ttl = refresh_ttl
        self._clock = clock

    async def login(self, username: str, password: str, *, address: str) -> TokenPair:
        """A token pair for valid credentials sent from ``address``.

        Raises:
            RpcStatusError: INVALID_ARGUMENT for empty, oversized or impossible fields;
                RESOURCE_EXHAUSTED while the (username, address) pair must wait; otherwise the
                same UNAUTHENTICATED for a wrong password and an unknown or inactive account.

        """
        if violations := credential_violations(username, password):
            raise invalid_argument(violations)
        await self._throttle.check_login(username, address)
        user = await self._store.user_by_name(username)
        if user is None or not user.active:
            # Spend the time a real check takes: the answer's timing must not tell either.
            await self._passwords.verify_nothing(password)
            await self._wrong(username, address, "inactive" if user else "no such account")
            raise invalid_credentials()
        if not await self._passwords.verify(user.password_hash, password):
            await self._wrong(user.username, address, "wrong password")
            raise invalid_credentials()
        new_hash = None
        if self._passwords.needs_rehash(user.password_hash):
            new_hash = await self._passwords.hash(password)
        refresh = new_refresh_token()
        now = self._clock()
        signed_in = await self._store.record_success(
            user.user_id,
            user.password_hash,
            now,
            first_token=NewToken(hash_refresh_token(refresh), now + self._refresh_ttl),
            new_hash=new_hash,
        )
        if signed_in is None:
            await self._wrong(username, address, "deactivated or password changed during the check")
            raise invalid_credentials()
        await self._throttle.succeeded(signed_in.username, address)
        await self._trail.record(LOGIN, actor=signed_in.username, target=signed_in.username)
        return await self._pair(signed_in, refresh)

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate a refresh token: a new pair, and the presented token stops working.

        Raises:
            RpcStatusError: INVALID_ARGUMENT when empty; UNAUTHENTICATED when unknown,
                expired, revoked, or already used (which also revokes its whole family).

        """
        if not refresh_token:
            raise invalid_argument({"refresh_token": "required"})
        if len(refresh_token) > MAX_REFRESH_TOKEN:
            raise unauthenticated(_REFUSALS[None])
        successor = new_refresh_token()
        now = self._clock()
        rotation = await self._store.rotate(
            hash_refresh_token(refresh_token),
            NewToken(hash_refresh_token(successor), now + self._refresh_ttl),
            now,
        )
        if rotation.verdict is Verdict.ROTATE and rotation.user is not None:
            return await self._pair(rotation.user, successor)
        if rotation.verdict is Verdict.REUSED and rotation.user is not None:
            await self._trail.record(
                REFRESH_REUSED,
                DENIED,
                actor=rotation.user.username,
                target=rotation.user.username,
                detail="a rotated refresh token was presented again; its family is revoked",
            )
        raise unauthenticated(_REFUSALS[rotation.verdict])

    async def logout(self, identity: Identity, refresh_token: str) -> None:
        """End the caller's session: its refresh-token family and this access token, at once.

        Raises:
            RpcStatusError: INVALID_ARGUMENT when the refresh token is missing, unknown, or
                not the caller's (then nothing is revoked); UNAVAILABLE when the access token
                cannot be revoked now (NATS unreachable): sign out again, the refresh token
                still names the (ended) session.

        """
        if not refresh_token:
            raise invalid_argument({"refresh_token": "required"})
        now = self._clock()
        ended = len(refresh_token) <= MAX_REFRESH_TOKEN and await self._store.end_family(
            hash_refresh_token(refresh_token), identity.user_id, now
        )
        if not ended:
            raise invalid_argument({"refresh_token": "not a session of the caller"})
        try:
            await self._revocations.revoke_token(identity.token_id, identity.expires_at)
        except RevocationStoreError as exc:
            raise unavailable(f"cannot revoke the access token now: {exc}", 1.0) from exc
        await self._trail.record(LOGOUT, actor=identity.username, target=identity.username)

    async def _wrong(self, username: str, address: str, why: str) -> None:
        """Count a failed login of the (username, address) pair; audit it at a bounded rate.

        The username is username-shaped (checked before), so a row holds at most 32 safe
        characters; an address that fails faster than ``failure_audit_per_second`` is
        throttled anyway, and its further rows are not written.
        """
        failure = await self._throttle.failed(username, address)
        if not await self._throttle.may_audit_failure(address):
            return
        await self._trail.record(
            LOGIN, DENIED, actor=username, target=username, detail=f"{why} ({address[:64]})"
        )
        if failure.locked:
            await self._trail.record(
                LOCKOUT,
                actor=username,
                target=username,
                detail=f"consecutive failures from {address[:64]}",
            )

    async def _pair(self, user: User, refresh_token: str) -> TokenPair:
        # Tokens carry whole seconds: one signed in the second the account was revoked would be
        # refused, so it is signed once that second is over (a wait of at most a second).
        wait = self._revocations.valid_after(user.user_id) - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        access = self._issuer.issue(user_id=user.user_id, username=user.username, role=user.role)
        return TokenPair(
            access_token=access.token,
            refresh_token=refresh_token,
            expires_in=int(self._access_ttl.total_seconds()),
        )
