"""Registration, the caller's account, administration, the audit log and per-user limits."""

from __future__ import annotations

import grpc
import pytest
from grpc_status import rpc_status

from sutazai.auth.v1 import access_pb2
from sutazai.auth.v1 import auth_service_pb2 as pb
from sutazai.runtime.roles import Role
from sutazai.services.auth.accounts import Accounts
from sutazai.services.auth.errors import ACCOUNT_TAKEN, INVALID_CREDENTIALS
from tests.auth.helpers import (
    TIMEOUT,
    Account,
    Caller,
    bearer,
    error_info,
    failure,
    field_violations,
    new_name,
    new_password,
)
from tests.harness.waiting import wait_for

LIST_USERS = "/sutazai.auth.v1.AuthService/ListUsers"


@pytest.fixture(scope="module")
async def admin(auth: Caller, accounts: Accounts) -> tuple[Account, str]:
    """An admin (made as the CLI makes one) and their access token."""
    name = new_name("admin")
    account = Account(name, new_password(), f"{name}@example.org")
    await accounts.create(
        username=account.username,
        email=account.email,
        password=account.password,
        role=Role.ADMIN,
        actor="tests",
        action="tests.setup",
    )
    return account, (await auth.login(account.username, account.password)).access_token


async def test_bad_registration_names_each_field(auth: Caller) -> None:
    error = await failure(
        auth.stub.Register(
            pb.RegisterRequest(username="a!", email="not-an-email", password="short"),
            timeout=TIMEOUT,
        )
    )
    violations = field_violations(error)
    assert set(violations) == {"username", "email", "password"}
    assert "3 to 32 characters" in violations["username"]
    assert "e-mail address" in violations["email"]
    assert "at least 10 characters" in violations["password"]


async def test_taken_username_or_email_get_one_answer_that_does_not_say_which(
    auth: Caller,
) -> None:
    first = await auth.register(new_name("Grace"))
    same_name = await failure(
        auth.stub.Register(
            pb.RegisterRequest(
                username=first.username.upper(),
                email=f"{new_name()}@example.org",
                password=new_password(),
            ),
            timeout=TIMEOUT,
        )
    )
    same_email = await failure(
        auth.stub.Register(
            pb.RegisterRequest(
                username=new_name(), email=first.email.upper(), password=new_password()
            ),
            timeout=TIMEOUT,
        )
    )
    for error in (same_name, same_email):
        assert error.code() is grpc.StatusCode.ALREADY_EXISTS
        assert error.details() == ACCOUNT_TAKEN
        assert error_info(error).reason == "ACCOUNT_EXISTS"
        assert dict(error_info(error).metadata) == {}
    # Byte for byte the same status, details included.
    assert same_name.trailing_metadata() is not None
    assert status_bytes(same_name) == status_bytes(same_email)


def status_bytes(error: grpc.aio.AioRpcError) -> bytes:
    status = rpc_status.from_call(error)
    assert status is not None
    return status.SerializeToString()


async def test_change_password_revokes_sessions_and_checks_the_current_one(auth: Caller) -> None:
    account, pair = await auth.signed_in()
    token = bearer(pair.access_token)
    new = new_password()

    wrong = await failure(
        auth.stub.ChangePassword(
            pb.ChangePasswordRequest(current_password=new_password(), new_password=new),
            metadata=token,
            timeout=TIMEOUT,
        )
    )
    assert set(field_violations(wrong)) == {"current_password"}
    weak = await failure(
        auth.stub.ChangePassword(
            pb.ChangePasswordRequest(current_password=account.password, new_password="weak"),
            metadata=token,
            timeout=TIMEOUT,
        )
    )
    assert set(field_violations(weak)) == {"new_password"}

    await auth.stub.ChangePassword(
        pb.ChangePasswordRequest(current_password=account.password, new_password=new),
        metadata=token,
        timeout=TIMEOUT,
    )
    stale = await failure(
        auth.stub.Refresh(pb.RefreshRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT)
    )
    assert stale.code() is grpc.StatusCode.UNAUTHENTICATED
    # The access token of before the change is refused at once (this instance wrote the stamp).
    signed_out = await failure(auth.stub.GetMe(pb.GetMeRequest(), metadata=token, timeout=TIMEOUT))
    assert signed_out.code() is grpc.StatusCode.UNAUTHENTICATED
    old = await failure(auth.login(account.username, account.password))
    assert old.details() == INVALID_CREDENTIALS
    await auth.login(account.username, new)


