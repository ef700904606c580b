"""The task service's rules, without I/O: validation, states, report verdicts, paging, limits.

Everything here is pure. The handlers validate requests with it; the report consumer asks
:func:`judge` what a report may change before the store writes it; listings page with
:class:`Cursor`; watches count their streams with the runtime's ``StreamSlots``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

MAX_TYPE_CHARS: Final = 128
TYPE_PATTERN: Final = re.compile(r"[a-z0-9._-]{1,128}")
"""A task type or capability: 1 to 128 characters of ``[a-z0-9._-]``."""
MAX_CAPABILITIES: Final = 16
MAX_PAYLOAD_BYTES: Final = 64 * 1024
"""A payload, serialised (protobuf), at most this many bytes."""
MAX_RESULT_BYTES: Final = 256 * 1024
"""A result, serialised (protobuf), at most this many bytes."""
DEFAULT_TIMEOUT_SECONDS: Final = 300
MAX_TIMEOUT_SECONDS: Final = 86_400
MAX_ATTEMPTS: Final = 10
MAX_IDEMPOTENCY_KEY_CHARS: Final = 128
MAX_REASON_CHARS: Final = 512
"""A cancellation reason, a waiting reason or a progress note: at most this many characters."""
MAX_AGENT_ID_CHARS: Final = 256
MAX_RESOURCE_AMOUNT: Final = 1_000_000.0
"""A resource amount above this is no real request (cores, GiB, Mbps, devices)."""
DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 100
DEFAULT_SNAPSHOT_SIZE: Final = 50
MAX_SNAPSHOT_SIZE: Final = 200
RESOURCE_TYPES: Final = range(1, 6)
"""``sutazai.resources.v1.ResourceType`` values a task may ask for (CPU to GPU)."""
QUEUE_SUBJECT: Final = "sutazai.tasks.queue.{priority}"
TASKS_REPORT_SUBJECT: Final = "sutazai.reports.tasks"
COORDINATOR_REPORT_SUBJECT: Final = "sutazai.reports.coordinator"
AGENT_REPORT_PREFIX: Final = "sutazai.reports.agent."


class TaskState(StrEnum):
    """Where a task (or an attempt) is; the stored label."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """Whether nothing changes it any more."""
        return self in FINAL_STATES


FINAL_STATES: Final = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})


# Validation -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceNeed:
    """An amount of one resource (``sutazai.resources.v1.ResourceType`` number)."""

    resource_type: int
    amount: float


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """A CreateTask request as plain values (the payload already serialised)."""

    type: str
    payload_bytes: int
    priority: int
    required_capabilities: Sequence[str]
    resources: Sequence[ResourceNeed]
    timeout_seconds: int
    idempotency_key: str
    max_attempts: int


def capability_violation(value: str) -> str | None:
    """Why ``value`` is not a capability name, or ``None``."""
    if not value:
        return "required"
    if len(value) > MAX_TYPE_CHARS or not TYPE_PATTERN.fullmatch(value):
        return f"must be 1 to {MAX_TYPE_CHARS} characters of a-z, 0-9, '.', '_' and '-'"
    return None


def create_violations(request: TaskRequest) -> dict[str, str]:
    """Every rule of ``CreateTaskRequest`` the request breaks, by field path."""
    found: dict[str, str] = {}
    if (problem := capability_violation(request.type)) is not None:
        found["type"] = problem
    if request.payload_bytes > MAX_PAYLOAD_BYTES:
        found["payload"] = (
            f"must be at most {MAX_PAYLOAD_BYTES} bytes serialised (is {request.payload_bytes})"
        )
    if not 0 <= request.priority <= 3:
        found["priority"] = "must be 0 (low) to 3 (critical)"
    if len(request.required_capabilities) > MAX_CAPABILITIES:
        found["required_capabilities"] = f"at most {MAX_CAPABILITIES}"
    else:
        seen: set[str] = set()
        for index, capability in enumerate(request.required_capabilities):
            field = f"required_capabilities[{index}]"
            if (problem := capability_violation(capability)) is not None:
                found[field] = problem
            elif capability in seen:
                found[field] = "repeats an earlier capability"
            seen.add(capability)
    types: set[int] = set()
    if len(request.resources) > len(RESOURCE_TYPES):
        found["resources"] = f"at most one entry per resource type ({len(RESOURCE_TYPES)})"
    else:
        for index, need in enumerate(request.resources):
            field = f"resources[{index}]"
            if need.resource_type not in RESOURCE_TYPES:
                found[f"{field}.resource_type"] = "must be a resource type (CPU to GPU)"
            elif need.resource_type in types:
                found[f"{field}.resource_type"] = "at most one entry per resource type"
            types.add(need.resource_type)
            if not (math.isfinite(need.amount) and 0 < need.amount <= MAX_RESOURCE_AMOUNT):
                found[f"{field}.amount"] = (
                    f"must be more than 0 and at most {MAX_RESOURCE_AMOUNT:g}"
                )
    if request.timeout_seconds > MAX_TIMEOUT_SECONDS:
        found["timeout_seconds"] = f"must be 1 to {MAX_TIMEOUT_SECONDS} (0 for the default)"
    if len(request.idempotency_key) > MAX_IDEMPOTENCY_KEY_CHARS:
        found["idempotency_key"] = f"must be at most {MAX_IDEMPOTENCY_KEY_CHARS} characters"
    if request.max_attempts > MAX_ATTEMPTS:
        found["max_attempts"] = f"must be 1 to {MAX_ATTEMPTS} (0 for the default)"
    return found


def parse_task_id(text: str) -> uuid.UUID:
    """The task id in ``text``, a UUID in its usual 36-character form.

    Raises:
        ValueError: ``text`` is not one; the message is the field violation's description.

    """
    if not text:
        raise ValueError("required")
    if len(text) != 36:
        raise ValueError("must be a task id (a UUID)")
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValueError("must be a task id (a UUID)") from None


def size_of(requested: int, default: int, most: int) -> int:
    """A page or snapshot size: ``default`` for 0.

    Raises:
        ValueError: outside 0..``most``; the message is the field violation's description.

    """
    if requested == 0:
        return default
    if not 1 <= requested <= most:
        raise ValueError(f"must be between 1 and {most} (0 for {default})")
    return requested


def bounded(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` cut to ``limit`` characters (what an agent or the coordinator sent)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Paging -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: the last task's ordering time and id."""

    at: datetime
    task_id: uuid.UUID

    def token(self) -> str:
        """The opaque page token a client sends back."""
        document = json.dumps(
            {"t": self.at.isoformat(), "i": str(self.task_id)}, separators=(",", ":")
        )
        return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """The cursor in a page token.

        Raises:
            ValueError: not a token this service made.

        """
        if len(token) > 200:
            raise ValueError("not a page token of this listing")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            document = json.loads(raw)
            at = datetime.fromisoformat(document["t"])
            task_id = uuid.UUID(document["i"])
        except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise ValueError("not a page token of this listing") from None
        if at.tzinfo is None:
            raise ValueError("not a page token of this listing")
        return cls(at, task_id)


