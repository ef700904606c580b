"""Protobuf on both sides of the service: API messages from stored tasks, NATS envelopes.

What goes over NATS (``TaskDispatch``, ``TaskReport``) is built and read here, exactly as the
wire contract in ``nats/README.md`` says: subjects, message ids, fields.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Final

from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2

from sutazai.services.tasks.domain import (
    MAX_RESULT_BYTES,
    QUEUE_SUBJECT,
    TASKS_REPORT_SUBJECT,
    Event,
    TaskState,
    bounded,
    sender_of,
)
from sutazai.services.tasks.records import Message, Report, StoredAttempt, StoredTask
from sutazai.tasks.v1 import dispatch_pb2, task_service_pb2

STATES: Final = {
    TaskState.PENDING: task_service_pb2.TASK_STATE_PENDING,
    TaskState.QUEUED: task_service_pb2.TASK_STATE_QUEUED,
    TaskState.RUNNING: task_service_pb2.TASK_STATE_RUNNING,
    TaskState.SUCCEEDED: task_service_pb2.TASK_STATE_SUCCEEDED,
    TaskState.FAILED: task_service_pb2.TASK_STATE_FAILED,
    TaskState.CANCELLED: task_service_pb2.TASK_STATE_CANCELLED,
}
FROM_WIRE: Final = {wire: state for state, wire in STATES.items()}


def status_bytes(code: int, message: str) -> bytes:
    """A serialised ``google.rpc.Status``."""
    return bytes(status_pb2.Status(code=code, message=bounded(message)).SerializeToString())


def task_message(
    task: StoredTask, attempts: list[StoredAttempt] | None = None
) -> task_service_pb2.Task:
    """The API's view of a stored task (with its attempts, when given)."""
    message = task_service_pb2.Task(
        task_id=str(task.task_id),
        type=task.type,
        priority=task.priority,
        required_capabilities=task.required_capabilities,
        resources=[
            task_service_pb2.ResourceNeed(resource_type=r.resource_type, amount=r.amount)  # type: ignore[arg-type]
            for r in task.resources
        ],
        timeout_seconds=task.timeout_seconds,
        idempotency_key=task.idempotency_key,
        owner_id=task.owner_id,
        state=STATES[task.state],
        waiting_reason=task.waiting_reason,
        attempt=task.attempt,
        max_attempts=task.max_attempts,
        agent_id=task.agent_id,
        progress=task.progress,
        progress_message=task.progress_message,
        dead_lettered=task.dead_lettered,
    )
    message.payload.ParseFromString(task.payload)
    if task.result is not None:
        message.result.ParseFromString(task.result)
    if task.error is not None:
        message.error.ParseFromString(task.error)
    for field, value in (
        ("created_at", task.created_at),
        ("queued_at", task.queued_at),
        ("started_at", task.started_at),
        ("finished_at", task.finished_at),
        ("updated_at", task.updated_at),
    ):
        if value is not None:
            getattr(message, field).FromDatetime(value)
    for attempt in attempts or ():
        entry = message.attempts.add(
            number=attempt.number, agent_id=attempt.agent_id, state=STATES[attempt.state]
        )
        if attempt.started_at is not None:
            entry.started_at.FromDatetime(attempt.started_at)
        if attempt.finished_at is not None:
            entry.finished_at.FromDatetime(attempt.finished_at)
        if attempt.error is not None:
            entry.error.ParseFromString(attempt.error)
    return message


def _msg_id(task: StoredTask) -> str:
    return f"{task.task_id}.{task.attempt}"


def _queue_subject(task: StoredTask) -> str:
    return QUEUE_SUBJECT.format(priority=task.priority)


def _dispatch_body(task: StoredTask) -> bytes:
    dispatch = dispatch_pb2.TaskDispatch(
        task_id=str(task.task_id),
        attempt=task.attempt,
        type=task.type,
        required_capabilities=task.required_capabilities,
        priority=task.priority,
        resources=[
            task_service_pb2.ResourceNeed(resource_type=r.resource_type, amount=r.amount)  # type: ignore[arg-type]
            for r in task.resources
        ],
        timeout_seconds=task.timeout_seconds,
        max_attempts=task.max_attempts,
    )
    dispatch.payload.ParseFromString(task.payload)
    dispatch.created_at.FromDatetime(task.created_at)
    return dispatch.SerializeToString()


