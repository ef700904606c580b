"""Settings of one agent process: how it runs, not what it does.

Loaded once at the process's edge (environment variables prefixed ``SUTAZAI_AGENT_``) and passed
to :class:`~sutazai.sdk.Agent` explicitly. The NATS connection itself comes from the mesh's
settings (:class:`~sutazai.runtime.settings.MeshSettings`: servers and this principal's
credentials file), as for every other process of the mesh.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

INSTANCE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""An agent instance id: one NATS subject token, also part of a consumer name."""


class AgentSettings(BaseSettings):
    """How an agent instance heart-beats, pulls, reports and drains."""

    model_config = SettingsConfigDict(env_prefix="SUTAZAI_AGENT_", frozen=True, extra="ignore")

    instance_id: str | None = Field(default=None, pattern=INSTANCE_ID_PATTERN)
    """This instance's id (``SUTAZAI_AGENT_INSTANCE_ID``). A restarted process that keeps it
    finds its predecessor's durable consumer, so an assignment the predecessor never
    acknowledged is delivered again; unset picks a fresh one."""
    heartbeat_seconds: float = Field(default=3.0, gt=0.0, le=60.0)
    """How often the instance rewrites its entry in ``sutazai_agents`` (the bucket's TTL is
    10 s: an instance silent for that long is offline). A change of load is written sooner."""
    heartbeat_min_seconds: float = Field(default=0.25, ge=0.0, le=60.0)
    """Least time between two heartbeats: many short tasks make one write, not one each."""
    ack_wait_seconds: float = Field(default=30.0, gt=0.0, le=3600.0)
    """``ack_wait`` of the instance's consumer (30 s in the wire contract): an assignment not
    acknowledged, nor kept alive, for this long is delivered again. In-progress
    acknowledgements go out every third of it while a handler runs."""
    fetch_seconds: float = Field(default=2.0, gt=0.0, le=60.0)
    """How long one pull request waits for work; bounds how soon a drain stops pulling."""
    drain_seconds: float = Field(default=30.0, ge=0.0, le=3600.0)
    """How long running handlers may finish after a stop before they are cancelled."""
    cancel_grace_seconds: float = Field(default=5.0, ge=0.0, le=600.0)
    """How long a cancelled handler may take to unwind before its report goes out anyway."""
    default_deadline_seconds: float = Field(default=3600.0, gt=0.0, le=7 * 24 * 3600.0)
    """Run time of an assignment that carries no deadline."""
    publish_timeout_seconds: float = Field(default=5.0, gt=0.0, le=120.0)
    """Wait for one JetStream acknowledgement (a report, a heartbeat, an ack)."""
    report_retry_seconds: float = Field(default=60.0, gt=0.0, le=3600.0)
    """How long a final report is retried (NATS away); after that the assignment is left
    unacknowledged and JetStream delivers it again."""
    progress_interval_seconds: float = Field(default=0.5, ge=0.0, le=60.0)
    """Least time between two progress reports of one task; calls in between are dropped."""
    version: str = Field(default="0.1.0", max_length=64)
    """The agent's version, shown in its heartbeat."""