async def test_wrong_current_passwords_lock_the_pair_too(auth: Caller) -> None:
    account, pair = await auth.signed_in()
    token = bearer(pair.access_token)
    request = pb.ChangePasswordRequest(current_password=new_password(), new_password=new_password())
    for _ in range(5):
        wrong = await failure(auth.stub.ChangePassword(request, metadata=token, timeout=TIMEOUT))
        assert set(field_violations(wrong)) == {"current_password"}
    locked = await failure(
        auth.stub.ChangePassword(
            pb.ChangePasswordRequest(
                current_password=account.password, new_password=new_password()
            ),
            metadata=token,
            timeout=TIMEOUT,
        )
    )
    assert locked.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    # The same (username, address) pair: sign-in from here waits too.
    signed_out = await failure(auth.login(account.username, account.password))
    assert signed_out.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_user_calling_an_admin_rpc_is_denied_and_audited(
    auth: Caller, admin: tuple[Account, str]
) -> None:
    user, pair = await auth.signed_in()
    denied = await failure(
        auth.stub.ListUsers(
            pb.ListUsersRequest(), metadata=bearer(pair.access_token), timeout=TIMEOUT
        )
    )
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "needs the admin role" in denied.details()

    async def audited() -> bool:
        page = await auth.stub.ListAuditEvents(
            pb.ListAuditEventsRequest(actor=user.username, action=LIST_USERS),
            metadata=bearer(admin[1]),
            timeout=TIMEOUT,
        )
        return any(e.outcome == "PERMISSION_DENIED" for e in page.events)

    await wait_for(audited, timeout=10, message="denial in the audit log")


async def test_sign_ins_and_lockouts_are_audited(
    auth: Caller, strict: Caller, admin: tuple[Account, str]
) -> None:
    account = await auth.register()
    await strict.login(account.username, account.password)
    for _ in range(5):
        await failure(strict.login(account.username, new_password()))
    page = await strict.stub.ListAuditEvents(
        pb.ListAuditEventsRequest(actor=account.username),
        metadata=bearer(admin[1]),
        timeout=TIMEOUT,
    )
    # Newest first.
    trail = [(e.action, e.outcome) for e in page.events]
    assert trail == [
        ("auth.lockout", "ok"),
        *[("auth.login", "UNAUTHENTICATED")] * 5,
        ("auth.login", "ok"),
    ]
    assert page.events[0].detail.startswith("consecutive failures from ")
    assert page.events[1].detail.startswith("wrong password (")
    assert all(e.target == account.username and e.request_id for e in page.events)


async def test_admin_lists_users_page_by_page(auth: Caller, admin: tuple[Account, str]) -> None:
    token = bearer(admin[1])
    await auth.register()
    first = await auth.stub.ListUsers(
        pb.ListUsersRequest(page_size=1), metadata=token, timeout=TIMEOUT
    )
    assert len(first.users) == 1
    assert first.next_page_token
    second = await auth.stub.ListUsers(
        pb.ListUsersRequest(page_size=1, page_token=first.next_page_token),
        metadata=token,
        timeout=TIMEOUT,
    )
    assert second.users[0].username.lower() > first.users[0].username.lower()

    bad = await failure(
        auth.stub.ListUsers(
            pb.ListUsersRequest(page_size=201, page_token="forged"), metadata=token, timeout=TIMEOUT
        )
    )
    assert set(field_violations(bad)) == {"page_size", "page_token"}


async def test_audit_events_page_backwards(auth: Caller, admin: tuple[Account, str]) -> None:
    token = bearer(admin[1])
    first = await auth.stub.ListAuditEvents(
        pb.ListAuditEventsRequest(page_size=2), metadata=token, timeout=TIMEOUT
    )
    assert len(first.events) == 2
    assert first.events[0].event_id > first.events[1].event_id
    older = await auth.stub.ListAuditEvents(
        pb.ListAuditEventsRequest(page_size=2, page_token=first.next_page_token),
        metadata=token,
        timeout=TIMEOUT,
    )
    assert older.events[0].event_id < first.events[1].event_id
    bad = await failure(
        auth.stub.ListAuditEvents(
            pb.ListAuditEventsRequest(page_size=501), metadata=token, timeout=TIMEOUT
        )
    )
    assert set(field_violations(bad)) == {"page_size"}


