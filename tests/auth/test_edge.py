"""The auth service as the mesh runs it (supervised, behind Envoy), over REST/JSON.

The JSON field names are the contract other tools rely on (issue #3): register takes
``username``, ``email``, ``password``; login returns ``access_token``, ``refresh_token``,
``expires_in``, ``token_type``; refresh and logout take ``refresh_token``; register and me return
``user`` with ``username``, ``email`` and ``role``, the role as its enum name (``ROLE_USER``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sutazai.runtime.settings import AuthSettings, MeshSettings
from tests.auth.helpers import new_name, new_password


@pytest.fixture(scope="module")
async def rest(mesh_services: MeshSettings) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{mesh_services.envoy.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_register_login_me_refresh_logout_over_rest(rest: httpx.AsyncClient) -> None:
    name, password = new_name(), new_password()
    registered = await rest.post(
        "/v1/auth/register",
        json={"username": name, "email": f"{name}@example.org", "password": password},
    )
    assert registered.status_code == 200, registered.text
    assert registered.json()["user"]["role"] == "ROLE_USER"

    login = await rest.post("/v1/auth/login", json={"username": name, "password": password})
    assert login.status_code == 200, login.text
    pair = login.json()
    assert set(pair) == {"access_token", "refresh_token", "expires_in", "token_type"}
    assert pair["token_type"] == "Bearer"
    assert int(pair["expires_in"]) == AuthSettings().access_ttl_seconds == 900

    me = await rest.get("/v1/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, me.text
    assert set(me.json()) == {"user"}
    assert {k: me.json()["user"][k] for k in ("username", "email", "role", "active")} == {
        "username": name,
        "email": f"{name}@example.org",
        "role": "ROLE_USER",
        "active": True,
    }
    assert (await rest.get("/v1/auth/me")).status_code == 401

    refreshed = await rest.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    fresh = refreshed.json()
    assert set(fresh) == set(pair)
    replay = await rest.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert replay.status_code == 401

    # The replay revoked the family; sign in again for a live session to end.
    pair = (await rest.post("/v1/auth/login", json={"username": name, "password": password})).json()
    logout = await rest.post(
        "/v1/auth/logout",
        json={"refresh_token": pair["refresh_token"]},
        headers=bearer(pair["access_token"]),
    )
    assert logout.status_code == 200, logout.text
    assert (await rest.get("/v1/auth/me", headers=bearer(pair["access_token"]))).status_code == 401
    after = await rest.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert after.status_code == 401


async def test_rest_errors_name_the_field(rest: httpx.AsyncClient) -> None:
    bad = await rest.post(
        "/v1/auth/register", json={"username": "x", "email": "x", "password": "x"}
    )
    assert bad.status_code == 400
    (detail,) = bad.json()["details"]
    assert {v["field"] for v in detail["field_violations"]} == {"username", "email", "password"}

    wrong = await rest.post(
        "/v1/auth/login", json={"username": new_name(), "password": new_password()}
    )
    assert wrong.status_code == 401
    assert wrong.json()["message"] == "invalid username or password"
