"""gRPC handlers of ``sutazai.auth.v1.AuthService``: requests in, responses out.

Access control happens before these run (the runtime's guard, from the access table in the
protos); the rules live in :mod:`.accounts` and :mod:`.sessions`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from sutazai.auth.v1 import auth_service_pb2 as pb
from sutazai.auth.v1 import auth_service_pb2_grpc as pb_grpc
from sutazai.runtime.audit import AuditEvent
from sutazai.runtime.auth import _client_address, current_identity, require_identity
from sutazai.runtime.roles import Role
from sutazai.services.auth.accounts import Accounts
from sutazai.services.auth.audit_watch import AuditWatch
from sutazai.services.auth.domain import User
from sutazai.services.auth.sessions import Sessions
from sutazai.services.auth.throttle import SignInThrottle
from sutazai.services.auth.trail import REGISTER, Trail

TOKEN_TYPE = "Bearer"  # noqa: S105 - the OAuth token type, not a secret


class AuthHandlers(pb_grpc.AuthServiceServicer):
    """Every RPC of the auth service."""

    def __init__(
        self,
        accounts: Accounts,
        sessions: Sessions,
        throttle: SignInThrottle,
        trail: Trail,
        watch: AuditWatch,
    ) -> None:
        self._accounts = accounts
        self._sessions = sessions
        self._throttle = throttle
        self._trail = trail
        self._watch = watch

    async def Register(  # noqa: N802 - generated servicer method name
        self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterResponse:
        """Create an account with the ``user`` role."""
        await self._throttle.admit_address(client_address(context))
        caller = current_identity()
        user = await self._accounts.create(
            username=request.username,
            email=request.email,
            password=request.password,
            role=Role.USER,
            actor=caller.username if caller else "",
            action=REGISTER,
        )
        return pb.RegisterResponse(user=user_message(user))

    async def Login(  # noqa: N802 - generated servicer method name
        self, request: pb.LoginRequest, context: grpc.aio.ServicerContext
    ) -> pb.LoginResponse:
        """Exchange credentials for a token pair."""
        address = client_address(context)
        await self._throttle.admit_address(address)
        pair = await self._sessions.login(request.username, request.password, address=address)
        return pb.LoginResponse(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_in=pair.expires_in,
            token_type=TOKEN_TYPE,
        )

    async def Refresh(  # noqa: N802 - generated servicer method name
        self, request: pb.RefreshRequest, context: grpc.aio.ServicerContext
    ) -> pb.RefreshResponse:
        """Rotate a refresh token into a new pair."""
        await self._throttle.admit_address(client_address(context))
        pair = await self._sessions.refresh(request.refresh_token)
        return pb.RefreshResponse(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_in=pair.expires_in,
            token_type=TOKEN_TYPE,
        )

    async def Logout(  # noqa: N802 - generated servicer method name
        self, request: pb.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> pb.LogoutResponse:
        """Revoke the session's refresh-token family and the caller's access token."""
        await self._sessions.logout(require_identity(), request.refresh_token)
        return pb.LogoutResponse()

    async def GetMe(  # noqa: N802 - generated servicer method name
        self, request: pb.GetMeRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMeResponse:
        """The caller's account."""
        user = await self._accounts.me(require_identity())
        return pb.GetMeResponse(user=user_message(user))

    async def ChangePassword(  # noqa: N802 - generated servicer method name
        self, request: pb.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChangePasswordResponse:
        """Replace the caller's password; every refresh token of theirs stops working."""
        await self._accounts.change_password(
            require_identity(),
            request.current_password,
            request.new_password,
            address=client_address(context),
        )
        return pb.ChangePasswordResponse()

    async def ListUsers(  # noqa: N802 - generated servicer method name
        self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsersResponse:
        """One page of accounts, by username."""
        users, next_token = await self._accounts.list_users(request.page_size, request.page_token)
        return pb.ListUsersResponse(
            users=[user_message(u) for u in users], next_page_token=next_token
        )

    async def SetUserRole(  # noqa: N802 - generated servicer method name
        self, request: pb.SetUserRoleRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetUserRoleResponse:
        """Change another user's role."""
        user = await self._accounts.set_role(require_identity(), request.username, request.role)
        return pb.SetUserRoleResponse(user=user_message(user))

    async def DeactivateUser(  # noqa: N802 - generated servicer method name
        self, request: pb.DeactivateUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeactivateUserResponse:
        """Disable another user's account and end their sessions."""
        user = await self._accounts.deactivate(require_identity(), request.username)
        return pb.DeactivateUserResponse(user=user_message(user))

    async def RevokeUserSessions(  # noqa: N802 - generated servicer method name
        self, request: pb.RevokeUserSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeUserSessionsResponse:
        """Sign a user out everywhere."""
        revoked = await self._accounts.revoke_sessions(
            require_identity().username, request.username
        )
        response = pb.RevokeUserSessionsResponse(refresh_tokens_revoked=revoked.refresh_tokens)
        response.valid_after.FromDatetime(revoked.valid_after)
        return response

    async def UnlockUser(  # noqa: N802 - generated servicer method name
        self, request: pb.UnlockUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnlockUserResponse:
        """End a user's sign-in locks from every address."""
        cleared = await self._accounts.unlock(require_identity().username, request.username)
        return pb.UnlockUserResponse(locks_cleared=cleared)

    async def ListAuditEvents(  # noqa: N802 - generated servicer method name
        self, request: pb.ListAuditEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAuditEventsResponse:
        """One page of the audit log, newest first."""
        events, next_token = await self._trail.page(
            page_size=request.page_size,
            page_token=request.page_token,
            actor=request.actor,
            action=request.action,
        )
        return pb.ListAuditEventsResponse(
            events=[event_message(e) for e in events], next_page_token=next_token
        )

    async def WatchAuditEvents(  # noqa: N802 - generated servicer method name
        self, request: pb.WatchAuditEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchAuditEventsResponse]:
        """The audit log as it is written (after a replay, when asked), oldest first."""
        async for events in self._watch.watch(
            after_event_id=request.after_event_id, actor=request.actor, action=request.action
        ):
            yield pb.WatchAuditEventsResponse(events=[event_message(e) for e in events])


def user_message(user: User) -> pb.User:
    """An account as the API shows it (never its password hash or counters)."""
    message = pb.User(
        user_id=user.user_id,
        username=user.username,
        email=user.email,
        role=user.role.wire,
        active=user.active,
    )
    message.created_at.FromDatetime(user.created_at)
    if user.last_login_at is not None:
        message.last_login_at.FromDatetime(user.last_login_at)
    return message


def event_message(event: AuditEvent) -> pb.AuditEvent:
    """An audit event as the API shows it."""
    message = pb.AuditEvent(
        event_id=event.event_id,
        actor=event.actor,
        action=event.action,
        target=event.target,
        outcome=event.outcome,
        detail=event.detail,
        request_id=event.request_id,
    )
    if event.occurred_at is not None:
        message.occurred_at.FromDatetime(event.occurred_at)
    return message


def client_address(context: grpc.aio.ServicerContext) -> str:
    """The caller's address, as the runtime's guard sees it (Envoy's, or the socket peer)."""
    metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    return _client_address(metadata, context.peer())