async def test_role_changes(auth: Caller, admin: tuple[Account, str]) -> None:
    admin_account, admin_token = admin
    token = bearer(admin_token)
    user, pair = await auth.signed_in()

    changed = await auth.stub.SetUserRole(
        pb.SetUserRoleRequest(username=user.username.upper(), role=access_pb2.ROLE_OPERATOR),
        metadata=token,
        timeout=TIMEOUT,
    )
    assert changed.user.role == access_pb2.ROLE_OPERATOR
    # The new role is in the next token the user gets.
    refreshed = await auth.stub.Refresh(
        pb.RefreshRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT
    )
    me = await auth.stub.GetMe(
        pb.GetMeRequest(), metadata=bearer(refreshed.access_token), timeout=TIMEOUT
    )
    assert me.user.role == access_pb2.ROLE_OPERATOR
    assert me.user.username == user.username

    own = await failure(
        auth.stub.SetUserRole(
            pb.SetUserRoleRequest(username=admin_account.username, role=access_pb2.ROLE_USER),
            metadata=token,
            timeout=TIMEOUT,
        )
    )
    assert own.code() is grpc.StatusCode.FAILED_PRECONDITION
    unknown = await failure(
        auth.stub.SetUserRole(
            pb.SetUserRoleRequest(username=new_name(), role=access_pb2.ROLE_USER),
            metadata=token,
            timeout=TIMEOUT,
        )
    )
    assert unknown.code() is grpc.StatusCode.NOT_FOUND
    # No role named, or a number this version does not know (proto3 enums are open).
    for bad in (access_pb2.ROLE_UNSPECIFIED, access_pb2.Role.ValueType(99)):
        bad_role = await failure(
            auth.stub.SetUserRole(
                pb.SetUserRoleRequest(username=user.username, role=bad),
                metadata=token,
                timeout=TIMEOUT,
            )
        )
        assert bad_role.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(bad_role) == {
            "role": "must be one of ROLE_USER, ROLE_OPERATOR, ROLE_ADMIN"
        }


async def test_deactivation_ends_sessions_and_sign_ins(
    auth: Caller, admin: tuple[Account, str]
) -> None:
    admin_account, admin_token = admin
    token = bearer(admin_token)
    user, pair = await auth.signed_in()

    done = await auth.stub.DeactivateUser(
        pb.DeactivateUserRequest(username=user.username), metadata=token, timeout=TIMEOUT
    )
    assert not done.user.active
    refresh = await failure(
        auth.stub.Refresh(pb.RefreshRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT)
    )
    assert refresh.code() is grpc.StatusCode.UNAUTHENTICATED
    login = await failure(auth.login(user.username, user.password))
    assert login.details() == INVALID_CREDENTIALS
    # The access token is refused at once: the account's stamp predates nothing it issued.
    me = await failure(
        auth.stub.GetMe(pb.GetMeRequest(), metadata=bearer(pair.access_token), timeout=TIMEOUT)
    )
    assert me.code() is grpc.StatusCode.UNAUTHENTICATED

    own = await failure(
        auth.stub.DeactivateUser(
            pb.DeactivateUserRequest(username=admin_account.username),
            metadata=token,
            timeout=TIMEOUT,
        )
    )
    assert own.code() is grpc.StatusCode.FAILED_PRECONDITION
    unknown = await failure(
        auth.stub.DeactivateUser(
            pb.DeactivateUserRequest(username=new_name()), metadata=token, timeout=TIMEOUT
        )
    )
    assert unknown.code() is grpc.StatusCode.NOT_FOUND


async def test_one_users_rate_limit_leaves_others_alone(auth: Caller, strict: Caller) -> None:
    _, first = await auth.signed_in()
    _, second = await auth.signed_in()
    # A policy-violating new password is refused before any hashing: the calls are cheap, but
    # each still takes a token from the caller's bucket (2 at most, refilled very slowly).
    request = pb.ChangePasswordRequest(current_password="irrelevant", new_password="weak")
    for _ in range(2):
        error = await failure(
            strict.stub.ChangePassword(request, metadata=bearer(first.access_token), timeout=5)
        )
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    limited = await failure(
        strict.stub.ChangePassword(request, metadata=bearer(first.access_token), timeout=5)
    )
    assert limited.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

    other = await failure(
        strict.stub.ChangePassword(request, metadata=bearer(second.access_token), timeout=5)
    )
    assert other.code() is grpc.StatusCode.INVALID_ARGUMENT
