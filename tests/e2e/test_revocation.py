"""Revocation by account on the whole mesh: deactivate, demote, change password, revoke all
sessions (RPC and CLI). The old access token must be refused by every service within a second:
through Envoy (REST and gRPC, reflection and health served by the gateway included) and on each
service's own port."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.auth.v1 import auth_service_pb2_grpc as auth_grpc
from sutazai.ops.supervisor.environment import settings_environment
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import MeshSettings
from sutazai.system.v1 import system_service_pb2 as system_pb
from sutazai.system.v1 import system_service_pb2_grpc as system_grpc
from tests.harness.cli import run_cli
from tests.harness.waiting import wait_for

TIMEOUT = 5


def new_credentials() -> tuple[str, str]:
    return f"rv{secrets.token_hex(4)}", f"{secrets.token_urlsafe(12)}-Aa1"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@dataclass
class Everywhere:
    """Every place a token is judged, and whether each accepts a token."""

    rest: httpx.AsyncClient
    edge: grpc.aio.Channel
    auth_ports: list[grpc.aio.Channel]
    """Each auth instance's own port."""
    system_ports: list[grpc.aio.Channel]
    """Each system instance's own port."""

    async def verdicts(self, token: str) -> dict[str, bool]:
        """Place → accepted; a refusal must be exactly 401 / UNAUTHENTICATED."""
        headers = bearer(token)
        metadata = tuple(headers.items())
        verdicts = {
            "rest /v1/auth/me": _accepted_rest(await self.rest.get("/v1/auth/me", headers=headers)),
            "rest /v1/system/status": _accepted_rest(
                await self.rest.get("/v1/system/status", headers=headers)
            ),
        }
        checks: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            (
                "envoy grpc GetMe",
                lambda: auth_grpc.AuthServiceStub(self.edge).GetMe(
                    auth_pb.GetMeRequest(), metadata=metadata, timeout=TIMEOUT
                ),
            ),
            (
                "envoy grpc GetStatus",
                lambda: system_grpc.SystemServiceStub(self.edge).GetStatus(
                    system_pb.GetStatusRequest(), metadata=metadata, timeout=TIMEOUT
                ),
            ),
            ("envoy reflection", lambda: _reflect(self.edge, metadata)),
            (
                "envoy health",
                lambda: health_pb2_grpc.HealthStub(self.edge).Check(
                    health_pb2.HealthCheckRequest(), metadata=metadata, timeout=TIMEOUT
                ),
            ),
        ]
        for index, channel in enumerate(self.auth_ports):
            auth = auth_grpc.AuthServiceStub(channel)
            checks.append(
                (
                    f"auth port {index}",
                    lambda auth=auth: auth.GetMe(  # type: ignore[misc]
                        auth_pb.GetMeRequest(), metadata=metadata, timeout=TIMEOUT
                    ),
                )
            )
        for index, channel in enumerate(self.system_ports):
            system = system_grpc.SystemServiceStub(channel)
            checks.append(
                (
                    f"system port {index}",
                    lambda system=system: system.GetStatus(  # type: ignore[misc]
                        system_pb.GetStatusRequest(), metadata=metadata, timeout=TIMEOUT
                    ),
                )
            )
        for name, call in checks:
            verdicts[name] = await _accepted_grpc(call)
        return verdicts


def _accepted_rest(reply: httpx.Response) -> bool:
    assert reply.status_code in (200, 401), reply.text
    return reply.status_code == 200


async def _accepted_grpc(call: Callable[[], Awaitable[object]]) -> bool:
    try:
        await call()
    except grpc.aio.AioRpcError as exc:
        if exc.code() is not grpc.StatusCode.UNAUTHENTICATED:
            raise
        return False
    return True


