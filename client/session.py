"""The signed-in session: sign-in, the access token for each call, and its refresh.

An access token is refreshed proactively when less than :data:`REFRESH_MARGIN` is left, and
once more when the mesh answers ``UNAUTHENTICATED`` (revoked early, clock skew). Refresh
tokens rotate and reusing one revokes the whole family, so a refresh is serialised twice: an
:class:`asyncio.Lock` for this client's own tasks, and the store's exclusive lock
(:meth:`SharedTokenStore.exclusive`, a ``flock`` for the token file) for every other client
and process sharing the store. After taking the locks the store is read again: if someone
else already rotated the pair, their fresh access token is used and nothing is spent.

Tokens are never logged, printed or put in an exception message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import grpc

from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.auth.v1.auth_service_pb2_grpc import AuthServiceStub
from sutazai.client.errors import CallFailed, ClientError, SessionEnded
from sutazai.client.statuses import translate
from sutazai.client.tokens import SessionTokens, SharedTokenStore, TokenStore

REFRESH_MARGIN = timedelta(seconds=60)
"""Refresh when less than this is left, so a call never leaves with an expiring token."""

_REFUSED = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT})
"""What ``Refresh`` answers for an unknown, revoked, reused or expired refresh token."""


class Session:
    """The session of one client: its tokens in memory, backed by a :class:`TokenStore`."""

    def __init__(
        self,
        store: TokenStore,
        auth: Callable[[], AuthServiceStub],
        *,
        target: str,
        call_timeout: float,
    ) -> None:
        """Keep the session in ``store``; sign in and refresh through ``auth()`` (the edge)."""
        self._store = store
        self._auth = auth
        self._target = target
        self._call_timeout = call_timeout
        self._tokens: SessionTokens | None = None
        self._loaded = False
        self._lock = asyncio.Lock()

    async def sign_in(self, username: str, password: str) -> SessionTokens:
        """``AuthService/Login``; the new session replaces the saved one.

        Raises:
            CallFailed: the credentials are refused (``UNAUTHENTICATED``, with the server's
                deliberately vague message), invalid, or the account must wait.
            MeshUnavailable: the edge or the auth service is unreachable.

        """
        sent_at = datetime.now(UTC)
        try:
            reply = await self._auth().Login(
                auth_pb.LoginRequest(username=username, password=password),
                timeout=self._call_timeout,
            )
        except grpc.aio.AioRpcError as exc:
            error = translate(exc, self._target)
            if isinstance(error, SessionEnded):
                # A refused sign-in is not a session that ended: say what the mesh said.
                error = CallFailed(exc.code(), exc.details() or "")
            raise error from None
        tokens = _tokens(reply, sent_at)
        async with self._exclusive():
            self._store.save(tokens)
        self._tokens, self._loaded = tokens, True
        return tokens

    def saved(self) -> SessionTokens | None:
        """The session as last seen (loaded from the store on first use).

        Raises:
            TokenFileError: the saved session cannot be trusted.

        """
        if not self._loaded:
            self._tokens = self._store.load()
            self._loaded = True
        return self._tokens

    async def access_token(self, *, required: bool) -> str | None:
        """An access token with at least :data:`REFRESH_MARGIN` left, refreshing if needed.

        Args:
            required: without a session, raise :class:`SessionEnded` (else return ``None``,
                for public calls, which then go out anonymously).

        Raises:
            SessionEnded: ``required`` and nobody is signed in or the session ended;
                :class:`TokenFileError` even when not ``required``.
            MeshUnavailable: the refresh could not reach the mesh.

        """
        tokens = self.saved()
        if tokens is None:
            if required:
                raise SessionEnded("not signed in: sign in with 'sutazai login'")
            return None
        if tokens.expires_at - datetime.now(UTC) > REFRESH_MARGIN:
            return tokens.access_token
        try:
            return (await self.renew(tokens.access_token)).access_token
        except SessionEnded:
            if required:
                raise
            return None

    async def renew(self, stale_access_token: str) -> SessionTokens:
        """A session whose access token is not ``stale_access_token`` and not expiring.

        Raises:
            SessionEnded: signed out (here or elsewhere) or the refresh was refused; the store
                is then cleared.
            MeshUnavailable: the mesh could not be reached (the session is kept).
            CallFailed: another refusal (e.g. too many refreshes).

        """
        async with self._lock, self._exclusive():
            # Another client or process may have rotated the pair while we waited.
            stored = self._store.load()
            self._tokens, self._loaded = stored, True
            if stored is None:
                raise SessionEnded("signed out: sign in again")
            if (
                stored.access_token != stale_access_token
                and stored.expires_at - datetime.now(UTC) > REFRESH_MARGIN
            ):
                return stored
            sent_at = datetime.now(UTC)
            try:
                reply = await self._auth().Refresh(
                    auth_pb.RefreshRequest(refresh_token=stored.refresh_token),
                    timeout=self._call_timeout,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() in _REFUSED:
                    self._store.clear()
                    self._tokens = None
                    raise SessionEnded(
                        f"the session ended ({exc.details()}): sign in again"
                    ) from None
                raise translate(exc, self._target) from None
            tokens = _tokens(reply, sent_at)
            self._store.save(tokens)
            self._tokens = tokens
            return tokens

    async def sign_out(self) -> None:
        """``AuthService/Logout`` (best effort) and clear the store, even if the call failed."""
        self._loaded = False  # the store's pair: another process may have rotated ours
        with contextlib.suppress(ClientError, grpc.aio.AioRpcError):
            # Logout needs a live access token: refresh first if ours is expiring.
            access_token = await self.access_token(required=True)
            if self._tokens is not None and access_token is not None:
                await self._auth().Logout(
                    auth_pb.LogoutRequest(refresh_token=self._tokens.refresh_token),
                    metadata=bearer(access_token),
                    timeout=self._call_timeout,
                )
        async with self._lock, self._exclusive():
            self._store.clear()
            self._tokens, self._loaded = None, True

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """Hold the store's exclusive lock (if it has one) without blocking the event loop."""
        if not isinstance(self._store, SharedTokenStore):
            yield
            return
        stack = contextlib.ExitStack()
        taking = asyncio.ensure_future(
            asyncio.to_thread(stack.enter_context, self._store.exclusive())
        )
        try:
            await asyncio.shield(taking)
        except asyncio.CancelledError:
            # The worker thread still gets the lock; let go of it as soon as it does.
            taking.add_done_callback(lambda _: stack.close())
            raise
        with stack:
            yield


def bearer(access_token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``access_token``."""
    return (("authorization", f"Bearer {access_token}"),)


def _tokens(
    reply: auth_pb.LoginResponse | auth_pb.RefreshResponse, sent_at: datetime
) -> SessionTokens:
    # Counted from before the call: the saved expiry is never later than the real one.
    return SessionTokens(
        access_token=reply.access_token,
        refresh_token=reply.refresh_token,
        expires_at=sent_at + timedelta(seconds=reply.expires_in),
    )