DISPATCH: Final = Message(
    kind="dispatch", subject=_queue_subject, msg_id=_msg_id, body=_dispatch_body
)
"""The outbox row that queues a task's current attempt (``Nats-Msg-Id: <task_id>.<attempt>``)."""


def cancel_report(reason: str) -> Message:
    """The outbox row of a ``cancel_requested`` report on ``sutazai.reports.tasks``."""

    def body(task: StoredTask) -> bytes:
        report = dispatch_pb2.TaskReport(
            task_id=str(task.task_id),
            attempt=task.attempt,
            agent_id=task.agent_id,
            cancel_requested=dispatch_pb2.TaskCancelRequested(reason=reason),
        )
        report.sent_at.FromDatetime(datetime.now(UTC))
        return report.SerializeToString()

    return Message(
        kind="report",
        subject=lambda _: TASKS_REPORT_SUBJECT,
        msg_id=lambda task: f"{task.task_id}.{task.attempt}.cancel_requested",
        body=body,
    )


def cancelled_error(reason: str) -> bytes:
    """The error of a cancelled task: CANCELLED with the caller's reason."""
    return status_bytes(code_pb2.CANCELLED, reason or "cancelled by its owner or an operator")


def decode_report(subject: str, data: bytes) -> Report | None:
    """The facts of a ``TaskReport`` published on ``subject``; ``None`` if it is no report."""
    try:
        envelope = dispatch_pb2.TaskReport.FromString(data)
        task_id = uuid.UUID(envelope.task_id) if len(envelope.task_id) == 36 else None
    except (DecodeError, ValueError):
        return None
    if task_id is None:
        return None
    sender, agent = sender_of(subject)
    name = envelope.WhichOneof("event")
    event = Event(name) if name is not None else None
    report = Report(
        task_id=task_id,
        attempt=envelope.attempt,
        sender=sender,
        agent=agent,
        event=event,
        reported_agent=envelope.agent_id,
    )
    if event is Event.WAITING:
        return _with(report, reason=bounded(envelope.waiting.reason))
    if event is Event.PROGRESS:
        fraction = envelope.progress.fraction
        fraction = min(1.0, max(0.0, fraction)) if fraction == fraction else 0.0  # NaN → 0
        return _with(report, fraction=fraction, message=bounded(envelope.progress.message))
    if event is Event.SUCCEEDED:
        result = envelope.succeeded.result.SerializeToString()
        if len(result) > MAX_RESULT_BYTES:
            # Too big to keep: the attempt fails for good rather than store it.
            return _with(
                report,
                event=Event.FAILED,
                retryable=False,
                error=status_bytes(
                    code_pb2.RESOURCE_EXHAUSTED,
                    f"the result is {len(result)} bytes serialised, more than {MAX_RESULT_BYTES}",
                ),
            )
        return _with(report, result=result)
    if event is Event.FAILED:
        return _with(
            report,
            error=_bounded_status(envelope.failed.error),
            retryable=envelope.failed.retryable,
        )
    if event is Event.CANCELLED:
        return _with(report, error=status_bytes(code_pb2.CANCELLED, "stopped by its agent"))
    if event is Event.REQUEUED:
        return _with(
            report,
            next_attempt=envelope.requeued.next_attempt,
            error=_bounded_status(envelope.requeued.error),
        )
    if event is Event.DEAD_LETTERED:
        return _with(
            report,
            error=_bounded_status(envelope.dead_lettered.error),
            dead_letter_sequence=envelope.dead_lettered.stream_sequence,
        )
    return report


def _bounded_status(status: status_pb2.Status) -> bytes:
    """The code and (bounded) message of a reported status; details are not kept."""
    return status_bytes(status.code, status.message)


def _with(report: Report, **changes: object) -> Report:
    return replace(report, **changes)  # type: ignore[arg-type]


def payload_of(struct: struct_pb2.Struct) -> bytes:
    """A payload as stored and dispatched (serialised ``Struct``)."""
    return struct.SerializeToString(deterministic=True)
