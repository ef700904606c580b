"""Sign-in throttling per client address, per (username, address) and per username.

Each test hosts an auth service with tight limits and calls it through TCP relays whose
connections come from distinct loopback addresses (127.0.0.0/8 is all local on Linux), so the
service sees one client per address exactly as it would see remote clients. Addresses are
random per test: the buckets live in the session's shared Redis.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from sutazai.auth.v1 import auth_service_pb2 as pb
from sutazai.auth.v1 import auth_service_pb2_grpc as pb_grpc
from sutazai.runtime.settings import AuthSettings, MeshSettings
from sutazai.services.auth.accounts import Accounts
from sutazai.services.auth.errors import INVALID_CREDENTIALS
from tests.auth.conftest import hosted
from tests.auth.helpers import (
    TIMEOUT,
    Caller,
    bearer,
    failure,
    field_violations,
    make_admin,
    new_name,
    new_password,
    retry_delay,
)
from tests.harness.relay import relay

GENEROUS = {
    "sign_in_rate_burst": 1000,
    "sign_in_rate_per_second": 1000.0,
    "failure_audit_burst": 1000,
    "failure_audit_per_second": 1000.0,
    "failure_delay_seconds": 0.0,
    "lockout_threshold": 3,
    "lockout_seconds": 600,
}


def new_address() -> str:
    """A loopback address no other test uses."""
    return f"127.{secrets.randbelow(250) + 2}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


@contextlib.asynccontextmanager
async def service(
    mesh_settings: MeshSettings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    auth_js: JetStreamContext,
    **limits: float,
) -> AsyncIterator[Caller]:
    """An auth service with :data:`GENEROUS` limits overridden by ``limits``."""
    settings = mesh_settings.model_copy(
        update={"auth": AuthSettings.model_validate({**GENEROUS, **limits})}
    )
    async with hosted(settings, pool, redis_client, auth_js) as caller:
        yield caller


@contextlib.asynccontextmanager
async def client_at(source: str, target: Caller) -> AsyncIterator[Caller]:
    """A client of ``target`` whose connections come from the loopback address ``source``."""
    host, _, port = target.address.rpartition(":")
    async with (
        relay(source, host, int(port)) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        yield Caller(pb_grpc.AuthServiceStub(channel), address)


@pytest.fixture
async def tight(
    mesh_settings: MeshSettings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    auth_js: JetStreamContext,
) -> AsyncIterator[Caller]:
    async with service(mesh_settings, pool, redis_client, auth_js) as caller:
        yield caller


async def test_wrong_passwords_from_one_address_never_stop_the_user_at_another(
    tight: Caller,
) -> None:
    ada = await tight.register(new_name("ada"))
    async with (
        client_at(new_address(), tight) as attacker,
        client_at(new_address(), tight) as elsewhere,
    ):
        for _ in range(3):
            wrong = await failure(attacker.login(ada.username, new_password()))
            assert wrong.details() == INVALID_CREDENTIALS
        # The attacker's pair is locked, right password or not...
        locked = await failure(attacker.login(ada.username, ada.password))
        assert locked.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert retry_delay(locked) > 500
        # ...and ada signs in from another address, as often as she likes.
        for _ in range(3):
            assert (await elsewhere.login(ada.username, ada.password)).access_token


async def test_each_failure_slows_the_pair_down(
    mesh_settings: MeshSettings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    auth_js: JetStreamContext,
) -> None:
    async with service(
        mesh_settings, pool, redis_client, auth_js, failure_delay_seconds=30.0
    ) as slow:
        ada = await slow.register()
        async with (
            client_at(new_address(), slow) as here,
            client_at(new_address(), slow) as there,
        ):
            await failure(here.login(ada.username, new_password()))
            waiting = await failure(here.login(ada.username, ada.password))
            assert waiting.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert 0 < retry_delay(waiting) <= 30
            # An unknown name waits just the same: the wait tells nothing about accounts.
            ghost = new_name()
            await failure(here.login(ghost, new_password()))
            assert (await failure(here.login(ghost, ada.password))).code() is (
                grpc.StatusCode.RESOURCE_EXHAUSTED
            )
            assert (await there.login(ada.username, ada.password)).access_token


async def test_password_spraying_and_registering_from_one_address_are_held_to_the_rate(
    mesh_settings: MeshSettings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    auth_js: JetStreamContext,
) -> None:
    async with service(
        mesh_settings,
        pool,
        redis_client,
        auth_js,
        sign_in_rate_burst=3,
        sign_in_rate_per_second=0.01,
    ) as limited:
        victim = await limited.register()
        async with (
            client_at(new_address(), limited) as sprayer,
            client_at(new_address(), limited) as other,
        ):
            password = new_password()
            for _ in range(3):
                await failure(sprayer.login(new_name(), password))
            held = await failure(sprayer.login(new_name(), password))
            assert held.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert retry_delay(held) > 0
            # Register and Refresh share the address's bucket.
            register = await failure(sprayer.register())
            assert register.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            refresh = await failure(
                sprayer.stub.Refresh(pb.RefreshRequest(refresh_token="x"), timeout=TIMEOUT)
            )
            assert refresh.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            # Another address is not affected.
            assert (await other.login(victim.username, victim.password)).access_token


async def test_a_guessed_username_holds_back_new_addresses_but_never_known_ones(
    mesh_settings: MeshSettings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    auth_js: JetStreamContext,
) -> None:
    async with service(
        mesh_settings,
        pool,
        redis_client,
        auth_js,
        username_failure_burst=4,
        username_failure_per_second=0.001,
        lockout_threshold=100,
    ) as guarded:
        ada = await guarded.register()
        home = new_address()
        async with client_at(home, guarded) as at_home:
            await at_home.login(ada.username, ada.password)
        # A distributed guess: two failures each from two addresses empty the name's budget.
        for _ in range(2):
            async with client_at(new_address(), guarded) as bot:
                for _ in range(2):
                    await failure(bot.login(ada.username, new_password()))
        async with client_at(new_address(), guarded) as newcomer:
            held = await failure(newcomer.login(ada.username, ada.password))
            assert held.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        # Where ada signed in before, the name's limit does not apply: no lock-out.
        async with client_at(home, guarded) as back_home:
            assert (await back_home.login(ada.username, ada.password)).access_token


async def test_unlock_ends_every_lock_of_the_user(tight: Caller, accounts: Accounts) -> None:
    admin = await make_admin(accounts, tight)
    ada = await tight.register()
    async with client_at(new_address(), tight) as here:
        for _ in range(3):
            await failure(here.login(ada.username, new_password()))
        locked = await failure(here.login(ada.username, ada.password))
        assert locked.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

        reply = await tight.stub.UnlockUser(
            pb.UnlockUserRequest(username=ada.username), metadata=bearer(admin), timeout=TIMEOUT
        )
        assert reply.locks_cleared == 1
        assert (await here.login(ada.username, ada.password)).access_token

    unknown = await failure(
        tight.stub.UnlockUser(
            pb.UnlockUserRequest(username=new_name()), metadata=bearer(admin), timeout=TIMEOUT
        )
    )
    assert unknown.code() is grpc.StatusCode.NOT_FOUND
    page = await tight.stub.ListAuditEvents(
        pb.ListAuditEventsRequest(action="auth.user_unlocked"),
        metadata=bearer(admin),
        timeout=TIMEOUT,
    )
    assert any(e.target == ada.username for e in page.events)


async def test_failed_logins_write_a_bounded_number_of_audit_rows_per_address(
    mesh_settings: MeshSettings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    auth_js: JetStreamContext,
    accounts: Accounts,
) -> None:
    async with service(
        mesh_settings,
        pool,
        redis_client,
        auth_js,
        failure_audit_burst=2,
        failure_audit_per_second=0.001,
        lockout_threshold=100,
    ) as limited:
        admin = await make_admin(accounts, limited)
        name = new_name()
        async with client_at(new_address(), limited) as flooder:
            for _ in range(6):
                await failure(flooder.login(name, new_password()))
        page = await limited.stub.ListAuditEvents(
            pb.ListAuditEventsRequest(actor=name), metadata=bearer(admin), timeout=TIMEOUT
        )
        assert [(e.action, e.outcome) for e in page.events] == [
            ("auth.login", "UNAUTHENTICATED")
        ] * 2


@pytest.mark.parametrize(
    ("bad", "password_refused"), [("ada\0", True), ("\0", True), ("ada\x01", False)]
)
async def test_nul_and_control_characters_are_field_violations_never_internal(
    auth: Caller, bad: str, password_refused: bool
) -> None:
    # Control characters other than NUL are fine in a password (it is only hashed).
    expected = {"username", "password"} if password_refused else {"username"}
    login = await failure(
        auth.stub.Login(pb.LoginRequest(username=bad, password=f"pw{bad}"), timeout=TIMEOUT)
    )
    assert set(field_violations(login)) == expected
    register = await failure(
        auth.stub.Register(
            pb.RegisterRequest(
                username=bad, email=f"a{bad}@example.org", password=f"Xy-{new_password()}{bad}"
            ),
            timeout=TIMEOUT,
        )
    )
    violations = field_violations(register)
    assert "NUL" in violations["email"]
    # The runtime refuses NUL in any string field before a handler runs; the domain's own rule
    # names what a username may hold.
    assert ("NUL" if "\0" in bad else "3 to 32 characters") in violations["username"]
    assert ("NUL" in violations.get("password", "")) is password_refused
