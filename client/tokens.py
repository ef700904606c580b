"""The signed-in session's tokens and where they are kept.

:class:`FileTokenStore` is the one shared by the CLI and the dashboard:
``<state dir>/cli_token.json``, mode 0600, written atomically (a reader never sees half a file,
nor a moment when it is readable by others). Refresh tokens rotate and a reused one revokes
its whole family, so processes sharing the file must never both spend the same one: a store
that can be shared offers :meth:`SharedTokenStore.exclusive`, which the session holds from
reading the refresh token until the rotated pair is saved.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from sutazai.client.errors import TokenFileError
from sutazai.runtime.files import exclusive_lock, replace_file

TOKEN_FILE = "cli_token.json"  # noqa: S105 - a file name
"""The token file's name in the state directory (the name predates the dashboard)."""

_LOCK_FILE = ".cli_token.lock"
_MAX_FILE_BYTES = 64 * 1024
"""A token file is well under 4 KiB; anything bigger is not ours and is not read."""


@dataclass(frozen=True, slots=True)
class SessionTokens:
    """What a token store keeps: the current access token and the refresh token behind it."""

    access_token: str
    refresh_token: str
    expires_at: datetime
    """When the access token expires (UTC)."""

    def __repr__(self) -> str:
        # Never print a token, not even in a traceback's locals or a test's assertion.
        return f"SessionTokens(expires_at={self.expires_at.isoformat()})"


class TokenStore(Protocol):
    """Where a client keeps its session between calls (and, for files, between processes)."""

    def load(self) -> SessionTokens | None:
        """The saved session, or ``None`` when nobody is signed in."""

    def save(self, tokens: SessionTokens) -> None:
        """Keep ``tokens``, replacing whatever was saved."""

    def clear(self) -> None:
        """Forget the saved session (signing out)."""


@runtime_checkable
class SharedTokenStore(TokenStore, Protocol):
    """A store that several clients may share; refreshing holds :meth:`exclusive`."""

    def exclusive(self) -> AbstractContextManager[None]:
        """A lock held while a refresh token is read, spent, and its successor saved.

        Blocking: the session takes it in a worker thread.
        """


class FileTokenStore:
    """``<state dir>/cli_token.json`` (0600, atomic), locked across processes when refreshing."""

    def __init__(self, state_dir: Path) -> None:
        """Keep the session in ``state_dir`` (created 0700 on the first save)."""
        self._state_dir = state_dir

    @property
    def path(self) -> Path:
        """The token file."""
        return self._state_dir / TOKEN_FILE

    def load(self) -> SessionTokens | None:
        """The saved session, or ``None`` when there is no file.

        Raises:
            TokenFileError: the file is unreadable, malformed, or readable by others.

        """
        path = self.path
        try:
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise TokenFileError(f"{path} is mode {mode:o}; it must be 0600")
            with path.open("rb") as handle:
                raw = handle.read(_MAX_FILE_BYTES + 1)
            if len(raw) > _MAX_FILE_BYTES:
                raise TokenFileError(f"{path} is too large to be a token file")
            document = json.loads(raw)
            expires_at = datetime.fromisoformat(str(document["expires_at"]))
            tokens = SessionTokens(
                access_token=str(document["access_token"]),
                refresh_token=str(document["refresh_token"]),
                expires_at=expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # The message names the file and the problem, never its content.
            raise TokenFileError(
                f"cannot read {path}: {type(exc).__name__}; sign in again with 'sutazai login'"
            ) from None
        return tokens

    def save(self, tokens: SessionTokens) -> None:
        """Write the session, mode 0600, atomically."""
        self._state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        document = {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "expires_at": tokens.expires_at.astimezone(UTC).isoformat(timespec="seconds"),
        }
        replace_file(self.path, json.dumps(document))

    def clear(self) -> None:
        """Remove the token file (nothing to do when there is none)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def exclusive(self) -> AbstractContextManager[None]:
        """``flock`` on ``<state dir>/.cli_token.lock``: serialises refreshes across processes."""
        self._state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return exclusive_lock(self._state_dir / _LOCK_FILE)


class MemoryTokenStore:
    """A session kept in memory only: for tests and for embedding the client in a process."""

    def __init__(self, tokens: SessionTokens | None = None) -> None:
        """Start with ``tokens`` (signed out when ``None``)."""
        self._tokens = tokens
        self._lock = threading.Lock()

    def load(self) -> SessionTokens | None:
        """The kept session."""
        return self._tokens

    def save(self, tokens: SessionTokens) -> None:
        """Keep ``tokens``."""
        self._tokens = tokens

    def clear(self) -> None:
        """Forget the session."""
        self._tokens = None

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Serialises refreshes of the clients sharing this store (one process)."""
        with self._lock:
            yield
