"""Stand-ins for what the supervisor will provide: the task streams and an agent principal.

Until the supervisor creates the streams and buckets of ``nats/jetstream.toml`` and renders
agent principals from ``permissions.toml``, the TypeScript agent's test runs a NATS server of
its own with an ``admin`` and one agent user, and creates what the agent touches as ``admin``,
with the exact names and settings of nats/README.md ("Tasks and agents (the wire contract)").
Delete this module, and use the session mesh, once the supervisor does both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from nats.js.api import (
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError

WORK_STREAM = "SUTAZAI_WORK"
REPORTS_STREAM = "SUTAZAI_REPORTS"
AGENTS_BUCKET = "sutazai_agents"
DEDUPE_WINDOW_SECONDS = 120.0
REPORTS_MAX_AGE_SECONDS = 7 * 24 * 3600.0
AGENTS_TTL_SECONDS = 10.0
AGENTS_LIMIT_MARKER_SECONDS = 3.0


async def ensure_task_streams(js: JetStreamContext) -> None:
    """Create (as ``admin``) the work and report streams and the agent bucket if missing."""
    await js.add_stream(
        StreamConfig(
            name=WORK_STREAM,
            subjects=["sutazai.work.*.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DEDUPE_WINDOW_SECONDS,
        )
    )
    await js.add_stream(
        StreamConfig(
            name=REPORTS_STREAM,
            subjects=[
                "sutazai.reports.agent.*.*",
                "sutazai.reports.coordinator",
                "sutazai.reports.tasks",
            ],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=REPORTS_MAX_AGE_SECONDS,
            duplicate_window=DEDUPE_WINDOW_SECONDS,
        )
    )
    try:
        await js.key_value(AGENTS_BUCKET)
    except BucketNotFoundError:
        await js.create_key_value(
            KeyValueConfig(
                bucket=AGENTS_BUCKET,
                history=1,
                ttl=AGENTS_TTL_SECONDS,
                storage=StorageType.FILE,
                limit_marker_ttl=AGENTS_LIMIT_MARKER_SECONDS,
            )
        )


def agent_permissions(name: str, instances: Iterable[str]) -> dict[str, dict[str, list[str]]]:
    """The ``agent`` role of nats/README.md ("Agent principals") as nats-server permissions.

    The grants name each instance's consumer: NATS wildcards match whole subject tokens only.
    """
    consumers = [f"agent-{name}-{instance}" for instance in instances]
    publish = [
        f"$JS.API.STREAM.INFO.KV_{AGENTS_BUCKET}",
        f"$KV.{AGENTS_BUCKET}.{name}.>",
        f"sutazai.reports.agent.{name}.>",
    ]
    for consumer in consumers:
        instance = consumer.removeprefix(f"agent-{name}-")
        publish += [
            f"$JS.API.CONSUMER.CREATE.{WORK_STREAM}.{consumer}.sutazai.work.{name}.{instance}",
            f"$JS.API.CONSUMER.MSG.NEXT.{WORK_STREAM}.{consumer}",
            f"$JS.API.CONSUMER.INFO.{WORK_STREAM}.{consumer}",
            f"$JS.ACK.{WORK_STREAM}.{consumer}.>",
        ]
    subscribe = [f"sutazai.control.{name}.>", f"_INBOX.{name}.>"]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}


def server_config(
    *,
    port: int,
    store_dir: str,
    admin_password: str,
    agent: str,
    agent_password: str,
    instances: Iterable[str],
) -> str:
    """A nats-server configuration: JetStream, ``admin`` (everything) and the agent user."""
    users = [
        {
            "user": "admin",
            "password": admin_password,
            "permissions": {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}},
        },
        {
            "user": agent,
            "password": agent_password,
            "permissions": agent_permissions(agent, instances),
        },
    ]
    # nats-server's configuration format accepts JSON values.
    return (
        f"listen: {json.dumps(f'127.0.0.1:{port}')}\n"
        f"jetstream {{ store_dir: {json.dumps(store_dir)}, sync_interval: always }}\n"
        f"authorization {{ users: {json.dumps(users)} }}\n"
    )
