"""``MeshClient`` sessions and calls through the real mesh (Envoy and every service)."""

from __future__ import annotations

import asyncio
import dataclasses
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from sutazai.auth.v1 import access_pb2
from sutazai.client import (
    CallFailed,
    FileTokenStore,
    MeshClient,
    SessionEnded,
    SessionTokens,
)
from sutazai.runtime.settings import MeshSettings
from tests.client.accounts import new_account
from tests.harness import wait_for

REVOCATION_DEADLINE = 5.0
"""Revocations reach every instance within 1 s; the rest is slack for a loaded machine."""


@pytest.fixture
async def admin(mesh_services: MeshSettings, tmp_path: Path) -> AsyncIterator[MeshClient]:
    """A client signed in as a new admin (its own token file)."""
    name, password = await new_account(mesh_services, "admin")
    async with MeshClient(mesh_services, tokens=FileTokenStore(tmp_path / "admin")) as client:
        await client.sign_in(name, password)
        yield client


def expired(tokens: SessionTokens | None) -> SessionTokens:
    """The same tokens, saved as if the access token had expired a minute ago."""
    assert tokens is not None
    return dataclasses.replace(tokens, expires_at=datetime.now(UTC) - timedelta(minutes=1))


async def ended(client: MeshClient) -> bool:
    try:
        await client.me()
    except SessionEnded:
        return True
    return False


async def test_sign_in_resume_me_and_sign_out(mesh_services: MeshSettings, tmp_path: Path) -> None:
    name, password = await new_account(mesh_services)
    store = FileTokenStore(tmp_path)
    async with MeshClient(mesh_services, tokens=store) as client:
        assert await client.resume() is None
        assert client.user is None
        user = await client.sign_in(name, password)
        assert (user.username, user.role) == (name, access_pb2.ROLE_USER)
        assert client.user == user
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600

    async with MeshClient(mesh_services, tokens=store) as again:
        resumed = await again.resume()
        assert resumed is not None
        assert resumed.username == name
        assert (await again.me()).user_id == user.user_id
        await again.sign_out()
        assert again.user is None
    assert store.load() is None
    assert not store.path.exists()

    async with MeshClient(mesh_services, tokens=store) as after:
        assert await after.resume() is None
        with pytest.raises(SessionEnded):
            await after.me()


async def test_wrong_password_is_a_call_failed(mesh_services: MeshSettings, tmp_path: Path) -> None:
    name, _ = await new_account(mesh_services)
    async with MeshClient(mesh_services, tokens=FileTokenStore(tmp_path)) as client:
        with pytest.raises(CallFailed) as refused:
            await client.sign_in(name, "not-the-password-1A")
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "invalid username or password" in refused.value.details


async def test_an_expired_access_token_is_refreshed_and_saved(
    mesh_services: MeshSettings, tmp_path: Path
) -> None:
    name, password = await new_account(mesh_services)
    store = FileTokenStore(tmp_path)
    async with MeshClient(mesh_services, tokens=store) as client:
        await client.sign_in(name, password)
    old = expired(store.load())
    store.save(old)

    async with MeshClient(mesh_services, tokens=store) as client:
        user = await client.resume()
    assert user is not None
    assert user.username == name
    new = store.load()
    assert new is not None
    assert new.refresh_token != old.refresh_token
    assert new.access_token != old.access_token
    assert new.expires_at > datetime.now(UTC) + timedelta(minutes=1)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


async def test_a_refused_access_token_is_renewed_once(
    mesh_services: MeshSettings, tmp_path: Path
) -> None:
    name, password = await new_account(mesh_services)
    store = FileTokenStore(tmp_path)
    async with MeshClient(mesh_services, tokens=store) as client:
        await client.sign_in(name, password)
    saved = store.load()
    assert saved is not None
    # Unexpired by the clock, refused by the edge: only the UNAUTHENTICATED answer renews it.
    store.save(dataclasses.replace(saved, access_token="not.a.token"))

    async with MeshClient(mesh_services, tokens=store) as client:
        assert (await client.me()).username == name
    renewed = store.load()
    assert renewed is not None
    assert renewed.refresh_token != saved.refresh_token


