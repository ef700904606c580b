"""CPU per task by process role (``sutazai.ops.bench.cpu``), on fixed snapshots and for real."""

from __future__ import annotations

import os

from sutazai.ops.bench.cpu import Snapshot, per_task, snapshot


def test_cpu_is_summed_by_role_per_task_with_new_processes_whole_and_small_roles_hidden() -> None:
    before = Snapshot({1: ("postgres", 1.0), 2: ("postgres", 2.0), 3: ("tasks", 5.0)})
    after = Snapshot(
        {
            1: ("postgres", 1.5),
            2: ("postgres", 2.5),
            3: ("tasks", 7.0),
            4: ("postgres", 0.25),  # a backend that started during the round
            5: ("redis-server", 0.00001),
        }
    )

    figures = per_task(before, after, tasks=1000)

    assert figures == {"tasks": 2.0, "postgres": 1.25, "total": 3.25}
    assert list(figures)[:2] == ["tasks", "postgres"], "largest first"


def test_a_snapshot_names_this_process_and_the_agent() -> None:
    mine = os.getpid()
    parent = os.getppid()

    taken = snapshot(agent_pid=parent)

    assert taken.seconds[mine][0] == "benchmark"
    assert taken.seconds[parent][0] == "agent"
    assert taken.seconds[mine][1] > 0
