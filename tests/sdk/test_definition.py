"""Declaring an agent, and what a handler's context refuses (no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sutazai.sdk import Agent, AgentDefinitionError, AgentSettings, TaskContext

SETTINGS = AgentSettings(instance_id="a1")


async def nothing(task: TaskContext) -> dict[str, Any]:
    return {}


@pytest.mark.parametrize("name", ["Text", "1text", "te.xt", "te xt", "", "t" * 64])
def test_an_agent_name_is_one_lower_case_principal_name(name: str) -> None:
    with pytest.raises(AgentDefinitionError):
        Agent(name, settings=SETTINGS)


def test_instance_ids_capabilities_and_concurrency_are_checked() -> None:
    with pytest.raises(AgentDefinitionError):
        Agent("text", settings=SETTINGS, instance_id="a.b")
    with pytest.raises(AgentDefinitionError):
        Agent("text", settings=SETTINGS, capabilities=["has space"])
    with pytest.raises(AgentDefinitionError):
        Agent("text", settings=SETTINGS, max_concurrency=0)
    with pytest.raises(AgentDefinitionError):
        Agent("text", settings=SETTINGS, capabilities=[f"c{i}" for i in range(65)])


def test_handlers_declare_capabilities_once_each() -> None:
    agent = Agent("text", settings=SETTINGS, capabilities=["gpu", "text.a"])

    @agent.handler("text.a")
    async def first(task: TaskContext) -> dict[str, Any]:
        return {}

    agent.register("text.b", nothing)

    assert agent.capabilities == ["text.a", "text.b", "gpu"]
    assert agent.agent_id == "text.a1"
    with pytest.raises(AgentDefinitionError):
        agent.register("text.a", nothing)


def test_an_instance_id_comes_from_the_argument_the_settings_or_is_fresh() -> None:
    assert Agent("text", settings=SETTINGS).instance_id == "a1"
    assert Agent("text", settings=SETTINGS, instance_id="b2").instance_id == "b2"
    fresh = Agent("text", settings=AgentSettings()).instance_id
    assert fresh
    assert fresh != Agent("text", settings=AgentSettings()).instance_id


async def test_progress_is_a_fraction_and_close_reports_are_dropped() -> None:
    sent: list[tuple[float, str]] = []
    now = [0.0]

    async def sink(fraction: float, message: str) -> None:
        sent.append((fraction, message))

    context = TaskContext(
        task_id="t",
        attempt=1,
        task_type="x",
        payload={},
        deadline=datetime.now(UTC),
        agent_id="a.b",
        nats=None,  # type: ignore[arg-type]
        progress=sink,
        progress_interval=1.0,
        clock=lambda: now[0],
    )

    await context.report_progress(0.1, "a")
    await context.report_progress(0.2, "b")
    now[0] = 1.5
    await context.report_progress(0.3, "c" * 600)
    with pytest.raises(ValueError, match="fraction"):
        await context.report_progress(1.5)
    with pytest.raises(ValueError, match="fraction"):
        await context.report_progress(float("nan"))

    assert sent == [(0.1, "a"), (0.3, "c" * 512)]
