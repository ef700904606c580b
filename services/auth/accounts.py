"""Accounts: creating them, the caller's own, and administering everyone's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sutazai.services.auth.domain import (
    LockoutPolicy,
    PageLimits,
    User,
    decode_page_token,
    encode_page_token,
    registration_violations,
    role_problem,
    username_problem,
)
from sutazai.services.auth.errors import already_exists, failed_precondition, unauthenticated
from sutazai.services.auth.passwords import Passwords, password_problems
from sutazai.services.auth.store import AuthStore, Taken
from sutazai.services.auth.trail import (
    DEACTIVATED,
    LOCKOUT,
    PASSWORD_CHANGED,
    ROLE_CHANGED,
    Trail,
)
from sutazai.services.runtime.faults import invalid_argument, not_found
from sutazai.services.runtime.roles import Role
from sutazai.services.runtime.tokens import Identity

USER_PAGE = PageLimits(default=50, maximum=200)
_LISTING = "users"
_WRONG_CURRENT = "does not match your current password"


class Accounts:
    """Register, GetMe, ChangePassword and the admin calls (also used by the CLI)."""

    def __init__(
        self,
        *,
        store: AuthStore,
        passwords: Passwords,
        trail: Trail,
        lockout: LockoutPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._passwords = passwords
        self._trail = trail
        self._lockout = lockout
        self._clock = clock

    async def create(
        self, *, username: str, email: str, password: str, role: Role, actor: str, action: str
    ) -> User:
        """Create an account; audit it as ``action`` by ``actor``.

        Raises:
            RpcStatusError: INVALID_ARGUMENT naming each bad field; ALREADY_EXISTS naming the
                taken one (username or email, compared case-insensitively).

        """
        if violations := registration_violations(username, email, password):
            raise invalid_argument(violations)
        password_hash = await self._passwords.hash(password)
        try:
            user = await self._store.create_user(
                username=username, email=email, password_hash=password_hash, role=role
            )
        except Taken as taken:
            refused = already_exists(taken.field, username if taken.field == "username" else email)
            await self._trail.record(
                action, refused.code.name, actor=actor, target=username, detail=refused.message
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

    async def change_password(self, identity: Identity, current: str, new: str) -> int:
        """Replace the caller's password and revoke all their refresh tokens; return how many.

        Raises:
            RpcStatusError: INVALID_ARGUMENT naming ``current_password`` or ``new_password``;
                FAILED_PRECONDITION while the account is locked.

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
        await self._check_current(user, current)
        revoked = await self._store.change_password(
            user.user_id, await self._passwords.hash(new), self._clock()
        )
        await self._trail.record(
            PASSWORD_CHANGED,
            actor=user.username,
            target=user.username,
            detail=f"{revoked} refresh tokens revoked",
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

    async def set_role(self, identity: Identity, username: str, label: str) -> User:
        """Give ``username`` the role ``label``; it applies from their next sign-in or refresh.

        Raises:
            RpcStatusError: INVALID_ARGUMENT (``username``, ``role``), NOT_FOUND, or
                FAILED_PRECONDITION for the caller's own account.

        """
        violations = {}
        if (problem := username_problem(username)) is not None:
            violations["username"] = problem
        if (problem := role_problem(label)) is not None:
            violations["role"] = problem
        if violations:
            raise invalid_argument(violations)
        target = await self._others_account(identity, username, "change their own role")
        changed = await self._store.set_role(target.user_id, Role.from_label(label))
        if changed is None:
            raise not_found("user", username)
        await self._trail.record(
            ROLE_CHANGED,
            actor=identity.username,
            target=changed.username,
            detail=f"{target.role.label} -> {changed.role.label}",
        )
        return changed

    async def deactivate(self, identity: Identity, username: str) -> User:
        """Disable ``username``'s account and revoke its refresh tokens.

        Raises:
            RpcStatusError: INVALID_ARGUMENT, NOT_FOUND, or FAILED_PRECONDITION for the
                caller's own account.

        """
        if (problem := username_problem(username)) is not None:
            raise invalid_argument({"username": problem})
        target = await self._others_account(identity, username, "deactivate themselves")
        changed = await self._store.deactivate(target.user_id, self._clock())
        if changed is None:
            raise not_found("user", username)
        await self._trail.record(DEACTIVATED, actor=identity.username, target=changed.username)
        return changed

    async def _others_account(self, identity: Identity, username: str, action: str) -> User:
        target = await self._store.user_by_name(username)
        if target is None:
            raise not_found("user", username)
        if target.user_id == identity.user_id:
            raise failed_precondition(f"admins cannot {action}; ask another admin")
        return target

    async def _check_current(self, user: User, current: str) -> None:
        """Refuse a locked account or a wrong current password.

        A wrong current password counts towards the lock-out like a failed sign-in: a stolen
        access token must not become an unlimited password oracle. The caller is signed in as
        the user, so (unlike at sign-in) the lock itself is no secret to them.
        """
        refused = None
        if self._lockout.is_locked(user.locked_until, self._clock()):
            refused = failed_precondition("the account is locked after repeated wrong passwords")
        elif not await self._passwords.verify(user.password_hash, current):
            refused = invalid_argument({"current_password": _WRONG_CURRENT})
            failure = await self._store.record_failure(user.user_id, self._lockout, self._clock())
            if failure is not None and failure.locked_until is not None:
                await self._trail.record(
                    LOCKOUT,
                    actor=user.username,
                    target=user.username,
                    detail="consecutive failures (password change); locked until "
                    f"{failure.locked_until.isoformat(timespec='seconds')}",
                )
        if refused is not None:
            await self._trail.record(
                PASSWORD_CHANGED,
                refused.code.name,
                actor=user.username,
                target=user.username,
                detail=refused.message,
            )
            raise refused