# Reports ----------------------------------------------------------------------------------------


class Sender(enum.Enum):
    """Who published a report, by its subject (NATS lets each principal publish only its own)."""

    AGENT = "agent"
    COORDINATOR = "coordinator"
    TASKS = "tasks"
    UNKNOWN = "unknown"


def sender_of(subject: str) -> tuple[Sender, str]:
    """The sender of a report on ``subject`` and, for an agent, its id (``<name>.<instance>``)."""
    if subject == COORDINATOR_REPORT_SUBJECT:
        return Sender.COORDINATOR, ""
    if subject == TASKS_REPORT_SUBJECT:
        return Sender.TASKS, ""
    if subject.startswith(AGENT_REPORT_PREFIX):
        agent = subject.removeprefix(AGENT_REPORT_PREFIX)
        name, _, instance = agent.partition(".")
        if name and instance and "." not in instance and len(agent) <= MAX_AGENT_ID_CHARS:
            return Sender.AGENT, agent
    return Sender.UNKNOWN, ""


class Event(StrEnum):
    """What a report says (the ``TaskReport.event`` oneof's field names)."""

    STARTED = "started"
    PROGRESS = "progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ASSIGNED = "assigned"
    WAITING = "waiting"
    REQUEUED = "requeued"
    DEAD_LETTERED = "dead_lettered"
    CANCEL_REQUESTED = "cancel_requested"


AGENT_EVENTS: Final = frozenset(
    {Event.STARTED, Event.PROGRESS, Event.SUCCEEDED, Event.FAILED, Event.CANCELLED}
)
COORDINATOR_EVENTS: Final = frozenset(
    {Event.ASSIGNED, Event.WAITING, Event.REQUEUED, Event.DEAD_LETTERED}
)
ENDING_EVENTS: Final = frozenset({Event.SUCCEEDED, Event.FAILED, Event.CANCELLED})


class Verdict(StrEnum):
    """What becomes of a report (also the ``outcome`` label of the report metric)."""

    APPLY = "applied"
    """Change the task (and its attempt)."""
    ATTEMPT_ONLY = "attempt_only"
    """The task is final; record how the named attempt ended, nothing else."""
    LATER = "later"
    """An agent's report before the coordinator's ``assigned`` for the attempt: try again soon."""
    DUPLICATE = "duplicate"
    """Already applied (a redelivery, or a repeat): nothing to change."""
    STALE = "stale"
    """About another attempt than the task's current one."""
    WRONG_AGENT = "wrong_agent"
    """From an agent the attempt was not given to."""
    FINAL = "final"
    """The task already ended; a final state is never overwritten."""
    FOREIGN = "foreign"
    """An event its sender may not send (an agent claiming to be the coordinator, say)."""
    OVERFLOW = "overflow"
    """A report that would wait (``LATER``) while too many of its agent's reports wait already."""
    UNKNOWN_TASK = "unknown_task"
    MALFORMED = "malformed"
    OWN = "own"
    """This service's own report (``cancel_requested``): nothing to apply."""


