"""Everything secret the mesh needs, generated before any component starts."""

from __future__ import annotations

from collections.abc import Iterable

from sutazai.services.runtime.deployment import load_catalog
from sutazai.services.runtime.key_files import ensure_key_ring
from sutazai.services.runtime.secrets import MeshSecrets, ensure_secrets
from sutazai.services.runtime.settings import MeshSettings
from sutazai.services.supervisor.nats_auth import mesh_principals


def ensure_credentials(
    settings: MeshSettings, *, services: Iterable[str] | None = None
) -> MeshSecrets:
    """Generate what is missing: passwords (one per NATS principal) and the signing key ring.

    Existing secrets and keys are kept (an HS256 ring of an older release is replaced by an
    Ed25519 one); the public JWKS is rewritten from the private ring. ``services`` are the
    services that get a NATS principal (default: those of ``deploy/mesh.toml``). Call it before
    anything reads ``settings.secrets``, which is read once per settings object.

    Raises:
        ConfigurationError: an existing secrets or key file is unreadable or not private.
        SupervisorError: a service name cannot name a NATS principal.

    """
    names = [entry.name for entry in load_catalog()] if services is None else services
    principals = [principal.name for principal in mesh_principals(names)]
    secrets = ensure_secrets(settings.state_dir, nats_principals=principals)
    ensure_key_ring(settings.keys_file, settings.jwks_file)
    return secrets
