"""The task service's records: a task and an attempt as stored, a report's facts, a change.

Plain values shared by the store, the report transitions, the ledger and the API messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sutazai.services.tasks.domain import Event, ResourceNeed, Sender, TaskState


@dataclass(frozen=True, slots=True)
class StoredTask:
    """One task as stored (payload, result and error serialised)."""

    task_id: uuid.UUID
    owner_id: str
    type: str
    payload: bytes
    priority: int
    required_capabilities: tuple[str, ...]
    resources: tuple[ResourceNeed, ...]
    timeout_seconds: int
    idempotency_key: str
    state: TaskState
    waiting_reason: str
    attempt: int
    max_attempts: int
    attempt_allowance: int
    agent_id: str
    progress: float
    progress_message: str
    result: bytes | None
    error: bytes | None
    dead_lettered: bool
    dead_letter_sequence: int | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    version: int


@dataclass(frozen=True, slots=True)
class StoredAttempt:
    """One attempt of a task."""

    number: int
    agent_id: str
    state: TaskState
    started_at: datetime | None
    finished_at: datetime | None
    error: bytes | None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A message to publish (or, ``delete_dead``, a dead letter to delete) for a change."""

    seq: int
    task_id: uuid.UUID
    kind: str
    """``dispatch``, ``report`` or ``delete_dead``."""
    attempt: int
    subject: str
    msg_id: str
    body: bytes
    dead_letter_sequence: int | None


@dataclass(frozen=True, slots=True)
class NewTask:
    """A validated task to create (defaults filled in)."""

    task_id: uuid.UUID
    owner_id: str
    type: str
    payload: bytes
    priority: int
    required_capabilities: tuple[str, ...]
    resources: tuple[ResourceNeed, ...]
    timeout_seconds: int
    idempotency_key: str
    max_attempts: int


@dataclass(frozen=True, slots=True)
class Report:
    """A report's facts, decoded from its envelope and subject."""

    task_id: uuid.UUID
    attempt: int
    sender: Sender
    agent: str
    """The sending agent's id (from the subject), for an agent's report."""
    event: Event | None
    reported_agent: str = ""
    next_attempt: int = 0
    reason: str = ""
    """``waiting``: why the task waits."""
    fraction: float = 0.0
    message: str = ""
    result: bytes | None = None
    error: bytes | None = None
    retryable: bool = False
    dead_letter_sequence: int = 0


@dataclass(frozen=True, slots=True)
class Changed:
    """A task and the outbox rows written with its change."""

    task: StoredTask
    outbox: list[OutboxItem]


Body = Callable[[StoredTask], bytes]
"""Serialises the message announcing a change, from the task as changed."""


@dataclass(frozen=True, slots=True)
class Message:
    """An outbox row to write: where it goes and how to build its body from the task."""

    kind: str
    subject: Callable[[StoredTask], str]
    msg_id: Callable[[StoredTask], str]
    body: Body
