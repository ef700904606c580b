"""Everything secret the mesh needs: generated before any component starts, handed out per child."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pydantic import SecretStr

from sutazai.ops.supervisor.nats_auth import mesh_principals
from sutazai.runtime.credentials import CREDENTIALS_DIR, ProcessCredentials, credentials_path
from sutazai.runtime.deployment import AgentEntry, load_agents, load_catalog
from sutazai.runtime.files import replace_file
from sutazai.runtime.key_files import ensure_key_ring
from sutazai.runtime.secrets import MeshSecrets, ensure_secrets
from sutazai.runtime.settings import MeshSettings


def ensure_credentials(
    settings: MeshSettings,
    *,
    services: Iterable[str] | None = None,
    agents: Iterable[AgentEntry] | None = None,
) -> MeshSecrets:
    """Generate what is missing (passwords and the signing key ring); retire what is gone.

    A NATS password per principal (agents included), and a PostgreSQL role and a Redis user
    password per service (an agent has neither). Existing secrets and keys are kept (an HS256
    ring of an older release is replaced by an Ed25519 one); the public JWKS is rewritten from
    the private ring. ``services`` and ``agents`` are the whole mesh (default: those of
    ``deploy/mesh.toml``): the passwords and credentials files of any other principal (a
    service or agent an older release had) are deleted, so that nothing keeps a secret for a
    process that no longer exists. (Its NATS user and Redis user go with the next start, whose
    configurations are rendered from the catalog; its PostgreSQL role is dropped then too.)
    Call it before anything reads ``settings.secrets``, which is read once per settings object.

    Raises:
        ConfigurationError: an existing secrets or key file is unreadable or not private.
        SupervisorError: a service name cannot name a NATS principal.

    """
    names = [entry.name for entry in load_catalog()] if services is None else list(services)
    agents = load_agents() if agents is None else list(agents)
    principals = [principal.name for principal in mesh_principals(names, agents)]
    secrets = ensure_secrets(
        settings.state_dir, nats_principals=principals, services=names, retire=True
    )
    _delete_credentials_except(settings.state_dir / CREDENTIALS_DIR, set(principals))
    ensure_key_ring(settings.keys_file, settings.jwks_file)
    return secrets


def _delete_credentials_except(directory: Path, principals: set[str]) -> None:
    """Delete the credentials file of every principal not in ``principals``."""
    if not directory.is_dir():
        return
    for path in directory.glob("*.json"):
        if path.stem not in principals:
            path.unlink(missing_ok=True)


def write_principal_credentials(settings: MeshSettings, principal: str) -> Path:
    """Write ``principal``'s own credentials, and nothing else, to its file; return the path.

    ``settings`` are the supervisor's (it reads ``secrets.json``). The directory is 0700, the
    file 0600 and replaced atomically, so a child never reads a half-written file.
    """
    path = credentials_path(settings.state_dir, principal)
    directory = settings.state_dir / CREDENTIALS_DIR
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkdir's mode applies only to a new directory: tighten one an older release left open.
    os.chmod(directory, 0o700)
    replace_file(path, settings.as_principal(principal).credentials.document())
    return path


def write_agent_credentials(settings: MeshSettings, agent: str) -> Path:
    """Write an agent's credentials file: its NATS user and password, nothing else.

    An agent sees no database and no cache: a task's payload and result are the only data it
    handles (nats/README.md, "Agent principals").
    """
    as_agent = settings.as_principal(agent)
    nats = as_agent.nats_credentials
    credentials = ProcessCredentials(
        principal=agent,
        nats_user=nats[0] if nats else None,
        nats_password=SecretStr(nats[1]) if nats else None,
    )
    path = credentials_path(settings.state_dir, agent)
    directory = settings.state_dir / CREDENTIALS_DIR
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    replace_file(path, credentials.document())
    return path
