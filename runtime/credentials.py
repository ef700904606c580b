"""One process's own credentials: what a child of the supervisor may know, and nothing more.

The supervisor is the only reader of ``secrets.json``. Before it starts the gateway or a service
it writes that principal's credentials, and only those, to
``<state dir>/credentials/<principal>.json`` (mode 0600, directory 0700, replaced atomically) and
passes the child the path of the file in ``SUTAZAI_CREDENTIALS_FILE``: no secret value is ever
in a child's environment or command line.

The file::

    {
      "principal": "system",
      "nats_user": "system",
      "nats_password": "...",
      "postgres_dsn": "postgresql://sutazai_system:...@127.0.0.1:10000/sutazai",
      "redis_url": "redis://sutazai_system:...@127.0.0.1:10001/0"
    }

A principal without PostgreSQL or Redis access (the gateway) has ``null`` there.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.secrets import refuse_exposed

CREDENTIALS_DIR = "credentials"


class ProcessCredentials(BaseModel):
    """The credentials of one principal: its NATS user, PostgreSQL role and Redis user."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    principal: str
    """``admin``, ``gateway`` or a service name."""
    nats_user: str | None = None
    """``None``: an external NATS without authentication."""
    nats_password: SecretStr | None = None
    postgres_dsn: SecretStr | None = None
    """The principal's own role; ``None``: no PostgreSQL access."""
    redis_url: SecretStr | None = None
    """The principal's own ACL user; ``None``: no Redis access."""

    def document(self) -> str:
        """The file's JSON text, secrets included."""
        return json.dumps(
            {
                "principal": self.principal,
                "nats_user": self.nats_user,
                "nats_password": reveal(self.nats_password),
                "postgres_dsn": reveal(self.postgres_dsn),
                "redis_url": reveal(self.redis_url),
            },
            indent=2,
        )


def reveal(value: SecretStr | str | None) -> str | None:
    """The clear text of an optional secret."""
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def credentials_path(state_dir: Path, principal: str) -> Path:
    """Where the supervisor keeps ``principal``'s credentials file."""
    return state_dir / CREDENTIALS_DIR / f"{principal}.json"


def load_credentials(path: Path) -> ProcessCredentials:
    """Read a credentials file.

    Raises:
        ConfigurationError: the file is missing, malformed, or readable by others.

    """
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the credentials file {path}: {exc}") from exc
    refuse_exposed(path, mode)
    try:
        return ProcessCredentials.model_validate_json(text)
    except ValidationError as exc:
        # The message would quote the file's values: name the fields only.
        fields = ", ".join(".".join(map(str, error["loc"])) for error in exc.errors())
        raise ConfigurationError(f"{path} is not a credentials file (fields: {fields})") from None
