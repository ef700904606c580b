"""Accounts and refresh tokens in PostgreSQL (schema ``auth``): every SQL statement of the service.

One rule keeps concurrent calls correct: whatever changes a user's sign-in state (password,
role, active flag, refresh tokens) first locks that user's row
(``SELECT … FOR UPDATE``) in the same transaction. Two refreshes of one token, a refresh racing
a logout, or a password change racing a sign-in are therefore applied one after the other, and
each sees what the previous one committed (READ COMMITTED re-reads per statement).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from sutazai.runtime.migrations import migrate
from sutazai.runtime.roles import Role
from sutazai.services.auth.domain import (
    RefreshState,
    User,
    Verdict,
    judge_refresh,
)
from sutazai.services.auth.errors import AuthError

SCHEMA = "auth"
MIGRATIONS = "sutazai.services.auth.migrations"
_USER = "id, username, email, role, active, password_hash, created_at, last_login_at"
# Which unique index a duplicate hit, by the index names of the migrations.
_TAKEN_FIELD = {"users_username_key": "username", "users_email_key": "email"}

Connection = asyncpg.Connection | PoolConnectionProxy


class Taken(AuthError):  # noqa: N818 - the name reads as the outcome: the username is taken
    """A new account's username or e-mail address is already in use."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} is taken")
        self.field = field


@dataclass(frozen=True, slots=True)
class NewToken:
    """A refresh token to store: its hash and when it expires."""

    token_hash: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Rotation:
    """What presenting a refresh token did."""

    verdict: Verdict | None
    """``None`` when no such token was ever issued."""
    user: User | None = None
    """The token's owner (after the change, if any)."""


async def open_store(pool: asyncpg.Pool) -> AuthStore:
    """Apply the auth schema's migrations (idempotent) and return the store."""
    await migrate(pool, SCHEMA, MIGRATIONS)
    return AuthStore(pool)


