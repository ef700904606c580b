"""Session fixtures: real NATS, PostgreSQL and Redis; opt-in gateway, Envoy and services.

Fixture graph (all session-scoped)::

    mesh_ports, mesh_state_dir
      └─ mesh_config ─ infrastructure ─ mesh_settings ─ gateway ─ envoy ─ mesh_services

``mesh_settings`` is what most integration tests want: the settings of a running NATS (with
JetStream), PostgreSQL and Redis. ``gateway``, ``envoy`` and ``mesh_services`` each add the
next layer and yield the same settings once it is healthy.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sutazai.ops.supervisor import Supervisor
from sutazai.ops.supervisor.components import (
    agent_components,
    envoy_component,
    gateway_component,
    infrastructure_components,
    service_components,
)
from sutazai.ops.supervisor.environment import child_environment, settings_environment
from sutazai.runtime.deployment import load_catalog
from sutazai.runtime.settings import MeshSettings
from sutazai.runtime.sockets import envoy_admin_client
from tests.harness.cli import run_cli
from tests.harness.llama import openai_backend
from tests.harness.mesh import (
    MeshPorts,
    build_settings,
    mesh_agents,
    new_state_dir,
    remove_state_dir,
    supervised,
)
from tests.harness.waiting import wait_for

__all__ = ["openai_backend"]
"""Fixtures defined elsewhere in the harness, collected here (this module is the plugin)."""


@pytest.fixture(scope="session")
def mesh_ports() -> MeshPorts:
    """Free ports (and an Envoy base id) for the session's mesh."""
    return MeshPorts.pick()


@pytest.fixture(scope="session")
def mesh_state_dir() -> Iterator[Path]:
    """The session mesh's state directory, removed at the end."""
    state_dir = new_state_dir()
    yield state_dir
    remove_state_dir(state_dir)


@pytest.fixture(scope="session")
def mesh_config(mesh_state_dir: Path, mesh_ports: MeshPorts) -> MeshSettings:
    """Settings of the session mesh, credentials generated (secrets, key ring), nothing started.

    The settings are the supervisor's: NATS principal ``admin``. For another principal use
    ``settings.as_principal(name)``.
    """
    return build_settings(mesh_state_dir, mesh_ports)


@pytest.fixture(scope="session")
async def infrastructure(mesh_config: MeshSettings) -> AsyncIterator[Supervisor]:
    """The supervisor running the session's NATS, PostgreSQL and Redis."""
    components = infrastructure_components(
        mesh_config, child_environment(mesh_config), agents=mesh_agents()
    )
    async with supervised(mesh_config, components) as supervisor:
        yield supervisor


@pytest.fixture(scope="session")
def mesh_settings(infrastructure: Supervisor) -> MeshSettings:
    """Settings of a running NATS, PostgreSQL and Redis (127.0.0.1, free ports)."""
    return infrastructure.settings


@pytest.fixture(scope="session")
async def gateway(mesh_settings: MeshSettings) -> AsyncIterator[MeshSettings]:
    """Opt-in: also the gateway (xDS control plane), healthy; yields the settings."""
    components = [gateway_component(mesh_settings, child_environment(mesh_settings))]
    async with supervised(mesh_settings, components):
        yield mesh_settings


@pytest.fixture(scope="session")
async def envoy(gateway: MeshSettings) -> AsyncIterator[MeshSettings]:
    """Opt-in: also Envoy (bootstrapped from the gateway), LIVE; yields the settings."""
    components = [envoy_component(gateway, child_environment(gateway))]
    async with supervised(gateway, components):
        yield gateway


@pytest.fixture(scope="session")
async def mesh_services(envoy: MeshSettings) -> AsyncIterator[MeshSettings]:
    """Opt-in: also every service of ``deploy/mesh.toml``, healthy in Envoy; yields the settings.

    The supervisor calls a service healthy once it is registered; Envoy routes to it only after
    its own health check passes, so the fixture also waits for that. The agents of the test mesh
    (:func:`~tests.harness.mesh.mesh_agents`) start after the services; an external one only
    gets its credentials file.
    """
    catalog = load_catalog()
    env = child_environment(envoy)
    components = [
        *service_components(envoy, catalog, env),
        *agent_components(envoy, mesh_agents(), env),
    ]
    async with supervised(envoy, components):
        clusters = {name for entry in catalog for name in entry.grpc_services}
        async with envoy_admin_client(envoy.envoy_admin_socket) as admin:

            async def routable() -> bool:
                healthy = {
                    line.split("::")[0]
                    for line in (await admin.get("/clusters")).text.splitlines()
                    if line.endswith("::health_flags::healthy")
                }
                return clusters <= healthy

            await wait_for(routable, timeout=60, interval=0.1, message="services healthy in Envoy")
        yield envoy


@dataclass(frozen=True, slots=True)
class Account:
    """A test account's credentials (made once per session)."""

    username: str
    password: str


async def new_account(settings: MeshSettings, role: str) -> Account:
    """A new ``role`` account made with ``sutazai users create``."""
    username = f"{role[:2]}{secrets.token_hex(4)}"
    password = f"{secrets.token_urlsafe(12)}-Aa1"
    created = await run_cli(
        "users",
        "create",
        "--username",
        username,
        "--email",
        f"{username}@example.org",
        "--role",
        role,
        "--password-stdin",
        env=settings_environment(settings),
        stdin=f"{password}\n",
    )
    assert created.code == 0, created.stderr
    return Account(username, password)


async def signed_in(settings: MeshSettings, account: Account) -> str:
    """A fresh access token of ``account``, signed in through Envoy over REST."""
    base = f"http://127.0.0.1:{settings.envoy.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        reply = await client.post(
            "/v1/auth/login", json={"username": account.username, "password": account.password}
        )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


# Accounts live for the session; tokens for a module: an access token expires after
# access_ttl_seconds (15 min), less than the whole suite takes.
@pytest.fixture(scope="session")
async def operator_account(mesh_services: MeshSettings) -> Account:
    """An operator account."""
    return await new_account(mesh_services, "operator")


@pytest.fixture(scope="session")
async def user_account(mesh_services: MeshSettings) -> Account:
    """A plain user's account."""
    return await new_account(mesh_services, "user")


@pytest.fixture(scope="session")
async def admin_account(mesh_services: MeshSettings) -> Account:
    """An admin account."""
    return await new_account(mesh_services, "admin")


@pytest.fixture(scope="module")
async def operator_token(mesh_services: MeshSettings, operator_account: Account) -> str:
    """An access token of an operator, signed in through Envoy."""
    return await signed_in(mesh_services, operator_account)


@pytest.fixture(scope="module")
async def user_token(mesh_services: MeshSettings, user_account: Account) -> str:
    """An access token of a plain user, signed in through Envoy."""
    return await signed_in(mesh_services, user_account)


@pytest.fixture(scope="module")
async def admin_token(mesh_services: MeshSettings, admin_account: Account) -> str:
    """An access token of an admin, signed in through Envoy."""
    return await signed_in(mesh_services, admin_account)
