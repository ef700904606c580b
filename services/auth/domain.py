"""The auth service's rules, with no I/O: input validation, refresh tokens, paging.

Everything here is a pure function of its arguments (the clock is passed in), so the rules are
unit-tested without a database and the store and handlers only apply them.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sutazai.auth.v1 import access_pb2
from sutazai.runtime.roles import ACCOUNT_ROLES, Role
from sutazai.services.auth.passwords import MAX_LENGTH, password_problems

USERNAME = re.compile(r"[A-Za-z0-9._-]{3,32}")
# A shape check, not RFC 5322: one @, no spaces, a dot in the domain. Whether the address
# works is only proven by mail, which the mesh does not send.
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
MAX_EMAIL = 254
_FORBIDDEN = "must not contain NUL, control characters or unpaired surrogates"


@dataclass(frozen=True, slots=True)
class User:
    """One account as stored."""

    user_id: str
    username: str
    email: str
    role: Role
    active: bool
    password_hash: str
    created_at: datetime
    last_login_at: datetime | None


def username_problem(username: str) -> str | None:
    """Why ``username`` cannot be a username, or ``None``."""
    if USERNAME.fullmatch(username) is None:
        return "must be 3 to 32 characters of letters, digits, '.', '_' or '-'"
    return None


def unsafe_text(value: str, *, controls: bool = True) -> bool:
    """Whether ``value`` holds what no stored or hashed field may.

    That is NUL (PostgreSQL refuses it), unpaired surrogates (not encodable as UTF-8) and, with
    ``controls``, other control characters.
    """
    for char in value:
        category = unicodedata.category(char)
        if char == "\0" or category == "Cs" or (controls and category == "Cc"):
            return True
    return False


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be any account's password (policy aside), or ``None``."""
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    if unsafe_text(password, controls=False):
        return _FORBIDDEN
    return None


def email_problem(email: str) -> str | None:
    """Why ``email`` does not look like an e-mail address, or ``None``."""
    if unsafe_text(email):
        return _FORBIDDEN
    if len(email) > MAX_EMAIL:
        return f"must be at most {MAX_EMAIL} characters"
    if EMAIL.fullmatch(email) is None:
        return "must be an e-mail address such as name@example.org"
    return None


def registration_violations(username: str, email: str, password: str) -> dict[str, str]:
    """Field violations of a new account (empty when it may be created)."""
    violations = {}
    if (problem := username_problem(username)) is not None:
        violations["username"] = problem
    if (problem := email_problem(email)) is not None:
        violations["email"] = problem
    if (problem := password_problem(password)) is not None:
        violations["password"] = problem
    elif problems := password_problems(password, username=username):
        violations["password"] = "; ".join(problems)
    return violations


def credential_violations(username: str, password: str) -> dict[str, str]:
    """Field violations of a sign-in attempt: only what no account could ever accept.

    A name that is not username-shaped cannot exist (the rule is public), so refusing it tells
    nothing about accounts; it also bounds what a failed sign-in writes to the audit log.
    """
    violations = {}
    if not username:
        violations["username"] = "required"
    elif (problem := username_problem(username)) is not None:
        violations["username"] = problem
    if not password:
        violations["password"] = "required"  # noqa: S105 - a field violation
    elif (problem := password_problem(password)) is not None:
        violations["password"] = problem
    return violations


def role_problem(value: int) -> str | None:
    """Why ``value`` (a ``sutazai.auth.v1.Role`` number) is no account's role, or ``None``.

    ``ROLE_UNSPECIFIED`` is what a request that names no role carries; a number this version
    does not know arrives as itself (proto3 enums are open).
    """
    if value in ACCOUNT_ROLES:
        return None
    return "must be one of " + ", ".join(access_pb2.Role.Name(role.wire) for role in ACCOUNT_ROLES)


REFRESH_TOKEN_BYTES = 32


