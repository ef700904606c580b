"""Issue 3's acceptance path on the whole mesh, over REST through Envoy, as a person would."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from sutazai.services.runtime.key_files import edit_key_ring, load_key_ring
from sutazai.services.runtime.keys import SigningKey
from sutazai.services.runtime.settings import MeshSettings
from sutazai.services.runtime.sockets import envoy_admin_client
from sutazai.services.supervisor.environment import settings_environment
from tests.gateway.tokens import hs256_with_public_key, unsigned
from tests.harness.cli import run_cli
from tests.harness.waiting import wait_for


def credentials() -> tuple[str, str]:
    return f"e2e{secrets.token_hex(4)}", f"{secrets.token_urlsafe(12)}-Aa1"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def rest(mesh_services: MeshSettings) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{mesh_services.envoy.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


async def sign_in(rest: httpx.AsyncClient, username: str, password: str) -> str:
    reply = await rest.post("/v1/auth/login", json={"username": username, "password": password})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


async def registered_user(rest: httpx.AsyncClient) -> tuple[str, str]:
    username, password = credentials()
    reply = await rest.post(
        "/v1/auth/register",
        json={"username": username, "email": f"{username}@example.org", "password": password},
    )
    assert reply.status_code == 200, reply.text
    return username, password


async def test_forged_expired_and_unsigned_tokens_get_401(
    rest: httpx.AsyncClient, mesh_services: MeshSettings
) -> None:
    username, password = await registered_user(rest)
    genuine = jwt.decode(
        await sign_in(rest, username, password), options={"verify_signature": False}
    )
    ring = load_key_ring(mesh_services.keys_file)
    kid = {"kid": ring.signing.kid}
    past = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
    stranger = SigningKey.generate()
    admin = {**genuine, "role": "admin"}
    tokens = {
        "another key": jwt.encode(genuine, stranger.private_key, "EdDSA", headers=kid),
        "kid not in the ring": jwt.encode(
            genuine, stranger.private_key, "EdDSA", headers={"kid": stranger.kid}
        ),
        "expired": jwt.encode(
            {**genuine, "exp": past}, ring.signing.private_key, "EdDSA", headers=kid
        ),
        "alg none": unsigned(ring.signing, admin),
        "HS256 with the public key": hs256_with_public_key(ring.signing, admin),
    }
    for what, token in tokens.items():
        reply = await rest.get("/v1/auth/me", headers=bearer(token))
        assert reply.status_code == 401, what
        users = await rest.get("/v1/users", headers=bearer(token))
        assert users.status_code == 401, what


async def test_a_user_calling_an_admin_rpc_is_denied_and_audited(
    rest: httpx.AsyncClient, mesh_services: MeshSettings
) -> None:
    username, password = await registered_user(rest)
    denied = await rest.get("/v1/users", headers=bearer(await sign_in(rest, username, password)))
    assert denied.status_code == 403
    assert "admin" in denied.json()["message"]

    admin, admin_password = credentials()
    created = await run_cli(
        "users",
        "create",
        "--username",
        admin,
        "--email",
        f"{admin}@example.org",
        "--role",
        "admin",
        "--password-stdin",
        env=settings_environment(mesh_services),
        stdin=f"{admin_password}\n",
    )
    assert created.code == 0, created.stderr
    events = await rest.get(
        "/v1/audit/events",
        params={"actor": username},
        headers=bearer(await sign_in(rest, admin, admin_password)),
    )
    assert events.status_code == 200, events.text
    outcomes = {(e["action"], e["outcome"]) for e in events.json()["events"]}
    assert ("/sutazai.auth.v1.AuthService/ListUsers", "PERMISSION_DENIED") in outcomes


async def test_six_wrong_passwords_lock_the_account(rest: httpx.AsyncClient) -> None:
    username, password = await registered_user(rest)
    for _ in range(6):
        wrong = await rest.post(
            "/v1/auth/login", json={"username": username, "password": password + "x"}
        )
        assert wrong.status_code == 401
    locked = await rest.post("/v1/auth/login", json={"username": username, "password": password})
    assert locked.status_code == 401
    assert locked.json()["message"] == "invalid username or password"


async def test_rotating_keys_keeps_sessions_and_retiring_ends_them(
    rest: httpx.AsyncClient, mesh_services: MeshSettings
) -> None:
    env = settings_environment(mesh_services)
    username, password = await registered_user(rest)
    old_token = await sign_in(rest, username, password)
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    original = load_key_ring(mesh_services.keys_file)
    try:
        rotated = await run_cli("keys", "rotate", env=env)
        assert rotated.code == 0, rotated.stderr
        new_token = await sign_in(rest, username, password)
        assert jwt.get_unverified_header(new_token)["kid"] != old_kid

        async def accepted(token: str) -> bool:
            return (await rest.get("/v1/auth/me", headers=bearer(token))).status_code == 200

        # Envoy gets the new key from the gateway's next poll of the key file.
        await wait_for(lambda: accepted(new_token), timeout=10, interval=0.2)
        assert await accepted(old_token)

        retired = await run_cli("keys", "retire", old_kid, env=env)
        assert retired.code == 0, retired.stderr

        async def refused() -> bool:
            return not await accepted(old_token)

        await wait_for(refused, timeout=10, interval=0.2, message="retired key refused")
        assert await accepted(new_token)
    finally:
        edit_key_ring(mesh_services.keys_file, mesh_services.jwks_file, lambda _: original)


async def test_retiring_the_signing_key_is_refused(mesh_services: MeshSettings) -> None:
    before = mesh_services.keys_file.read_bytes()
    signing = load_key_ring(mesh_services.keys_file).signing.kid

    refused = await run_cli("keys", "retire", signing, env=settings_environment(mesh_services))

    assert refused.code == 1
    assert "sutazai keys rotate" in refused.stderr
    assert mesh_services.keys_file.read_bytes() == before, "no older key silently signs"


async def test_envoy_admin_shows_public_keys_only(
    rest: httpx.AsyncClient, mesh_services: MeshSettings
) -> None:
    username, password = await registered_user(rest)
    token = await sign_in(rest, username, password)
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"

    async with envoy_admin_client(mesh_services.envoy_admin_socket) as admin:
        dump = (await admin.get("/config_dump?include_eds")).text

    ring = load_key_ring(mesh_services.keys_file)
    assert ring.signing.private_jwk()["x"] in dump, "jwt_authn checks with the public key"
    for key in ring.keys:
        assert key.private_jwk()["d"] not in dump
    assert '"oct"' not in dump.replace('\\"', '"'), "no symmetric key"
