"""Password policy and argon2id hashing, kept off the event loop.

Hashing and verifying cost tens of milliseconds of CPU and 64 MiB each (RFC 9106 low-memory
profile), so :class:`Passwords` runs them in worker threads, at most ``workers`` at a time: a
sign-in never stalls other calls, and a burst of sign-ins cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 128
"""argon2 accepts more, but an unbounded input is a CPU-exhaustion lever."""
MIN_CLASSES = 3


def password_problems(password: str, *, username: str = "") -> list[str]:
    """Everything wrong with a proposed password, as readable sentences (empty when fine)."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        problems.append(f"must be at most {MAX_LENGTH} characters")
    classes = [
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(c in string.punctuation or c.isspace() for c in password),
    ]
    if sum(classes) < MIN_CLASSES:
        problems.append(
            "must mix at least three of: lower-case, upper-case, digits, symbols or spaces"
        )
    if username and username.casefold() in password.casefold():
        problems.append("must not contain the username")
    return problems


class Passwords:
    """Hashes and verifies passwords with argon2id in bounded worker threads."""

    def __init__(self, hasher: PasswordHasher | None = None, *, workers: int | None = None) -> None:
        """Use ``hasher`` (argon2-cffi's RFC 9106 low-memory defaults when ``None``).

        Args:
            hasher: the argon2 parameters.
            workers: hashes computed at once; the CPU count when ``None``.

        """
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(workers or os.cpu_count() or 2)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        """An encoded argon2id hash (salt and parameters included)."""
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, encoded: str, password: str) -> bool:
        """Whether ``password`` matches ``encoded``; a malformed hash never matches."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, encoded, password)

    async def verify_nothing(self, password: str) -> None:
        """Spend the time of one verification without a user to verify against.

        Sign-ins of unknown, locked or inactive accounts call this, so the time an answer
        takes does not tell whether the account exists or why it failed.
        """
        if self._dummy is None:
            # Hashing costs what verifying does, so even the first call takes the usual time.
            self._dummy = await self.hash(secrets.token_urlsafe(16))
            return
        await self.verify(self._dummy, password)

    def needs_rehash(self, encoded: str) -> bool:
        """Whether the hash was made with other parameters than today's."""
        try:
            return self._hasher.check_needs_rehash(encoded)
        except InvalidHashError:
            return True

    def _verify(self, encoded: str, password: str) -> bool:
        try:
            return self._hasher.verify(encoded, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
