"""Small helpers for calling the auth service in tests."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sutazai.auth.v1 import auth_service_pb2 as pb
from sutazai.auth.v1 import auth_service_pb2_grpc as pb_grpc
from sutazai.runtime.roles import Role
from sutazai.services.auth.accounts import Accounts

TIMEOUT = 10


def new_name(prefix: str = "u") -> str:
    """A username no other test uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def new_password() -> str:
    """A random password that meets the policy (no password is written down in the tree)."""
    return f"{secrets.token_urlsafe(12)}-Aa1"


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    password: str
    email: str


@dataclass(frozen=True, slots=True)
class Caller:
    """A stub connected straight to one hosted auth service (no Envoy in between)."""

    stub: pb_grpc.AuthServiceStub
    address: str

    async def register(self, username: str | None = None) -> Account:
        name = username or new_name()
        account = Account(name, new_password(), f"{name}@example.org")
        await self.stub.Register(
            pb.RegisterRequest(
                username=account.username, email=account.email, password=account.password
            ),
            timeout=TIMEOUT,
        )
        return account

    async def login(self, username: str, password: str) -> pb.LoginResponse:
        reply: pb.LoginResponse = await self.stub.Login(
            pb.LoginRequest(username=username, password=password), timeout=TIMEOUT
        )
        return reply

    async def signed_in(self) -> tuple[Account, pb.LoginResponse]:
        account = await self.register()
        return account, await self.login(account.username, account.password)


async def refused_by_all(instances: Iterable[Caller], metadata: tuple[tuple[str, str]]) -> bool:
    """Whether every instance answers GetMe with these credentials UNAUTHENTICATED.

    Any other failure is raised: only a refused token counts.
    """
    for instance in instances:
        try:
            await instance.stub.GetMe(pb.GetMeRequest(), metadata=metadata, timeout=TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.UNAUTHENTICATED:
                raise
            continue
        return False
    return True


async def failure(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error a call ends with (fails the test if it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call succeeded")


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The BadRequest field violations of an INVALID_ARGUMENT."""
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
    status = rpc_status.from_call(error)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in status.details)
    return {v.field: v.description for v in bad_request.field_violations}


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert any(detail.Unpack(info) for detail in status.details)
    return info


def retry_delay(error: grpc.aio.AioRpcError) -> float:
    """The RetryInfo delay of an error, in seconds."""
    status = rpc_status.from_call(error)
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(retry) for detail in status.details)
    return float(retry.retry_delay.ToTimedelta().total_seconds())


async def make_admin(accounts: Accounts, on: Caller) -> str:
    """A new admin (made as the CLI makes one), signed in on ``on``: their access token."""
    name = new_name("admin")
    password = new_password()
    await accounts.create(
        username=name,
        email=f"{name}@example.org",
        password=password,
        role=Role.ADMIN,
        actor="tests",
        action="tests.setup",
    )
    return (await on.login(name, password)).access_token