class AuthStore:
    """Reads and writes accounts and refresh tokens. Build it with :func:`open_store`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_user(
        self, *, username: str, email: str, password_hash: str, role: Role
    ) -> User:
        """Insert an account.

        Raises:
            Taken: the username or e-mail address is in use (compared case-insensitively).

        """
        try:
            row = await self._pool.fetchrow(
                f"INSERT INTO auth.users (username, email, password_hash, role) "  # noqa: S608
                f"VALUES ($1, $2, $3, $4) RETURNING {_USER}",
                username,
                email,
                password_hash,
                role.label,
            )
        except asyncpg.UniqueViolationError as exc:
            field = _TAKEN_FIELD.get(exc.constraint_name or "")
            if field is None:
                raise
            raise Taken(field) from exc
        return _user(row)

    async def user_by_name(self, username: str) -> User | None:
        """The account called ``username`` (any case)."""
        row = await self._pool.fetchrow(
            f"SELECT {_USER} FROM auth.users WHERE lower(username) = lower($1)",  # noqa: S608
            username,
        )
        return None if row is None else _user(row)

    async def user_by_id(self, user_id: str) -> User | None:
        """The account with this id (``None`` also for a malformed id)."""
        key = _uuid(user_id)
        if key is None:
            return None
        row = await self._pool.fetchrow(
            f"SELECT {_USER} FROM auth.users WHERE id = $1",  # noqa: S608
            key,
        )
        return None if row is None else _user(row)

    async def list_users(self, *, after: str | None, limit: int) -> list[User]:
        """Up to ``limit`` accounts ordered by lower-cased username, after ``after`` if given."""
        rows = await self._pool.fetch(
            f"SELECT {_USER} FROM auth.users "  # noqa: S608
            "WHERE $1::text IS NULL OR lower(username) > $1 "
            "ORDER BY lower(username) LIMIT $2",
            after,
            limit,
        )
        return [_user(r) for r in rows]

    async def record_success(
        self,
        user_id: str,
        checked_hash: str,
        now: datetime,
        *,
        first_token: NewToken,
        new_hash: str | None = None,
    ) -> User | None:
        """Sign a user in: record the time, start a refresh-token family.

        Returns ``None`` (and changes nothing) when the account was deactivated or its
        password changed (``checked_hash`` is the hash the password was checked against)
        while the password was being checked. ``new_hash`` replaces a hash made with outdated
        parameters. Expired tokens of the user are pruned on the way.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            user = await _lock_user(conn, user_id)
            if user is None or not user.active or user.password_hash != checked_hash:
                return None
            key = uuid.UUID(user.user_id)
            row = await conn.fetchrow(
                "UPDATE auth.users SET last_login_at = $2, "  # noqa: S608
                "password_hash = coalesce($3, password_hash) "
                f"WHERE id = $1 RETURNING {_USER}",
                key,
                now,
                new_hash,
            )
            await conn.execute(
                "DELETE FROM auth.refresh_tokens WHERE user_id = $1 AND expires_at < $2",
                key,
                now,
            )
            await _insert_token(conn, key, uuid.uuid4(), first_token)
            return _user(row)

    async def rotate(self, token_hash: str, next_token: NewToken, now: datetime) -> Rotation:
        """Apply the verdict on a presented refresh token.

        ``ROTATE`` retires it and stores ``next_token`` in its family; ``REUSED`` revokes the
        family (and commits that, although the caller refuses the request).
        """
        async with self._pool.acquire() as conn, conn.transaction():
            owner = await conn.fetchval(
                "SELECT user_id FROM auth.refresh_tokens WHERE token_hash = $1", token_hash
            )
            if owner is None:
                return Rotation(None)
            user = await _lock_user(conn, str(owner))
            # Re-read under the user's lock: a concurrent rotation or logout has committed.
            token = await conn.fetchrow(
                "SELECT id, family_id, rotated_at IS NOT NULL AS rotated, "
                "revoked_at IS NOT NULL AS revoked, expires_at "
                "FROM auth.refresh_tokens WHERE token_hash = $1",
                token_hash,
            )
            if user is None or token is None:
                return Rotation(None)
            verdict = judge_refresh(
                RefreshState(
                    rotated=token["rotated"],
                    revoked=token["revoked"],
                    expires_at=token["expires_at"],
                    user_active=user.active,
                ),
                now,
            )
            if verdict is Verdict.REUSED:
                await _revoke(conn, "family_id = $1", token["family_id"], now)
            elif verdict is Verdict.ROTATE:
                successor = await _insert_token(conn, owner, token["family_id"], next_token)
                await conn.execute(
                    "UPDATE auth.refresh_tokens SET rotated_at = $2, replaced_by = $3 "
                    "WHERE id = $1",
                    token["id"],
                    now,
                    successor,
                )
            return Rotation(verdict, user)

    async def end_family(self, token_hash: str, user_id: str, now: datetime) -> bool:
        """Revoke the family of one of ``user_id``'s refresh tokens (any of its generations).

        Returns ``False`` when the token is unknown or belongs to someone else.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            user = await _lock_user(conn, user_id)
            if user is None:
                return False
            family = await conn.fetchval(
                "SELECT family_id FROM auth.refresh_tokens WHERE token_hash = $1 AND user_id = $2",
                token_hash,
                uuid.UUID(user.user_id),
            )
            if family is None:
                return False
            await _revoke(conn, "family_id = $1", family, now)
            return True

    async def change_password(self, user_id: str, password_hash: str, now: datetime) -> int:
        """Set a new password hash and revoke every refresh token; return how many."""
        async with self._pool.acquire() as conn, conn.transaction():
            user = await _lock_user(conn, user_id)
            if user is None:
                return 0
            key = uuid.UUID(user.user_id)
            await conn.execute(
                "UPDATE auth.users SET password_hash = $2 WHERE id = $1",
                key,
                password_hash,
            )
            return await _revoke(conn, "user_id = $1", key, now)

    async def revoke_sessions(self, user_id: str, now: datetime) -> int:
        """Revoke every live refresh token of an account; return how many."""
        async with self._pool.acquire() as conn, conn.transaction():
            user = await _lock_user(conn, user_id)
            if user is None:
                return 0
            return await _revoke(conn, "user_id = $1", uuid.UUID(user.user_id), now)

    async def set_role(self, user_id: str, role: Role) -> User | None:
        """Change an account's role; ``None`` if there is no such account."""
        async with self._pool.acquire() as conn, conn.transaction():
            if await _lock_user(conn, user_id) is None:
                return None
            row = await conn.fetchrow(
                f"UPDATE auth.users SET role = $2 WHERE id = $1 RETURNING {_USER}",  # noqa: S608
                uuid.UUID(user_id),
                role.label,
            )
            return _user(row)

    async def deactivate(self, user_id: str, now: datetime) -> User | None:
        """Disable an account and revoke every refresh token; ``None`` if there is none."""
        async with self._pool.acquire() as conn, conn.transaction():
            if await _lock_user(conn, user_id) is None:
                return None
            key = uuid.UUID(user_id)
            row = await conn.fetchrow(
                f"UPDATE auth.users SET active = false WHERE id = $1 RETURNING {_USER}",  # noqa: S608
                key,
            )
            await _revoke(conn, "user_id = $1", key, now)
            return _user(row)


async def _lock_user(conn: Connection, user_id: str) -> User | None:
    key = _uuid(user_id)
    if key is None:
        return None
    row = await conn.fetchrow(
        f"SELECT {_USER} FROM auth.users WHERE id = $1 FOR UPDATE",  # noqa: S608
        key,
    )
    return None if row is None else _user(row)


async def _insert_token(
    conn: Connection, user_id: uuid.UUID, family_id: uuid.UUID, token: NewToken
) -> uuid.UUID:
    new_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO auth.refresh_tokens (family_id, user_id, token_hash, expires_at) "
        "VALUES ($1, $2, $3, $4) RETURNING id",
        family_id,
        user_id,
        token.token_hash,
        token.expires_at,
    )
    return new_id


async def _revoke(conn: Connection, where: str, key: uuid.UUID, now: datetime) -> int:
    """Revoke the live tokens matching ``where`` (a fixed clause of this module); count them."""
    status: str = await conn.execute(
        f"UPDATE auth.refresh_tokens SET revoked_at = $2 WHERE {where} AND revoked_at IS NULL",  # noqa: S608
        key,
        now,
    )
    # asyncpg returns the command tag, e.g. "UPDATE 3".
    return int(status.rsplit(" ", 1)[-1])


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _user(row: asyncpg.Record | None) -> User:
    if row is None:
        # Only reachable if a row locked in this transaction vanished: a broken invariant.
        raise LookupError("account row missing inside its own transaction")
    return User(
        user_id=str(row["id"]),
        username=row["username"],
        email=row["email"],
        role=Role.from_label(row["role"]),
        active=row["active"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
        last_login_at=row["last_login_at"],
    )
