"""Accounts: creating them, the caller's own, and administering everyone's.

Whatever ends a user's right to their tokens (deactivation, role change, password change,
"revoke all sessions") stamps the account in the revocation bucket. The admin calls stamp
*after* the database change: a sign-in racing the change either sees the new state or gets a
token issued before the stamp, which is refused; should the stamp fail (NATS unreachable) the
call answers UNAVAILABLE and the admin repeats it (each is idempotent). A password change
stamps before (so an unreachable NATS changes nothing and the user simply retries) and once
more after, for a sign-in with the old password that raced the change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from sutazai.runtime.faults import (
    failed_precondition,
    invalid_argument,
    not_found,
    unauthenticated,
    unavailable,
)
from sutazai.runtime.revocations import Revocations, RevocationStoreError
from sutazai.runtime.roles import Role
from sutazai.runtime.tokens import Identity
from sutazai.services.auth.domain import (
    PageLimits,
    User,
    decode_page_token,
    encode_page_token,
    registration_violations,
    role_problem,
    username_problem,
)
from sutazai.services.auth.errors import account_taken
from sutazai.services.auth.passwords import Passwords, password_problems
from sutazai.services.auth.store import AuthStore, Taken
from sutazai.services.auth.throttle import SignInThrottle
from sutazai.services.auth.trail import (
    DEACTIVATED,
    LOCKOUT,
    PASSWORD_CHANGED,
    ROLE_CHANGED,
    SESSIONS_REVOKED,
    UNLOCKED,
    Trail,
)

log = structlog.get_logger(__name__)

USER_PAGE = PageLimits(default=50, maximum=200)
_LISTING = "users"
_WRONG_CURRENT = "does not match your current password"


@dataclass(frozen=True, slots=True)
class RevokedSessions:
    """What "revoke all sessions" did."""

    refresh_tokens: int
    valid_after: datetime
    """Access tokens of the user issued before this are refused."""


class Accounts:
    """Register, GetMe, ChangePassword and the admin calls (also used by the CLI)."""

    def __init__(
        self,
        *,
        store: AuthStore,
        passwords: Passwords,
        trail: Trail,
        revocations: Revocations,
        throttle: SignInThrottle,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._passwords = passwords
        self._trail = trail
        self._revocations = revocations
        self._throttle = throttle
        self._clock = clock

    async def create(
        self, *, username: str, email: str, password: str, role: Role, actor: str, action: str
    ) -> User:
        """Create an account; audit it as ``action`` by ``actor``.

        Raises:
            RpcStatusError: INVALID_ARGUMENT naming each bad field; ALREADY_EXISTS, the same
                whether the username or the e-mail address is taken.

        """
        if violations := registration_violations(username, email, password):
            raise invalid_argument(violations)
        password_hash = await self._passwords.hash(password)
        try:
            user = await self._store.create_user(
                username=username, email=email, password_hash=password_hash, role=role
            )
        except Taken as taken:
            refused = account_taken()
            # The audit log (admins only) may say which one was taken; the caller may not.
            await self._trail.record(
                action, refused.code.name, actor=actor, target=username, detail=str(taken)
            )
            raise refused from taken
        await self._trail.record(
            action, actor=actor, target=user.username, detail=f"role {role.label}"
        )
        return user

    async def me(self, identity: Identity) -> User:
        """The caller's account.

        Raises:
            RpcStatusError: UNAUTHENTICATED when it was deactivated since the token was issued.

        """
        user = await self._store.user_by_id(identity.user_id)
        if user is None or not user.active:
            raise unauthenticated("the account is no longer active")
        return user

    async def change_password(
        self, identity: Identity, current: str, new: str, *, address: str
    ) -> int:
        """Replace the caller's password and sign out all their sessions.

        Returns how many refresh tokens were revoked; every access token of the caller (this
        one included) stops working too.

        Raises:
            RpcStatusError: INVALID_ARGUMENT naming ``current_password`` or ``new_password``;
                RESOURCE_EXHAUSTED while wrong current passwords from ``address`` must wait;
                UNAVAILABLE when the revocation bucket cannot be written.

        """
        user = await self.me(identity)
        violations = {}
        if not current:
            violations["current_password"] = "required"  # noqa: S105 - a field violation
        if problems := password_problems(new, username=user.username):
            violations["new_password"] = "; ".join(problems)
        elif new == current:
            violations["new_password"] = "must differ from the current password"  # noqa: S105
        if violations:
            raise invalid_argument(violations)
        await self._check_current(user, current, address)
        new_hash = await self._passwords.hash(new)
        await self._stamp(user.user_id)
        revoked = await self._store.change_password(user.user_id, new_hash, self._clock())
        try:
            await self._revocations.revoke_account(user.user_id)
        except RevocationStoreError as exc:
            # The first stamp already refuses every token of before; only a sign-in with the
            # old password in the last milliseconds is left, and the password has changed.
            log.warning("auth.restamp_failed", user_id=user.user_id, error=str(exc))
        await self._trail.record(
            PASSWORD_CHANGED,
            actor=user.username,
            target=user.username,
            detail=f"{revoked} refresh tokens revoked; all access tokens refused",
        )
        return revoked

    async def list_users(self, page_size: int, page_token: str) -> tuple[list[User], str]:
        """One page of accounts ordered by username, and the next page's token.

        Raises:
            RpcStatusError: INVALID_ARGUMENT naming ``page_size`` or ``page_token``.

        """
        violations = {}
        size = USER_PAGE.size(page_size)
        if size is None:
            violations["page_size"] = USER_PAGE.problem()
        after = decode_page_token(_LISTING, page_token) if page_token else None
        if page_token and not isinstance(after, str):
            violations["page_token"] = "not from a previous ListUsers response"  # noqa: S105
        if violations or size is None:
            raise invalid_argument(violations)
        users = await self._store.list_users(
            after=after if isinstance(after, str) else None, limit=size + 1
        )
        if len(users) <= size:
            return users, ""
        shown = users[:size]
        return shown, encode_page_token(_LISTING, shown[-1].username.lower())

    async def set_role(self, identity: Identity, username: str, role: int) -> User:
        """Give ``username`` the role numbered ``role``; their tokens of the old role stop working.

        Raises:
            RpcStatusError: INVALID_ARGUMENT (``username``, ``role``), NOT_FOUND,
                FAILED_PRECONDITION for the caller's own account, UNAVAILABLE (revocations).

        """
        violations = {}
        if (problem := username_problem(username)) is not None:
            violations["username"] = problem
        if (problem := role_problem(role)) is not None:
            violations["role"] = problem
        if violations:
            raise invalid_argument(violations)
        target = await self._others_account(identity, username, "change their own role")
        changed = await self._store.set_role(target.user_id, Role(role))
        if changed is None:
            raise not_found("user", username)
        await self._stamp(target.user_id)
        await self._trail.record(
            ROLE_CHANGED,
            actor=identity.username,
            target=changed.username,
            detail=f"{target.role.label} -> {changed.role.label}",
        )
        return changed

    async def deactivate(self, identity: Identity, username: str) -> User:
        """Disable ``username``'s account and revoke all its sessions and tokens.

        Raises:
            RpcStatusError: INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION for the caller's
                own account, UNAVAILABLE (revocations).

        """
        if (problem := username_problem(username)) is not None:
            raise invalid_argument({"username": problem})
        target = await self._others_account(identity, username, "deactivate themselves")
        changed = await self._store.deactivate(target.user_id, self._clock())
        if changed is None:
            raise not_found("user", username)
        await self._stamp(target.user_id)
        await self._trail.record(DEACTIVATED, actor=identity.username, target=changed.username)
        return changed

    async def revoke_sessions(self, actor: str, username: str) -> RevokedSessions:
        """Sign ``username`` out everywhere: refresh tokens, and access tokens issued until now.

        Raises:
            RpcStatusError: INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE (revocations).

        """
        target = await self._account(username)
        revoked = await self._store.revoke_sessions(target.user_id, self._clock())
        valid_after = await self._stamp(target.user_id)
        await self._trail.record(
            SESSIONS_REVOKED,
            actor=actor,
            target=target.username,
            detail=f"{revoked} refresh tokens revoked; access tokens issued before "
            f"{valid_after.isoformat(timespec='seconds')} refused",
        )
        return RevokedSessions(revoked, valid_after)

    async def unlock(self, actor: str, username: str) -> int:
        """End every sign-in wait and lock of ``username``; return how many pairs were cleared.

        Raises:
            RpcStatusError: INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE (Redis).

        """
        target = await self._account(username)
        cleared = await self._throttle.unlock(target.username)
        await self._trail.record(
            UNLOCKED, actor=actor, target=target.username, detail=f"{cleared} locks cleared"
        )
        return cleared

    async def _account(self, username: str) -> User:
        if (problem := username_problem(username)) is not None:
            raise invalid_argument({"username": problem})
        target = await self._store.user_by_name(username)
        if target is None:
            raise not_found("user", username)
        return target

    async def _others_account(self, identity: Identity, username: str, action: str) -> User:
        target = await self._account(username)
        if target.user_id == identity.user_id:
            raise failed_precondition(f"admins cannot {action}; ask another admin")
        return target

    async def _stamp(self, user_id: str) -> datetime:
        try:
            stamp = await self._revocations.revoke_account(user_id)
        except RevocationStoreError as exc:
            raise unavailable(f"cannot revoke the account's tokens now: {exc}", 1.0) from exc
        return datetime.fromtimestamp(stamp, UTC)

    async def _check_current(self, user: User, current: str, address: str) -> None:
        """Refuse a wrong current password, throttled like a failed sign-in.

        A stolen access token must not become an unlimited password oracle, so wrong current
        passwords count towards the (username, address) pair's waits and lock.
        """
        await self._throttle.check_login(user.username, address)
        if await self._passwords.verify(user.password_hash, current):
            return
        failure = await self._throttle.failed(user.username, address)
        if failure.locked:
            await self._trail.record(
                LOCKOUT,
                actor=user.username,
                target=user.username,
                detail=f"consecutive failures (password change) from {address[:64]}",
            )
        refused = invalid_argument({"current_password": _WRONG_CURRENT})
        await self._trail.record(
            PASSWORD_CHANGED,
            refused.code.name,
            actor=user.username,
            target=user.username,
            detail=refused.message,
        )
        raise refused
