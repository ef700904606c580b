"""The JetStream objects of task dispatch, as ``nats/jetstream.toml`` declares them.

Names and subjects are the wire contract of ``nats/README.md`` ("Tasks and agents"); the
helpers below build them, so no module spells a subject by hand. :func:`ensure_jetstream`
creates (or brings back to the declaration) every stream, bucket and agent work consumer; the
supervisor runs it as ``admin`` once NATS is healthy, and tests may run it on their own server.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

import structlog
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from sutazai.runtime.errors import ConfigurationError

log = structlog.get_logger(__name__)

DECLARATIONS_FILE = "jetstream.toml"

TASKS_STREAM = "SUTAZAI_TASKS"
WORK_STREAM = "SUTAZAI_WORK"
REPORTS_STREAM = "SUTAZAI_REPORTS"
DEAD_STREAM = "SUTAZAI_DEAD"
AGENTS_BUCKET = "sutazai_agents"
COORDINATOR_BUCKET = "sutazai_coordinator"

COORDINATOR_REPORTS = "sutazai.reports.coordinator"
TASKS_REPORTS = "sutazai.reports.tasks"
AGENT_REPORTS = "sutazai.reports.agent.>"
DEAD_SUBJECT = "sutazai.dead.tasks"
RESOURCES_ALLOCATE = "sutazai.resources.allocate"
RESOURCES_RELEASE = "sutazai.resources.release"
INFERENCE_GENERATE = "sutazai.inference.generate"
MSG_ID = "Nats-Msg-Id"

PRIORITIES = range(4)
"""0 (low) to 3 (critical)."""

AGENT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}\Z")
"""An agent's name: a NATS principal and one subject token."""
INSTANCE = re.compile(r"[1-9][0-9]{0,3}\Z")
"""An agent instance id: its slot number, ``1`` to ``9999``."""


def queue_subject(priority: int) -> str:
    """Where a dispatch of ``priority`` waits: ``sutazai.tasks.queue.<priority>``."""
    return f"sutazai.tasks.queue.{priority}"


def work_subject(agent_id: str) -> str:
    """Where ``<name>.<instance>``'s assignments go: ``sutazai.work.<name>.<instance>``."""
    return f"sutazai.work.{agent_id}"


def work_consumer(agent_id: str) -> str:
    """The durable consumer of ``<name>.<instance>`` on the work stream."""
    return "agent-" + agent_id.replace(".", "-")


def control_subject(agent_id: str) -> str:
    """Where ``<name>.<instance>`` listens for :class:`TaskControl` commands."""
    return f"sutazai.control.{agent_id}"


def agent_report_subject(agent_id: str) -> str:
    """Where ``<name>.<instance>`` publishes its reports."""
    return f"sutazai.reports.agent.{agent_id}"


def message_id(task_id: str, attempt: int) -> str:
    """The ``Nats-Msg-Id`` of a dispatch or assignment: ``<task_id>.<attempt>``."""
    return f"{task_id}.{attempt}"


def split_agent_id(agent_id: str) -> tuple[str, str] | None:
    """``(name, instance)`` of a well-formed ``<name>.<instance>``, else ``None``."""
    name, dot, instance = agent_id.partition(".")
    if not dot or not AGENT_NAME.match(name) or not INSTANCE.match(instance):
        return None
    return name, instance


def instance_ids(count: int) -> tuple[str, ...]:
    """The instance ids of an agent declared with ``count`` instances: ``1`` .. ``count``."""
    return tuple(str(n) for n in range(1, count + 1))


@dataclass(frozen=True, slots=True)
class StreamDeclaration:
    """One ``[streams.NAME]`` table."""

    name: str
    subjects: tuple[str, ...]
    retention: RetentionPolicy
    duplicate_window: float
    max_msgs: int
    max_msg_bytes: int
    discard: DiscardPolicy
    max_age: float = 0.0
    description: str = ""

    def config(self, replicas: int) -> StreamConfig:
        """The stream's configuration."""
        return StreamConfig(
            name=self.name,
            description=self.description or None,
            subjects=list(self.subjects),
            retention=self.retention,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=self.duplicate_window,
            max_msgs=self.max_msgs,
            max_msg_size=self.max_msg_bytes,
            max_age=self.max_age,
            discard=self.discard,
        )