@dataclass(frozen=True, slots=True)
class AttemptView:
    """What a verdict needs to know of a task and of the attempt a report names."""

    state: TaskState
    attempt: int
    attempt_agent: str
    """The agent the named attempt was given to ('' before ``assigned``, or no such attempt)."""
    attempt_state: TaskState | None
    """The named attempt's state, ``None`` when the task has no such attempt."""


def judge(
    view: AttemptView | None,
    *,
    sender: Sender,
    agent: str,
    event: Event | None,
    attempt: int,
    next_attempt: int = 0,
    reported_agent: str = "",
) -> Verdict:
    """What a report of ``event`` about ``attempt``, from ``sender``, may change.

    ``agent`` is the sender's agent id (from the subject), ``reported_agent`` the report's
    ``agent_id`` (what the coordinator's ``assigned`` gives the attempt to). Applying the same
    report twice changes nothing the second time, so redeliveries are harmless.
    """
    if event is None or attempt < 1:
        return Verdict.MALFORMED
    if event is Event.CANCEL_REQUESTED:
        return Verdict.OWN if sender is Sender.TASKS else Verdict.FOREIGN
    if (event in AGENT_EVENTS) != (sender is Sender.AGENT) or (
        event in COORDINATOR_EVENTS and sender is not Sender.COORDINATOR
    ):
        return Verdict.FOREIGN
    if view is None:
        return Verdict.UNKNOWN_TASK
    if attempt != view.attempt or view.attempt_state is None:
        return Verdict.STALE
    if sender is Sender.AGENT:
        return _judge_agent(view, agent, event)
    return _judge_coordinator(view, event, attempt, next_attempt, reported_agent)


def _judge_agent(view: AttemptView, agent: str, event: Event) -> Verdict:
    if not view.attempt_agent:
        # The coordinator gives the assignment to the agent before its `assigned` report is
        # in the stream, so an agent's first report may overtake it.
        return Verdict.FINAL if view.state.final else Verdict.LATER
    if view.attempt_agent != agent:
        return Verdict.WRONG_AGENT
    attempt_state = view.attempt_state
    if attempt_state is not None and attempt_state.final:
        return Verdict.DUPLICATE
    if view.state.final:
        return Verdict.ATTEMPT_ONLY if event in ENDING_EVENTS else Verdict.FINAL
    if event is Event.STARTED and attempt_state is TaskState.RUNNING:
        return Verdict.DUPLICATE
    return Verdict.APPLY


def _judge_coordinator(
    view: AttemptView, event: Event, attempt: int, next_attempt: int, reported_agent: str
) -> Verdict:
    if view.state.final:
        return Verdict.FINAL
    if event is Event.ASSIGNED:
        if not reported_agent or len(reported_agent) > MAX_AGENT_ID_CHARS:
            return Verdict.MALFORMED
        if view.attempt_state is not TaskState.QUEUED:
            return Verdict.DUPLICATE
        return Verdict.DUPLICATE if view.attempt_agent == reported_agent else Verdict.APPLY
    if event is Event.WAITING:
        if view.state not in (TaskState.PENDING, TaskState.QUEUED):
            return Verdict.DUPLICATE
        return Verdict.APPLY
    if event is Event.REQUEUED and next_attempt != attempt + 1:
        return Verdict.MALFORMED
    return Verdict.APPLY


# Watching ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchFilter:
    """Which tasks a WatchTasks stream follows."""

    owner_id: str | None
    """Only this owner's tasks; ``None`` for everyone's (operators' ``all_users``)."""
    states: frozenset[TaskState]
    """Only these states; empty for all."""
    type: str

    def matches(self, owner_id: str, state: TaskState, task_type: str) -> bool:
        """Whether a task with these properties is one the stream follows."""
        return (
            (self.owner_id is None or owner_id == self.owner_id)
            and (not self.states or state in self.states)
            and (not self.type or task_type == self.type)
        )

    def visible(self, owner_id: str) -> bool:
        """Whether the caller may see a task of ``owner_id`` at all."""
        return self.owner_id is None or owner_id == self.owner_id


def backoff(failures: int, *, first: float = 0.2, most: float = 5.0) -> float:
    """Seconds to wait after ``failures`` consecutive failures (doubling, capped)."""
    return float(min(most, first * 2 ** max(0, failures - 1)))
