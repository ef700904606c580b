"""What the task service's NATS principal may publish (nats/permissions.toml), for real."""

from __future__ import annotations

import pytest

from sutazai.runtime.settings import MeshSettings
from tests.supervisor.test_nats_permissions import connected


@pytest.mark.parametrize(
    ("subject", "allowed"),
    [
        ("sutazai.tasks.queue.0", True),
        ("sutazai.tasks.queue.3", True),
        ("sutazai.reports.tasks", True),
        ("$JS.API.CONSUMER.MSG.NEXT.SUTAZAI_REPORTS.tasks", True),
        ("$JS.API.STREAM.MSG.DELETE.SUTAZAI_DEAD", True),
        # Never another principal's voice: reports prove their sender by their subject.
        ("sutazai.reports.coordinator", False),
        ("sutazai.reports.agent.text.a1", False),
        ("sutazai.work.text.a1", False),
        ("sutazai.dead.tasks", False),
        ("sutazai.control.text.a1", False),
        ("$JS.API.CONSUMER.MSG.NEXT.SUTAZAI_REPORTS.coordinator", False),
        ("$JS.API.STREAM.DELETE.SUTAZAI_TASKS", False),
        ("$JS.API.STREAM.MSG.DELETE.SUTAZAI_TASKS", False),
    ],
)
async def test_the_task_service_publishes_only_its_own_subjects(
    mesh_settings: MeshSettings, subject: str, allowed: bool
) -> None:
    async with connected(mesh_settings, "tasks") as session:
        assert await session.publish_denied(subject) is not allowed