@dataclass(frozen=True, slots=True)
class BucketDeclaration:
    """One ``[buckets.NAME]`` table."""

    name: str
    history: int
    ttl: float
    limit_marker_ttl: float
    max_value_bytes: int
    description: str = ""

    @property
    def stream(self) -> str:
        """The bucket's stream, ``KV_<name>``."""
        return f"KV_{self.name}"

    def config(self, replicas: int) -> StreamConfig:
        """The bucket's stream configuration (what nats-py 2.16's create_key_value builds)."""
        return StreamConfig(
            name=self.stream,
            description=self.description or None,
            subjects=[f"$KV.{self.name}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_msgs_per_subject=self.history,
            max_msgs=-1,
            max_age=self.ttl,
            max_msg_size=self.max_value_bytes,
            discard=DiscardPolicy.NEW,
            allow_rollup_hdrs=True,
            deny_delete=True,
            allow_direct=True,
            allow_msg_ttl=True,
            # Makes an entry that ages out visible to watchers as a delete.
            subject_delete_marker_ttl=self.limit_marker_ttl or None,
            duplicate_window=min(self.ttl, 120.0) if self.ttl else 120.0,
        )


@dataclass(frozen=True, slots=True)
class AgentConsumers:
    """The ``[agent_consumers]`` table: each declared agent instance's work consumer."""

    stream: str
    ack_wait: float
    max_deliver: int
    max_ack_pending: int

    def config(self, agent_id: str) -> ConsumerConfig:
        """The durable pull consumer of ``<name>.<instance>``."""
        name = work_consumer(agent_id)
        return ConsumerConfig(
            name=name,
            durable_name=name,
            filter_subject=work_subject(agent_id),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
        )


@dataclass(frozen=True, slots=True)
class JetStreamDeclarations:
    """Everything ``nats/jetstream.toml`` declares."""

    streams: tuple[StreamDeclaration, ...]
    buckets: tuple[BucketDeclaration, ...]
    agent_consumers: AgentConsumers

    @classmethod
    def packaged(cls) -> JetStreamDeclarations:
        """The declarations installed with the mesh (``sutazai.nats/jetstream.toml``).

        Raises:
            ConfigurationError: the file is missing or malformed.

        """
        try:
            text = resources.files("sutazai.nats").joinpath(DECLARATIONS_FILE).read_text("utf-8")
            return cls.parse(tomllib.loads(text))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read {DECLARATIONS_FILE}: {exc}") from exc

    @classmethod
    def parse(cls, document: Mapping[str, object]) -> JetStreamDeclarations:
        """Declarations from the parsed TOML document.

        Raises:
            ConfigurationError: a table is missing or a value has the wrong type.

        """
        try:
            streams = tuple(
                _stream(name, table) for name, table in _tables(document, "streams").items()
            )
            buckets = tuple(
                BucketDeclaration(
                    name=name,
                    history=int(_number(table, "history")),
                    ttl=float(_number(table, "ttl_seconds", 0)),
                    limit_marker_ttl=float(_number(table, "limit_marker_ttl_seconds", 0)),
                    max_value_bytes=int(_number(table, "max_value_bytes", -1)),
                    description=str(table.get("description", "")),
                )
                for name, table in _tables(document, "buckets").items()
            )
            consumers = document["agent_consumers"]
            if not isinstance(consumers, dict):
                raise TypeError("[agent_consumers] must be a table")
            agent_consumers = AgentConsumers(
                stream=str(consumers["stream"]),
                ack_wait=float(consumers["ack_wait_seconds"]),
                max_deliver=int(consumers["max_deliver"]),
                max_ack_pending=int(consumers["max_ack_pending"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"{DECLARATIONS_FILE}: {exc!r}") from exc
        return cls(streams, buckets, agent_consumers)

    def stream(self, name: str) -> StreamDeclaration:
        """The declaration of stream ``name``.

        Raises:
            KeyError: not declared.

        """
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError(name)


def _number(table: Mapping[str, object], key: str, default: float | None = None) -> float:
    value = table.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{key} must be a number")
    return value


def _tables(document: Mapping[str, object], key: str) -> dict[str, dict[str, object]]:
    tables = document[key]
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise TypeError(f"[{key}] must hold tables")
    return tables


def _stream(name: str, table: Mapping[str, object]) -> StreamDeclaration:
    subjects = table["subjects"]
    if not isinstance(subjects, list) or not all(isinstance(s, str) for s in subjects):
        raise TypeError(f"streams.{name}.subjects must be a list of strings")
    return StreamDeclaration(
        name=name,
        subjects=tuple(subjects),
        retention=RetentionPolicy(str(table["retention"])),
        duplicate_window=float(_number(table, "duplicate_window_seconds", 120)),
        max_msgs=int(_number(table, "max_msgs", -1)),
        max_msg_bytes=int(_number(table, "max_msg_bytes", -1)),
        discard=DiscardPolicy(str(table.get("discard", "old"))),
        max_age=float(_number(table, "max_age_seconds", 0)),
        description=str(table.get("description", "")),
    )


_TUNABLE = (
    "description",
    "subjects",
    "duplicate_window",
    "max_msgs",
    "max_msg_size",
    "max_age",
    "discard",
    "max_msgs_per_subject",
    "subject_delete_marker_ttl",
)
"""Stream settings brought back to the declaration on every start (retention, storage and the
like cannot change in place)."""


async def ensure_jetstream(
    js: JetStreamContext,
    declarations: JetStreamDeclarations,
    agent_ids: Iterable[str] = (),
    *,
    replicas: int = 1,
) -> None:
    """Create every declared stream, bucket and agent consumer, or update it (idempotent).

    ``agent_ids`` are the declared agent instances (``<name>.<instance>``): each gets its work
    consumer. Needs the ``admin`` principal.

    Raises:
        ConfigurationError: an existing stream's retention differs from the declaration.
        nats.errors.Error: NATS refused or did not answer.

    """
    wanted = [s.config(replicas) for s in declarations.streams]
    wanted += [b.config(replicas) for b in declarations.buckets]
    for stream_config in wanted:
        await _ensure_stream(js, stream_config)
    consumers = declarations.agent_consumers
    for agent_id in agent_ids:
        config = consumers.config(agent_id)
        try:
            info = await js.consumer_info(consumers.stream, work_consumer(agent_id))
        except NotFoundError:
            await js.add_consumer(consumers.stream, config)
            continue
        current = info.config
        if (
            current.filter_subject,
            current.ack_wait,
            current.max_deliver,
            current.max_ack_pending,
        ) != (config.filter_subject, config.ack_wait, config.max_deliver, config.max_ack_pending):
            # CREATE with the same name updates the consumer's mutable settings.
            await js.add_consumer(consumers.stream, config)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    name = config.name or ""
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("jetstream.created", stream=config.name)
        return
    current = info.config
    if current.retention != config.retention:
        raise ConfigurationError(
            f"stream {config.name} has retention {current.retention}, {DECLARATIONS_FILE} "
            f"declares {config.retention}: it cannot change in place (back it up and delete it)"
        )
    changed = [f for f in _TUNABLE if _differs(getattr(current, f), getattr(config, f))]
    if changed:
        for field in changed:
            setattr(current, field, getattr(config, field))
        if config.allow_msg_ttl:
            current.allow_msg_ttl = True
        try:
            await js.update_stream(current)
        except BadRequestError as exc:
            raise ConfigurationError(
                f"stream {config.name} cannot take the declared {', '.join(changed)}: "
                f"{exc.description}"
            ) from exc
        log.info("jetstream.updated", stream=config.name, fields=changed)


def _differs(current: object, wanted: object) -> bool:
    if isinstance(current, list | tuple) and isinstance(wanted, list | tuple):
        return list(current) != list(wanted)
    if wanted is None:
        return False
    if isinstance(current, float | int) and isinstance(wanted, float | int):
        return abs(float(current) - float(wanted)) > 1e-6
    return current != wanted