def new_refresh_token() -> str:
    """A fresh opaque refresh token (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def hash_refresh_token(token: str) -> str:
    """What the store keeps of a refresh token: its SHA-256, hex.

    A fast hash suffices (unlike passwords): the token is 256 random bits, so a leaked table
    cannot be brute-forced back into working tokens.
    """
    return hashlib.sha256(token.encode()).hexdigest()


class Verdict(enum.Enum):
    """What presenting a refresh token means."""

    ROTATE = "rotate"
    """Valid: issue the next token of the family and retire this one."""
    REUSED = "reused"
    """Already rotated: a copy is in other hands; revoke the whole family."""
    REVOKED = "revoked"
    EXPIRED = "expired"
    INACTIVE = "inactive"
    """The account was deactivated."""


@dataclass(frozen=True, slots=True)
class RefreshState:
    """What the store knows about one presented refresh token."""

    rotated: bool
    revoked: bool
    expires_at: datetime
    user_active: bool


def judge_refresh(state: RefreshState, now: datetime) -> Verdict:
    """The verdict on a presented refresh token.

    Reuse is checked first: a rotated token is evidence of theft whatever else holds, even in
    a family already revoked or expired.
    """
    if state.rotated:
        return Verdict.REUSED
    if state.revoked:
        return Verdict.REVOKED
    if now >= state.expires_at:
        return Verdict.EXPIRED
    if not state.user_active:
        return Verdict.INACTIVE
    return Verdict.ROTATE


@dataclass(frozen=True, slots=True)
class PageLimits:
    """Bounds of one listing's ``page_size``."""

    default: int
    maximum: int

    def size(self, requested: int) -> int | None:
        """The page size to use for ``requested`` (0 means the default), ``None`` if invalid."""
        if requested == 0:
            return self.default
        if 1 <= requested <= self.maximum:
            return requested
        return None

    def problem(self) -> str:
        """The field violation of a page size out of range."""
        return f"must be 1 to {self.maximum} (0 for {self.default})"


def encode_page_token(listing: str, position: str | int) -> str:
    """An opaque token continuing ``listing`` after ``position``."""
    raw = json.dumps({"l": listing, "p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_page_token(listing: str, token: str) -> str | int | None:
    """The position in a token of ``listing``; ``None`` if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(document, dict) or document.get("l") != listing:
        return None
    position = document.get("p")
    # bool is an int; a token never holds one.
    if isinstance(position, str | int) and not isinstance(position, bool):
        return position
    return None


REORDER_WINDOW = 64
"""How far below the newest id a watcher still looks for events it has not seen.

Event ids come from a sequence when an insert starts, but inserts commit in their own order:
an event can become visible after one with a larger id. A watcher that only read ``id > last``
would skip it; re-reading the ids it has not seen just below ``last`` delivers it late instead.
"""


class WatchCursor:
    """Where one audit-log watcher stands: what it sent and which ids below that it may miss."""

    def __init__(self, start: int) -> None:
        """Start after event id ``start`` (ids up to it are not this watcher's business)."""
        self._start = start
        self.last = start
        self._seen: set[int] = set()

    def gaps(self) -> list[int]:
        """Ids within :data:`REORDER_WINDOW` below ``last`` not yet sent.

        Filtered-out, rolled-back and late ones alike: the database says which exist and match.
        """
        return [i for i in range(self._floor() + 1, self.last) if i not in self._seen]

    def _floor(self) -> int:
        return max(self._start, self.last - REORDER_WINDOW)

    def advance(self, event_ids: list[int]) -> list[int]:
        """Record ids read from the database; return those not sent before, in the given order."""
        fresh = []
        for event_id in event_ids:
            if event_id <= self._floor() or event_id in self._seen:
                continue
            fresh.append(event_id)
            self._seen.add(event_id)
            self.last = max(self.last, event_id)
        floor = self._floor()
        self._seen = {i for i in self._seen if i > floor}
        return fresh
