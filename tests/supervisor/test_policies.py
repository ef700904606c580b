"""Pure pieces of the supervisor: restart backoff, child environment, catalog, pid file."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from sutazai.ops.supervisor import AlreadyRunningError, RestartPolicy
from sutazai.ops.supervisor.components.services import INSTANCE_ID_VARIABLE, service_components
from sutazai.ops.supervisor.environment import child_environment, settings_environment
from sutazai.ops.supervisor.pidfile import PidFile, running_supervisor
from sutazai.runtime.deployment import find_service, load_catalog
from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.logfiles import last_lines
from sutazai.runtime.settings import MeshSettings, PostgresSettings, ServiceSettings


def test_restart_delays_grow_exponentially_up_to_the_cap() -> None:
    policy = RestartPolicy(initial_seconds=0.5, factor=2.0, max_seconds=4.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.delay(10_000) == 4.0


def test_a_stable_run_forgives_earlier_crashes() -> None:
    policy = RestartPolicy(stable_after_seconds=30.0)
    assert policy.failures_after(5, uptime_seconds=1.0) == 6
    assert policy.failures_after(5, uptime_seconds=31.0) == 1


def test_children_rebuild_the_same_settings_from_their_environment_but_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = MeshSettings(
        state_dir=tmp_path,
        principal="system",
        postgres=PostgresSettings(port=12345, dsn="postgresql://u:p@db:5432/x"),
    )
    env = settings_environment(settings)
    # The external DSN holds a password: a child gets it from its credentials file instead.
    assert "SUTAZAI_POSTGRES__DSN" not in env
    for key in [k for k in os.environ if k.startswith("SUTAZAI_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert MeshSettings() == settings.model_copy(
        update={"postgres": settings.postgres.model_copy(update={"dsn": None})}
    )


def test_explicit_settings_win_over_inherited_variables(tmp_path: Path) -> None:
    settings = MeshSettings(state_dir=tmp_path, postgres=PostgresSettings(port=12345))
    env = child_environment(
        settings, {"PATH": "/bin", "SUTAZAI_POSTGRES__PORT": "1", "SUTAZAI_OTHER": "kept"}
    )
    assert env["PATH"] == "/bin"
    assert env["SUTAZAI_POSTGRES__PORT"] == "12345"
    assert env["SUTAZAI_OTHER"] == "kept"


def test_the_catalog_names_the_system_service(tmp_path: Path) -> None:
    assert find_service("system").module == "sutazai.services.system.server"
    with pytest.raises(ConfigurationError, match="unknown service 'nope'"):
        find_service("nope")
    settings = MeshSettings(state_dir=tmp_path)
    specs = {spec.name: spec for spec in service_components(settings, load_catalog(), env={})}
    assert "system" in specs
    launch = specs["system"].launch
    assert launch is not None
    assert list(launch.argv[1:]) == ["-m", "sutazai.ops.cli", "serve", "system"]


def test_each_service_slot_keeps_one_instance_id_for_all_its_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = MeshSettings(state_dir=tmp_path)
    entries = [replace(find_service("auth"), instances=3)]

    specs = service_components(settings, entries, env={INSTANCE_ID_VARIABLE: "0" * 12})

    ids = []
    for spec in specs:
        assert spec.launch is not None  # one Launch, reused for every restart of the slot
        ids.append(spec.launch.env[INSTANCE_ID_VARIABLE])
    assert len(set(ids)) == 3, "every slot has an id of its own, not the inherited one"
    monkeypatch.delenv(INSTANCE_ID_VARIABLE, raising=False)
    assert ServiceSettings().instance_id is None  # `sutazai serve` by hand: a fresh id
    monkeypatch.setenv(INSTANCE_ID_VARIABLE, ids[0])
    assert ServiceSettings().instance_id == ids[0]


def test_a_malformed_instance_id_is_refused() -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(instance_id="../../etc")


def test_the_pid_file_excludes_a_second_supervisor(tmp_path: Path) -> None:
    assert running_supervisor(tmp_path) is None
    with PidFile(tmp_path):
        assert running_supervisor(tmp_path) == os.getpid()
        with pytest.raises(AlreadyRunningError, match=str(os.getpid())), PidFile(tmp_path):
            pass
    assert running_supervisor(tmp_path) is None
    assert not (tmp_path / "supervisor.pid").exists()


def test_a_stale_pid_file_is_not_a_running_supervisor(tmp_path: Path) -> None:
    (tmp_path / "supervisor.pid").write_text("999999\n")
    assert running_supervisor(tmp_path) is None


def test_last_lines_reads_the_end_of_large_logs(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(20_000)))
    assert last_lines(log, 3) == ["line 19997", "line 19998", "line 19999"]
    assert last_lines(tmp_path / "missing.log", 3) == []
