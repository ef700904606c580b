"""The task system's streams and agent bucket, created as ``admin`` for tests.

Stand-in until the supervisor creates them from ``nats/jetstream.toml``: the exact names and
settings of nats/README.md ("Tasks and agents"), created only when missing. Delete this module
(and its callers' fixture) once the supervisor does it.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, NotFoundError

DEDUPE_SECONDS = 120.0
DAY = 24 * 3600.0


async def ensure_task_streams(js: JetStreamContext) -> None:
    """``SUTAZAI_WORK``, ``SUTAZAI_REPORTS`` and the ``sutazai_agents`` bucket, if missing."""
    streams = [
        StreamConfig(
            name="SUTAZAI_WORK",
            subjects=["sutazai.work.*.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DEDUPE_SECONDS,
        ),
        StreamConfig(
            name="SUTAZAI_REPORTS",
            subjects=[
                "sutazai.reports.agent.*.*",
                "sutazai.reports.coordinator",
                "sutazai.reports.tasks",
            ],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * DAY,
            duplicate_window=DEDUPE_SECONDS,
        ),
    ]
    for config in streams:
        try:
            await js.stream_info(str(config.name))
        except NotFoundError:
            await js.add_stream(config)
    try:
        await js.key_value("sutazai_agents")
    except BucketNotFoundError:
        await js.create_key_value(
            KeyValueConfig(
                bucket="sutazai_agents",
                history=1,
                ttl=10.0,
                limit_marker_ttl=3.0,
                storage=StorageType.FILE,
            )
        )
