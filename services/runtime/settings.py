"""Typed settings, loaded once at a process's edge and passed explicitly.

Every value comes from defaults, then environment variables prefixed ``SUTAZAI_`` (nested with
``__``, e.g. ``SUTAZAI_REDIS__URL``). Each dependency runs embedded by default and can be pointed
at an external server instead: set its URL/DSN and the supervisor does not start it.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from sutazai.services.runtime.secrets import MeshSecrets, load_secrets

LOOPBACK = "127.0.0.1"


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/sutazai``, else ``~/.local/state/sutazai``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sutazai"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NatsSettings(_Section):
    """NATS with JetStream: the registry, task dispatch and events."""

    url: str | None = None
    """External server URL(s), comma-separated; unset runs the embedded server."""
    user: str = "sutazai"
    """User name for the embedded server (its password is a generated secret)."""
    password: SecretStr | None = None
    """Password for an external server; unset uses the generated secret."""
    port: int = 10007
    """Client port of the embedded server."""
    monitor_port: int = 10008
    """HTTP monitoring port of the embedded server."""


class PostgresSettings(_Section):
    """PostgreSQL: the record of truth for users, tasks and audit."""

    dsn: SecretStr | None = None
    """External DSN; unset runs the embedded server."""
    port: int = 10000
    """Port of the embedded server."""
    user: str = "sutazai"
    """Role the mesh connects as on the embedded server."""
    database: str = "sutazai"
    """Database the mesh uses on the embedded server."""


class RedisSettings(_Section):
    """Redis: caches, rate-limit buckets and the token deny-list."""

    url: SecretStr | None = None
    """External URL (with credentials); unset runs the embedded server."""
    port: int = 10001
    """Port of the embedded server."""


class EnvoySettings(_Section):
    """The Envoy edge."""

    port: int = 10005
    """The one listener serving gRPC and REST/JSON."""
    admin_port: int = 10015
    """Admin interface (always bound to loopback)."""
    base_id: int = 10005
    """Shared-memory id; distinct per Envoy on one host."""


class GatewaySettings(_Section):
    """The xDS control plane that configures Envoy."""

    port: int = 10006
    """ADS, mesh-wide reflection and health, on one gRPC port."""


class RegistrySettings(_Section):
    """The NATS KV bucket where service instances register."""

    bucket: str = "sutazai_registry"
    """KV bucket name."""
    ttl_seconds: float = Field(default=15.0, gt=1.0)
    """An instance that stops heart-beating disappears after this long."""
    heartbeat_seconds: float = Field(default=3.0, gt=0.0)
    """How often an instance refreshes its entry."""


class MeshSettings(BaseSettings):
    """Where every part of the mesh lives and how to reach it."""

    model_config = SettingsConfigDict(
        env_prefix="SUTAZAI_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    state_dir: Path = Field(default_factory=default_state_dir)
    """Data, logs, generated configs and secrets; survives restarts."""
    host: str = LOOPBACK
    """Address every mesh-internal server binds and advertises."""
    version: str = "0.1.0"
    """Release advertised by service instances."""
    nats: NatsSettings = NatsSettings()
    postgres: PostgresSettings = PostgresSettings()
    redis: RedisSettings = RedisSettings()
    envoy: EnvoySettings = EnvoySettings()
    gateway: GatewaySettings = GatewaySettings()
    registry: RegistrySettings = RegistrySettings()

    @cached_property
    def secrets(self) -> MeshSecrets:
        """The generated secrets of :attr:`state_dir` (read once)."""
        return load_secrets(self.state_dir)

    @property
    def nats_servers(self) -> list[str]:
        """NATS server URLs, embedded or external."""
        if self.nats.url:
            return [u.strip() for u in self.nats.url.split(",") if u.strip()]
        return [f"nats://{self.host}:{self.nats.port}"]

    @property
    def nats_credentials(self) -> tuple[str, str] | None:
        """User and password for NATS, or ``None`` for an external server without auth."""
        if self.nats.password is not None:
            return self.nats.user, self.nats.password.get_secret_value()
        if self.nats.url:
            return None
        return self.nats.user, self.secrets.nats_password

    @property
    def postgres_dsn(self) -> str:
        """DSN of the mesh database, embedded or external."""
        if self.postgres.dsn is not None:
            return self.postgres.dsn.get_secret_value()
        password = quote(self.secrets.postgres_password, safe="")
        return (
            f"postgresql://{self.postgres.user}:{password}@{self.host}:"
            f"{self.postgres.port}/{self.postgres.database}"
        )

    @property
    def redis_url(self) -> str:
        """URL of Redis, embedded or external, with credentials."""
        if self.redis.url is not None:
            return self.redis.url.get_secret_value()
        password = quote(self.secrets.redis_password, safe="")
        return f"redis://:{password}@{self.host}:{self.redis.port}/0"

    @property
    def envoy_admin_url(self) -> str:
        """Base URL of Envoy's admin interface."""
        return f"http://{LOOPBACK}:{self.envoy.admin_port}"


class ServiceSettings(BaseSettings):
    """Settings of one service instance (`sutazai serve NAME`)."""

    model_config = SettingsConfigDict(env_prefix="SUTAZAI_SERVICE_", frozen=True, extra="ignore")

    port: int = 0
    """gRPC port; 0 picks a free one (the registry tells Envoy which)."""
    metrics_port: int = 0
    """Prometheus port; 0 picks a free one, -1 disables the endpoint."""
    grace_seconds: float = Field(default=10.0, ge=0.0)
    """How long in-flight calls may finish after SIGTERM."""
    max_message_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    """Largest request or response message accepted."""
    probe_interval_seconds: float = Field(default=2.0, gt=0.0)
    """Cadence of background probes (used by services that probe, e.g. system)."""
