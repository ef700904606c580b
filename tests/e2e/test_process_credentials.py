"""Every process the supervisor starts knows its own credentials only, and none from its env.

Agents (``[agents.<name>]``) run as ``serve <name>`` like services; their files hold only their
NATS password (nats/README.md, "Agent principals").
"""

from __future__ import annotations

from pathlib import Path

import psutil

from sutazai.runtime.credentials import credentials_path
from sutazai.runtime.deployment import load_agents, load_catalog
from sutazai.runtime.secrets import MeshSecrets
from sutazai.runtime.settings import MeshSettings


def _every_password(secrets: MeshSecrets) -> dict[str, str]:
    """Each secret of the mesh, named ``<kind>:<principal>``."""
    named = {
        "postgres:superuser": secrets.postgres_password,
        "redis:default": secrets.redis_password,
    }
    for kind, passwords in (
        ("nats", secrets.nats_passwords),
        ("postgres", secrets.postgres_passwords),
        ("redis", secrets.redis_passwords),
    ):
        named.update({f"{kind}:{principal}": value for principal, value in passwords.items()})
    return named


def _principal_of(cmdline: list[str], services: set[str]) -> str | None:
    if cmdline[-2:-1] == ["serve"] and cmdline[-1] in services:
        return cmdline[-1]
    if "sutazai.gateway" in cmdline:
        return "gateway"
    return None


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


async def test_each_child_holds_only_its_own_credentials(mesh_services: MeshSettings) -> None:
    passwords = _every_password(mesh_services.secrets)
    services = {entry.name for entry in load_catalog()}
    agents = {entry.name for entry in load_agents() if not entry.external}
    seen: dict[str, int] = {}
    infrastructure = 0
    for process in psutil.Process().children(recursive=True):
        try:
            environ = _read(f"/proc/{process.pid}/environ")
            cmdline = _read(f"/proc/{process.pid}/cmdline")
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended while we looked (a PostgreSQL backend, say)
        # No password of any kind in any child's environment or command line.
        leaked = [name for name, value in passwords.items() if value.encode() in environ + cmdline]
        assert not leaked, (process.pid, cmdline, leaked)
        variables = dict(
            entry.partition(b"=")[::2] for entry in environ.split(b"\0") if b"=" in entry
        )
        principal = _principal_of(
            [a.decode() for a in cmdline.split(b"\0") if a], services | agents
        )
        if principal is None:
            assert b"SUTAZAI_CREDENTIALS_FILE" not in variables, cmdline
            infrastructure += 1
            continue
        seen[principal] = process.pid
        path = credentials_path(mesh_services.state_dir, principal)
        assert variables[b"SUTAZAI_CREDENTIALS_FILE"].decode() == str(path.resolve())
        assert variables[b"SUTAZAI_PRINCIPAL"].decode() == principal
        assert path.stat().st_mode & 0o777 == 0o600
        text = path.read_text()
        own = {f"nats:{principal}", f"postgres:{principal}", f"redis:{principal}"}
        held = {name for name, value in passwords.items() if value in text}
        expected = {name for name in own if name in passwords}
        assert held == expected, (principal, held)
        if principal in agents:
            assert held == {f"nats:{principal}"}, (principal, held)
    assert agents, "deploy/mesh.toml runs at least the text agent"
    assert set(seen) == {"gateway", *services, *agents}
    # NATS, PostgreSQL (and its backends), Redis and Envoy were checked as well.
    assert infrastructure >= 4
