"""The opt-in fixtures: gateway, Envoy and the catalog's services on the session mesh."""

from __future__ import annotations

from sutazai.services.cli.status import poll_status
from sutazai.services.runtime.settings import MeshSettings


async def test_the_system_service_reports_a_healthy_mesh_through_envoy(
    mesh_services: MeshSettings,
) -> None:
    outcome = await poll_status(mesh_services, wait=60)
    assert outcome.healthy, outcome.problem
    assert outcome.response is not None
    names = {component.name for component in outcome.response.components}
    assert {"postgres", "redis", "nats", "envoy"} <= names
