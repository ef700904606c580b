"""Signing in and out: passwords to token pairs, refresh-token rotation, revocation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc

from sutazai.services.auth.domain import (
    LockoutPolicy,
    User,
    Verdict,
    credential_violations,
    hash_refresh_token,
    new_refresh_token,
)
from sutazai.services.auth.errors import invalid_credentials, unauthenticated
from sutazai.services.auth.passwords import Passwords
from sutazai.services.auth.store import AuthStore, NewToken
from sutazai.services.auth.trail import (
    LOCKOUT,
    LOGIN,
    LOGOUT,
    REFRESH_REUSED,
    Trail,
)
from sutazai.services.runtime.denylist import DenyList
from sutazai.services.runtime.faults import invalid_argument
from sutazai.services.runtime.tokens import Identity, TokenIssuer

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
        deny_list: DenyList,
        trail: Trail,
        lockout: LockoutPolicy,
        access_ttl: timedelta,
        refresh_ttl: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._passwords = passwords
        self._issuer = issuer
        self._deny_list = deny_list
        self._trail = trail
        self._lockout = lockout
        self._access_ttl = access_ttl
        self._refresh_ttl = refresh_ttl
        self._clock = clock

    async def login(self, username: str, password: str) -> TokenPair:
        """A token pair for valid credentials.

        Raises:
            RpcStatusError: INVALID_ARGUMENT for empty or oversized fields; otherwise the same
                UNAUTHENTICATED for a wrong password and an unknown, locked or inactive account.

        """
        if violations := credential_violations(username, password):
            raise invalid_argument(violations)
        user = await self._store.user_by_name(username)
        refusal = self._refusal(user)
        if user is None or refusal:
            # Spend the time a real check takes: the answer's timing must not tell either.
            await self._passwords.verify_nothing(password)
            await self._failed(username, refusal or "no such account")
            raise invalid_credentials()
        if not await self._passwords.verify(user.password_hash, password):
            await self._wrong_password(user)
            raise invalid_credentials()
        new_hash = None
        if self._passwords.needs_rehash(user.password_hash):
            new_hash = await self._passwords.hash(password)
        refresh = new_refresh_token()
        now = self._clock()
        signed_in = await self._store.record_success(
            user.user_id,
            self._lockout,
            now,
            first_token=NewToken(hash_refresh_token(refresh), now + self._refresh_ttl),
            new_hash=new_hash,
        )
        if signed_in is None:
            await self._failed(username, "locked or deactivated during the check")
            raise invalid_credentials()
        await self._trail.record(LOGIN, actor=signed_in.username, target=signed_in.username)
        return self._pair(signed_in, refresh)

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
            return self._pair(rotation.user, successor)
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
                not the caller's (then nothing is revoked).

        """
        if not refresh_token:
            raise invalid_argument({"refresh_token": "required"})
        now = self._clock()
        ended = len(refresh_token) <= MAX_REFRESH_TOKEN and await self._store.end_family(
            hash_refresh_token(refresh_token), identity.user_id, now
        )
        if not ended:
            raise invalid_argument({"refresh_token": "not a session of the caller"})
        remaining = math.ceil((identity.expires_at - now).total_seconds())
        await self._deny_list.revoke(identity.token_id, remaining)
        await self._trail.record(LOGOUT, actor=identity.username, target=identity.username)

    def _refusal(self, user: User | None) -> str:
        """Why ``user`` may not sign in whatever the password, or ``""``."""
        if user is None:
            return ""
        if not user.active:
            return "account inactive"
        if self._lockout.is_locked(user.locked_until, self._clock()):
            return "account locked"
        return ""

    async def _wrong_password(self, user: User) -> None:
        failure = await self._store.record_failure(user.user_id, self._lockout, self._clock())
        if failure is None:
            await self._failed(user.username, "account locked")
            return
        if failure.locked_until is None:
            await self._failed(
                user.username,
                f"wrong password ({failure.failed_logins} of {self._lockout.threshold})",
            )
            return
        await self._failed(user.username, "wrong password; account locked")
        await self._trail.record(
            LOCKOUT,
            actor=user.username,
            target=user.username,
            detail=f"{self._lockout.threshold} consecutive failures; locked until "
            f"{failure.locked_until.isoformat(timespec='seconds')}",
        )

    async def _failed(self, username: str, why: str) -> None:
        await self._trail.record(LOGIN, DENIED, actor=username, target=username, detail=why)

    def _pair(self, user: User, refresh_token: str) -> TokenPair:
        access = self._issuer.issue(user_id=user.user_id, username=user.username, role=user.role)
        return TokenPair(
            access_token=access.token,
            refresh_token=refresh_token,
            expires_in=int(self._access_ttl.total_seconds()),
        )
