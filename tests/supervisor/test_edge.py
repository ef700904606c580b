"""The opt-in fixtures: gateway, Envoy and the catalog's services on the session mesh."""

from __future__ import annotations

import httpx

from sutazai.ops.cli.status import poll_status
from sutazai.runtime.settings import MeshSettings
from sutazai.system.v1.system_service_pb2 import HEALTHY


async def test_the_system_service_reports_a_healthy_mesh_through_envoy(
    mesh_services: MeshSettings,
) -> None:
    outcome = await poll_status(mesh_services, wait=60)
    assert outcome.healthy, outcome.problem
    assert outcome.response is not None
    # An anonymous caller gets the overall state only (the components need a token).
    assert outcome.response.overall == HEALTHY


async def test_each_child_connects_to_nats_as_its_own_principal(
    mesh_services: MeshSettings,
) -> None:
    monitor = f"http://{mesh_services.host}:{mesh_services.nats.monitor_port}"
    async with httpx.AsyncClient(base_url=monitor, timeout=5, trust_env=False) as client:
        connz = (await client.get("/connz", params={"auth": "true", "limit": 1024})).json()
    users = {c.get("name"): c.get("authorized_user") for c in connz["connections"]}
    assert users.get("gateway") == "gateway", users
    assert users.get("sutazai-system") == "system", users
