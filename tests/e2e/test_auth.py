"""Issue 3's acceptance path on the whole mesh, over REST through Envoy, as a person would."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from sutazai.ops.supervisor.environment import settings_environment
from sutazai.runtime.key_files import edit_key_ring, load_key_ring
from sutazai.runtime.keys import SigningKey
from sutazai.runtime.settings import MeshSettings
from sutazai.runtime.sockets import envoy_admin_client
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


async def test_wrong_passwords_for_ada_from_one_address_never_stop_her_at_another(
    mesh_services: MeshSettings, rest: httpx.AsyncClient
) -> None:
    username, password = await registered_user(rest)
    base = f"http://127.0.0.1:{mesh_services.envoy.port}"
    # Envoy sees each client's own source address (use_remote_address) and passes it on.
    async with (
        from_address("127.0.0.2", base) as attacker,
        from_address("127.0.0.3", base) as ada,
    ):
        for _ in range(mesh_services.auth.lockout_threshold):
            wrong = await attacker.post(
                "/v1/auth/login", json={"username": username, "password": password + "x"}
            )
            assert wrong.status_code == 401
            assert wrong.json()["message"] == "invalid username or password"
        locked = await attacker.post(
            "/v1/auth/login", json={"username": username, "password": password}
        )
        assert locked.status_code == 429
        signed_in = await ada.post(
            "/v1/auth/login", json={"username": username, "password": password}
        )
        assert signed_in.status_code == 200, signed_in.text


def from_address(source: str, base: str) -> httpx.AsyncClient:
    """A REST client whose connections come from the loopback address ``source``."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=base, timeout=10, transport=transport)


async def test_register_does_not_tell_which_of_username_or_email_is_taken(
    rest: httpx.AsyncClient,
) -> None:
    username, _ = await registered_user(rest)
    other, password = credentials()
    answers = []
    for name, email in ((username, f"{other}@example.org"), (other, f"{username}@example.org")):
        reply = await rest.post(
            "/v1/auth/register", json={"username": name, "email": email, "password": password}
        )
        assert reply.status_code == 409
        answers.append(reply.json())
    assert answers[0] == answers[1]
    assert "EMAIL_TAKEN" not in str(answers[0])


@pytest.mark.parametrize("bad", [r"ada\u0000", r"ada\ud800", r"\udfff"])
async def test_nul_and_lone_surrogates_in_credentials_are_refused_not_500(
    rest: httpx.AsyncClient, bad: str
) -> None:
    for path in ("/v1/auth/login", "/v1/auth/register"):
        # Raw JSON text: the escapes reach Envoy's transcoder as a client could send them.
        body = (
            f'{{"username": "{bad}", "password": "Pw-{bad}-0123456789",'
            f' "email": "a{bad}@example.org"}}'
        )
        reply = await rest.post(
            path, content=body.encode(), headers={"content-type": "application/json"}
        )
        assert reply.status_code == 400, (path, bad, reply.text)


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
