"""Every name of the wire contract an agent uses (nats/README.md, "Tasks and agents").

Pure functions of the agent's name and instance id; nothing here does I/O.
"""

from __future__ import annotations

WORK_STREAM = "SUTAZAI_WORK"
"""Work-queue stream of assignments, one subject per agent instance."""
REPORTS_STREAM = "SUTAZAI_REPORTS"
"""Stream of task reports."""
AGENTS_BUCKET = "sutazai_agents"
"""Key-value bucket of agent heartbeats (history 1, TTL 10 s, limit markers)."""
INFERENCE_GENERATE = "sutazai.inference.generate"
"""Request-reply subject of the inference service (``GenerateRequest`` → ``GenerateReply``)."""
TIMEOUT_HEADER = "Sutazai-Timeout-Ms"
"""Header of a request-reply call: how long the caller waits, in milliseconds."""
MAX_RESULT_BYTES = 256 * 1024
"""Largest serialised result (``google.protobuf.Struct``) a report may carry."""
MAX_PROGRESS_CHARS = 512
"""Longest progress note."""


def agent_id(name: str, instance_id: str) -> str:
    """``<name>.<instance>``: the instance's key in the agent registry and its reports' id."""
    return f"{name}.{instance_id}"


def work_subject(name: str, instance_id: str) -> str:
    """Where the coordinator publishes the instance's assignments."""
    return f"sutazai.work.{name}.{instance_id}"


def consumer_name(name: str, instance_id: str) -> str:
    """The instance's durable pull consumer on :data:`WORK_STREAM`."""
    return f"agent-{name}-{instance_id}"


def report_subject(name: str, instance_id: str) -> str:
    """Where the instance publishes its task reports."""
    return f"sutazai.reports.agent.{name}.{instance_id}"


def control_subject(name: str, instance_id: str) -> str:
    """Core NATS subject of the commands (``TaskControl``) the coordinator sends the instance."""
    return f"sutazai.control.{name}.{instance_id}"


def heartbeat_subject(name: str, instance_id: str) -> str:
    """The subject a put or delete of the instance's registry key is published to."""
    return f"$KV.{AGENTS_BUCKET}.{agent_id(name, instance_id)}"