async def test_revoked_sessions_end_with_session_ended(
    mesh_services: MeshSettings, admin: MeshClient, tmp_path: Path
) -> None:
    name, password = await new_account(mesh_services)
    store = FileTokenStore(tmp_path)
    async with MeshClient(mesh_services, tokens=store) as client:
        await client.sign_in(name, password)
        assert await admin.revoke_user_sessions(name) == 1

        await wait_for(
            lambda: ended(client), timeout=REVOCATION_DEADLINE, message="the session ended"
        )
        assert store.load() is None
        assert await client.resume() is None


async def test_signing_out_elsewhere_ends_the_session(
    mesh_services: MeshSettings, tmp_path: Path
) -> None:
    name, password = await new_account(mesh_services)
    store = FileTokenStore(tmp_path)
    async with (
        MeshClient(mesh_services, tokens=store) as dashboard,
        MeshClient(mesh_services, tokens=store) as cli,
    ):
        await dashboard.sign_in(name, password)
        assert (await cli.me()).username == name
        await cli.sign_out()

        await wait_for(
            lambda: ended(dashboard), timeout=REVOCATION_DEADLINE, message="the session ended"
        )


async def test_a_bad_request_carries_its_field_violations(admin: MeshClient) -> None:
    with pytest.raises(CallFailed) as refused:
        await admin.set_user_role("no such name!", 99)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(refused.value.violations) == {"username", "role"}
    assert all(refused.value.violations.values())


async def test_two_clients_sharing_a_file_spend_the_refresh_token_once(
    mesh_services: MeshSettings, admin: MeshClient, tmp_path: Path
) -> None:
    name, password = await new_account(mesh_services)
    store = FileTokenStore(tmp_path)
    async with MeshClient(mesh_services, tokens=store) as client:
        await client.sign_in(name, password)
    store.save(expired(store.load()))

    async with (
        MeshClient(mesh_services, tokens=store) as dashboard,
        MeshClient(mesh_services, tokens=store) as cli,
    ):
        users = await asyncio.gather(dashboard.me(), cli.me())
        assert [u.username for u in users] == [name, name]
        # Both keep working on the one rotated pair: nobody reused a spent refresh token.
        store.save(expired(store.load()))
        users = await asyncio.gather(cli.me(), dashboard.me())
        assert [u.username for u in users] == [name, name]

    reused = await admin.list_audit_events(actor=name, action="auth.refresh_reused")
    assert reused == []
    async with MeshClient(mesh_services, tokens=store) as later:
        assert await later.resume() is not None


async def test_admin_calls(mesh_services: MeshSettings, admin: MeshClient) -> None:
    name, _ = await new_account(mesh_services)
    assert name in {u.username for u in await admin.list_users()}

    promoted = await admin.set_user_role(name, access_pb2.ROLE_OPERATOR)
    assert promoted.role == access_pb2.ROLE_OPERATOR
    assert await admin.unlock_user(name) == 0
    deactivated = await admin.deactivate_user(name)
    assert not deactivated.active

    events = await admin.list_audit_events(action="auth.user_deactivated", limit=5)
    assert events[0].target == name
    assert len(events) <= 5


async def test_a_user_is_refused_admin_calls(mesh_services: MeshSettings, tmp_path: Path) -> None:
    name, password = await new_account(mesh_services)
    async with MeshClient(mesh_services, tokens=FileTokenStore(tmp_path)) as client:
        await client.sign_in(name, password)
        with pytest.raises(CallFailed) as refused:
            await client.list_users()
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED


async def test_get_status_lists_components_only_when_signed_in(
    mesh_services: MeshSettings, tmp_path: Path
) -> None:
    async with MeshClient(mesh_services, tokens=FileTokenStore(tmp_path)) as anonymous:
        summary = await anonymous.get_status()
    assert summary.overall
    assert not summary.components

    name, password = await new_account(mesh_services)
    async with MeshClient(mesh_services, tokens=FileTokenStore(tmp_path)) as client:
        await client.sign_in(name, password)
        full = await client.get_status()
    assert {c.name for c in full.components} >= {"postgres", "redis", "nats"}