async def _reflect(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for reply in stub.ServerReflectionInfo(
        iter([request]), metadata=metadata, timeout=TIMEOUT
    ):
        assert reply.list_services_response.service


@pytest.fixture(scope="module")
async def everywhere(mesh_services: MeshSettings) -> AsyncIterator[Everywhere]:
    nc = await connect_nats(mesh_services, name="tests-revocation-e2e")
    try:
        registry = await Registry.open(nc.jetstream(), mesh_services.registry)
        instances: list[ServiceInstance] = []

        async def both_registered() -> bool:
            # Registration is a heartbeat, not a fact: an entry that lapsed while the machine was
            # saturated by earlier tests comes back on its next beat.
            instances[:] = await registry.list()
            return {"auth", "system"} <= {i.service for i in instances}

        await wait_for(both_registered, timeout=30, interval=0.2, message="auth and system up")
    finally:
        await nc.close()
    ports = {
        service: [
            grpc.aio.insecure_channel(f"{i.host}:{i.port}")
            for i in instances
            if i.service == service
        ]
        for service in ("auth", "system")
    }
    assert ports["auth"]
    assert ports["system"]
    base = f"http://127.0.0.1:{mesh_services.envoy.port}"
    try:
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as rest,
            grpc.aio.insecure_channel(f"127.0.0.1:{mesh_services.envoy.port}") as edge,
        ):
            yield Everywhere(rest, edge, ports["auth"], ports["system"])
    finally:
        for channel in [*ports["auth"], *ports["system"]]:
            await channel.close()


async def sign_in(rest: httpx.AsyncClient, username: str, password: str) -> str:
    reply = await rest.post("/v1/auth/login", json={"username": username, "password": password})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


@pytest.mark.parametrize("action", ["deactivate", "demote", "password", "revoke", "revoke-cli"])
async def test_the_old_token_is_refused_everywhere_within_a_second(
    action: str, everywhere: Everywhere, admin_token: str, mesh_services: MeshSettings
) -> None:
    rest = everywhere.rest
    admin = bearer(admin_token)
    username, password = new_credentials()
    registered = await rest.post(
        "/v1/auth/register",
        json={"username": username, "email": f"{username}@example.org", "password": password},
    )
    assert registered.status_code == 200, registered.text
    if action == "demote":
        promoted = await rest.post(
            f"/v1/users/{username}:setRole", json={"role": "ROLE_OPERATOR"}, headers=admin
        )
        assert promoted.status_code == 200, promoted.text
    token = await sign_in(rest, username, password)
    other_token = await sign_in(rest, *await registered_other(rest))
    before = await everywhere.verdicts(token)
    assert all(before.values()), before

    if action == "deactivate":
        done = await rest.post(f"/v1/users/{username}:deactivate", headers=admin)
    elif action == "demote":
        done = await rest.post(
            f"/v1/users/{username}:setRole", json={"role": "ROLE_USER"}, headers=admin
        )
    elif action == "password":
        done = await rest.post(
            "/v1/auth/password",
            json={"current_password": password, "new_password": f"{password}-New"},
            headers=bearer(token),
        )
    elif action == "revoke":
        done = await rest.post(f"/v1/users/{username}:revokeSessions", headers=admin)
    else:
        revoked = await run_cli(
            "users", "revoke", username, env=settings_environment(mesh_services)
        )
        assert revoked.code == 0, revoked.stderr
        done = httpx.Response(200)
    assert done.status_code == 200, done.text

    latest: dict[str, bool] = {}

    async def refused_everywhere() -> bool:
        latest.update(await everywhere.verdicts(token))
        return not any(latest.values())

    try:
        await wait_for(
            refused_everywhere, timeout=1, interval=0.01, message="old token refused everywhere"
        )
    except TimeoutError as exc:
        raise AssertionError(f"still accepted after 1 s: {latest}") from exc
    # Nobody else was signed out.
    after = await everywhere.verdicts(other_token)
    assert all(after.values()), after


async def registered_other(rest: httpx.AsyncClient) -> tuple[str, str]:
    username, password = new_credentials()
    reply = await rest.post(
        "/v1/auth/register",
        json={"username": username, "email": f"{username}@example.org", "password": password},
    )
    assert reply.status_code == 200, reply.text
    return username, password
