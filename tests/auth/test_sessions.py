"""Sign-in, refresh rotation, logout and lock-out against real PostgreSQL, Redis and NATS.

Calls go straight to the service's port: these are the checks a caller that bypasses Envoy
meets too.
"""

from __future__ import annotations

import asyncio

import grpc
import jwt

from sutazai.auth.v1 import access_pb2
from sutazai.auth.v1 import auth_service_pb2 as pb
from sutazai.runtime.settings import MeshSettings
from sutazai.services.auth.errors import INVALID_CREDENTIALS
from tests.auth.conftest import STRICT
from tests.auth.helpers import (
    TIMEOUT,
    Caller,
    bearer,
    failure,
    field_violations,
    new_name,
    new_password,
    retry_delay,
)
from tests.harness.waiting import wait_for


async def test_register_login_me(auth: Caller, mesh_settings: MeshSettings) -> None:
    name = new_name("Ada.")
    account = await auth.register(name)
    # Usernames are case-insensitive at sign-in.
    reply = await auth.login(name.upper(), account.password)
    assert reply.token_type == "Bearer"
    assert reply.expires_in == mesh_settings.auth.access_ttl_seconds
    assert reply.refresh_token
    assert reply.refresh_token != reply.access_token

    claims = jwt.decode(reply.access_token, options={"verify_signature": False})
    assert claims["name"] == name
    assert claims["role"] == "user"
    assert claims["iss"] == mesh_settings.auth.issuer
    assert claims["exp"] - claims["iat"] == mesh_settings.auth.access_ttl_seconds

    me = await auth.stub.GetMe(
        pb.GetMeRequest(), metadata=bearer(reply.access_token), timeout=TIMEOUT
    )
    assert (me.user.username, me.user.email, me.user.role) == (
        name,
        account.email,
        access_pb2.ROLE_USER,
    )
    assert me.user.user_id == claims["sub"]
    assert me.user.active
    assert me.user.created_at.seconds > 0
    # The embedded User is the whole account: the sign-in just made is in it.
    assert me.user.last_login_at.seconds >= me.user.created_at.seconds


async def test_me_needs_a_token(auth: Caller) -> None:
    error = await failure(auth.stub.GetMe(pb.GetMeRequest(), timeout=TIMEOUT))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_empty_credentials_are_field_violations(auth: Caller) -> None:
    error = await failure(auth.stub.Login(pb.LoginRequest(), timeout=TIMEOUT))
    assert field_violations(error) == {"username": "required", "password": "required"}


async def test_failed_logins_never_reveal_whether_the_account_exists(auth: Caller) -> None:
    account = await auth.register()
    wrong = await failure(auth.login(account.username, new_password()))
    unknown = await failure(auth.login(new_name(), account.password))
    for error in (wrong, unknown):
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert error.details() == INVALID_CREDENTIALS


async def test_refresh_rotates_and_replay_revokes_the_family(auth: Caller) -> None:
    _, first = await auth.signed_in()
    second = await auth.stub.Refresh(
        pb.RefreshRequest(refresh_token=first.refresh_token), timeout=TIMEOUT
    )
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.token_type == "Bearer"

    replay = await failure(
        auth.stub.Refresh(pb.RefreshRequest(refresh_token=first.refresh_token), timeout=TIMEOUT)
    )
    assert replay.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "already used" in replay.details()
    # The replay revoked the family: the legitimate holder's newer token is dead too.
    newest = await failure(
        auth.stub.Refresh(pb.RefreshRequest(refresh_token=second.refresh_token), timeout=TIMEOUT)
    )
    assert newest.code() is grpc.StatusCode.UNAUTHENTICATED
    assert newest.details() == "refresh token revoked"


async def test_concurrent_refreshes_of_one_token_let_exactly_one_through(auth: Caller) -> None:
    _, pair = await auth.signed_in()
    request = pb.RefreshRequest(refresh_token=pair.refresh_token)
    outcomes = await asyncio.gather(
        *(auth.stub.Refresh(request, timeout=TIMEOUT) for _ in range(4)), return_exceptions=True
    )
    winners = [o for o in outcomes if isinstance(o, pb.RefreshResponse)]
    losers = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert len(losers) == 3
    assert all(e.code() is grpc.StatusCode.UNAUTHENTICATED for e in losers)
    # A second use is a replay, so the winner's new token was revoked with the family.
    revoked = await failure(
        auth.stub.Refresh(
            pb.RefreshRequest(refresh_token=winners[0].refresh_token), timeout=TIMEOUT
        )
    )
    assert revoked.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_unknown_refresh_token_is_unauthenticated(auth: Caller) -> None:
    error = await failure(
        auth.stub.Refresh(pb.RefreshRequest(refresh_token="x" * 43), timeout=TIMEOUT)
    )
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    empty = await failure(auth.stub.Refresh(pb.RefreshRequest(), timeout=TIMEOUT))
    assert field_violations(empty) == {"refresh_token": "required"}


async def test_logout_stops_refresh_and_access_token_at_once(auth: Caller) -> None:
    _, pair = await auth.signed_in()
    token = bearer(pair.access_token)
    await auth.stub.GetMe(pb.GetMeRequest(), metadata=token, timeout=TIMEOUT)

    await auth.stub.Logout(
        pb.LogoutRequest(refresh_token=pair.refresh_token), metadata=token, timeout=TIMEOUT
    )

    me = await failure(auth.stub.GetMe(pb.GetMeRequest(), metadata=token, timeout=TIMEOUT))
    assert me.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in me.details()
    refresh = await failure(
        auth.stub.Refresh(pb.RefreshRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT)
    )
    assert refresh.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_logout_ends_only_the_callers_own_session(auth: Caller) -> None:
    _, mine = await auth.signed_in()
    _, theirs = await auth.signed_in()
    error = await failure(
        auth.stub.Logout(
            pb.LogoutRequest(refresh_token=theirs.refresh_token),
            metadata=bearer(mine.access_token),
            timeout=TIMEOUT,
        )
    )
    assert field_violations(error) == {"refresh_token": "not a session of the caller"}
    # Nothing was revoked: both sessions carry on.
    await auth.stub.GetMe(pb.GetMeRequest(), metadata=bearer(mine.access_token), timeout=TIMEOUT)
    await auth.stub.Refresh(pb.RefreshRequest(refresh_token=theirs.refresh_token), timeout=TIMEOUT)


async def test_logout_needs_a_signed_in_caller(auth: Caller) -> None:
    _, pair = await auth.signed_in()
    error = await failure(
        auth.stub.Logout(pb.LogoutRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT)
    )
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_wrong_passwords_lock_the_pair_until_the_lock_ends(
    auth: Caller, strict: Caller
) -> None:
    account = await auth.register()
    for _ in range(STRICT.lockout_threshold):
        wrong = await failure(strict.login(account.username, new_password()))
        assert wrong.details() == INVALID_CREDENTIALS
    # Locked for this address: the right password gets the same wait as any other, and an
    # unknown name from here would too (nothing tells whether the account exists).
    locked = await failure(strict.login(account.username, account.password))
    assert locked.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry_delay(locked) > 0

    async def lock_ended() -> bool:
        try:
            await strict.login(account.username, account.password)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            return False
        return True

    await wait_for(
        lock_ended, timeout=STRICT.lockout_seconds + 10, interval=0.25, message="lock ended"
    )
