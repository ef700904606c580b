"""``sutazai users create`` and ``sutazai login``, run as a user runs them."""

from __future__ import annotations

import json
import stat

import grpc
import jwt

from sutazai.auth.v1 import auth_service_pb2 as pb
from sutazai.auth.v1 import auth_service_pb2_grpc as pb_grpc
from sutazai.client import FileTokenStore
from sutazai.client.tokens import TOKEN_FILE
from sutazai.ops.supervisor.environment import settings_environment
from sutazai.runtime.settings import MeshSettings
from tests.auth.helpers import (
    TIMEOUT,
    Caller,
    bearer,
    failure,
    new_name,
    new_password,
    refused_by_all,
)
from tests.harness.cli import run_cli
from tests.harness.waiting import wait_for


async def create_user(
    settings: MeshSettings, name: str, password: str, *extra: str, stdin: str | None = None
) -> tuple[int, str, str]:
    run = await run_cli(
        "users",
        "create",
        "--username",
        name,
        "--email",
        f"{name}@example.org",
        "--password-stdin",
        *extra,
        env=settings_environment(settings),
        stdin=f"{password}\n" if stdin is None else stdin,
    )
    return run.code, run.stdout, run.stderr


async def test_users_create_makes_the_first_admin(
    auth: Caller, mesh_settings: MeshSettings
) -> None:
    name, password = new_name("root"), new_password()
    code, stdout, stderr = await create_user(mesh_settings, name, password, "--role", "admin")
    assert code == 0, stderr
    assert f"created admin {name}" in stdout

    pair = await auth.login(name, password)
    claims = jwt.decode(pair.access_token, options={"verify_signature": False})
    assert claims["role"] == "admin"
    page = await auth.stub.ListAuditEvents(
        pb.ListAuditEventsRequest(action="auth.user_created_by_cli"),
        metadata=bearer(pair.access_token),
        timeout=TIMEOUT,
    )
    (event,) = [e for e in page.events if e.target == name]
    assert event.outcome == "ok"
    assert event.actor.startswith("cli:")
    assert event.detail == "role admin"


async def test_users_create_explains_what_is_wrong(
    auth: Caller, mesh_settings: MeshSettings
) -> None:
    weak = await create_user(mesh_settings, new_name(), "weak")
    assert weak[0] == 1
    assert "password: must be at least 10 characters" in weak[2]

    taken = await auth.register()
    duplicate = await create_user(mesh_settings, taken.username.upper(), new_password())
    assert duplicate[0] == 1
    assert "that username or e-mail address cannot be registered" in duplicate[2]

    role = await create_user(mesh_settings, new_name(), new_password(), "--role", "root")
    assert role[0] == 1
    assert "unknown role 'root'" in role[2]

    empty = await create_user(mesh_settings, new_name(), "", stdin="")
    assert empty[0] == 1
    assert "no password on stdin" in empty[2]

    no_terminal = await run_cli(
        "users",
        "create",
        "--username",
        new_name(),
        "--email",
        "x@example.org",
        env=settings_environment(mesh_settings),
    )
    assert no_terminal.code == 1
    assert "--password-stdin" in no_terminal.stderr


async def test_login_through_envoy_keeps_a_private_token(mesh_services: MeshSettings) -> None:
    settings = mesh_services
    name, password = new_name(), new_password()
    assert (await create_user(settings, name, password))[0] == 0

    run = await run_cli(
        "login",
        "--username",
        name,
        "--password-stdin",
        env=settings_environment(settings),
        stdin=f"{password}\n",
    )
    assert run.code == 0, run.stderr
    assert f"signed in as {name}" in run.stdout

    path = settings.state_dir / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(json.loads(path.read_text())) == {"access_token", "refresh_token", "expires_at"}
    token = FileTokenStore(settings.state_dir).load()
    assert token is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.envoy.port}") as channel:
        me = await pb_grpc.AuthServiceStub(channel).GetMe(
            pb.GetMeRequest(), metadata=bearer(token.access_token), timeout=TIMEOUT
        )
    assert me.user.username == name

    wrong = await run_cli(
        "login",
        "--username",
        name,
        "--password-stdin",
        env=settings_environment(settings),
        stdin=f"{new_password()}\n",
    )
    assert wrong.code == 1
    assert "invalid username or password" in wrong.stderr


async def test_users_revoke_signs_the_user_out_of_every_instance(
    auth: Caller, strict: Caller, mesh_settings: MeshSettings
) -> None:
    account, pair = await auth.signed_in()
    token = bearer(pair.access_token)
    run = await run_cli(
        "users", "revoke", account.username, env=settings_environment(mesh_settings)
    )
    assert run.code == 0, run.stderr
    assert f"revoked 1 refresh tokens of {account.username}" in run.stdout

    await wait_for(
        lambda: refused_by_all((auth, strict), token),
        timeout=1,
        interval=0.01,
        message="refused by both instances",
    )
    unknown = await run_cli("users", "revoke", new_name(), env=settings_environment(mesh_settings))
    assert unknown.code != 0
    assert "not found" in unknown.stderr


async def test_users_unlock_ends_the_locks_of_every_address(
    auth: Caller, mesh_settings: MeshSettings
) -> None:
    account = await auth.register()
    for _ in range(mesh_settings.auth.lockout_threshold):
        await failure(auth.login(account.username, new_password()))
    locked = await failure(auth.login(account.username, account.password))
    assert locked.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

    run = await run_cli(
        "users", "unlock", account.username, env=settings_environment(mesh_settings)
    )
    assert run.code == 0, run.stderr
    assert f"unlocked {account.username} (1 " in run.stdout
    assert (await auth.login(account.username, account.password)).access_token
