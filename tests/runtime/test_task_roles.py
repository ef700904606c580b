"""``task_types`` and ``task_roles`` of ``[agents.*]`` in deploy/mesh.toml: parsed, validated,
merged."""

from __future__ import annotations

from pathlib import Path

import pytest

from sutazai.runtime.deployment import AgentEntry, TaskTypes, load_agents, task_roles
from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.roles import Role


def test_the_packaged_hardware_agent_needs_an_operator_for_every_change() -> None:
    roles = task_roles()

    assert roles["hardware.clean_files"] is Role.OPERATOR
    assert roles["hardware.reclaim_memory"] is Role.OPERATOR
    assert "hardware.get_status" not in roles
    assert "text.generate" not in roles


def test_a_sub_table_is_parsed(tmp_path: Path) -> None:
    catalog = tmp_path / "mesh.toml"
    catalog.write_text(
        '[agents.a]\nmodule = "m"\ntask_types = ["x.*"]\n'
        '[agents.a.task_roles]\n"x.y" = "admin"\n"x.z" = "user"\n'
    )

    (agent,) = load_agents(catalog)

    assert agent.task_roles == {"x.y": Role.ADMIN, "x.z": Role.USER}


@pytest.mark.parametrize(
    "table", ['task_roles = { "x.y" = "root" }', 'task_roles = { "x.y" = 2 }', "task_roles = 3"]
)
def test_a_bad_role_is_refused(tmp_path: Path, table: str) -> None:
    catalog = tmp_path / "mesh.toml"
    catalog.write_text(f'[agents.a]\nmodule = "m"\ntask_types = ["x.*"]\n{table}\n')

    with pytest.raises(ConfigurationError, match="task_roles"):
        load_agents(catalog)


def test_the_higher_role_wins_when_two_agents_offer_a_type() -> None:
    agents = [
        AgentEntry("a", "m", task_roles={"x.y": Role.OPERATOR}),
        AgentEntry("b", "m", task_roles={"x.y": Role.ADMIN, "x.z": Role.OPERATOR}),
    ]

    assert task_roles(agents) == {"x.y": Role.ADMIN, "x.z": Role.OPERATOR}


def test_the_packaged_agents_run_only_their_own_task_types() -> None:
    agents = {agent.name: agent.task_types for agent in load_agents()}

    assert agents["text"].allows("text.summarize")
    assert not agents["text"].allows("hardware.clean_files")
    assert agents["hardware-optimizer"].allows("hardware.clean_files")
    assert not agents["hardware-optimizer"].allows("text.generate")
    assert agents["bench"].allows("bench.noop")
    assert not agents["bench"].allows("text.generate")


def test_a_family_covers_its_types_only() -> None:
    family = TaskTypes.parse(["hardware.*", "text.generate"])

    assert family.allows("hardware.clean_files")
    assert family.allows("text.generate")
    assert not family.allows("hardware")
    assert not family.allows("hardwarex.clean")
    assert not family.allows("text.generated")
    assert TaskTypes.parse(["*"]).allows("anything.at-all")
    assert not TaskTypes().allows("x")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "task_types = []",
        'task_types = "x.*"',
        'task_types = ["X.y"]',
        'task_types = ["a.*.b"]',
        'task_types = ["*.x"]',
        "task_types = [3]",
    ],
)
def test_task_types_are_required_and_checked(tmp_path: Path, line: str) -> None:
    catalog = tmp_path / "mesh.toml"
    catalog.write_text(f'[agents.a]\nmodule = "m"\n{line}\n')

    with pytest.raises(ConfigurationError, match="task_types"):
        load_agents(catalog)


def test_a_privileged_type_must_be_one_the_agent_runs(tmp_path: Path) -> None:
    catalog = tmp_path / "mesh.toml"
    catalog.write_text(
        '[agents.a]\nmodule = "m"\ntask_types = ["x.*"]\n[agents.a.task_roles]\n"y.z" = "admin"\n'
    )

    with pytest.raises(ConfigurationError, match="not one of its task_types"):
        load_agents(catalog)
