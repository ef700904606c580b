"""gRPC handlers of ``sutazai.tasks.v1.TaskService``: validation, the caller, translation.

Every request is checked against the proto's rules first (each violation named by its field,
nothing stored on a refusal). Users act on their own tasks only: another user's task is
NOT_FOUND, exactly like one that never existed. Operators (and admins) may read and cancel
every task, list with ``all_users`` and handle dead letters (the guard checks the role the
proto declares for those, and audits re-queues).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping

import asyncpg
import grpc
import structlog

from sutazai.runtime import context as rpc_context
from sutazai.runtime.audit import OK as AUDIT_OK
from sutazai.runtime.audit import AuditEvent, AuditLog
from sutazai.runtime.auth import caller_key, require_identity
from sutazai.runtime.faults import (
    failed_precondition,
    invalid_argument,
    not_found,
    permission_denied,
    resource_exhausted,
    unavailable,
)
from sutazai.runtime.roles import Role
from sutazai.runtime.settings import TaskSettings
from sutazai.runtime.tokens import Identity
from sutazai.services.tasks.domain import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_SNAPSHOT_SIZE,
    DEFAULT_TIMEOUT_SECONDS,
    MAX_AGENT_ID_CHARS,
    MAX_PAGE_SIZE,
    MAX_REASON_CHARS,
    MAX_SNAPSHOT_SIZE,
    Cursor,
    ResourceNeed,
    TaskRequest,
    TaskState,
    WatchFilter,
    capability_violation,
    create_violations,
    parse_task_id,
    size_of,
)
from sutazai.services.tasks.errors import NotDeadLetteredError, QueueFullError, TaskFinishedError
from sutazai.services.tasks.ledger import TaskLedger
from sutazai.services.tasks.messages import FROM_WIRE, payload_of, task_message
from sutazai.services.tasks.records import NewTask
from sutazai.services.tasks.watch import Watches
from sutazai.tasks.v1 import task_service_pb2 as pb
from sutazai.tasks.v1 import task_service_pb2_grpc as pb_grpc

log = structlog.get_logger(__name__)

PRIVILEGED_TASK_ACTION = "tasks.create_privileged"
"""Audit action of an accepted task whose type needs more than the user role."""
QUEUE_RETRY_SECONDS = 5.0
DATABASE_RETRY_SECONDS = 1.0
DOMAIN = "tasks.sutazai"


class TaskHandlers(pb_grpc.TaskServiceServicer):
    """Validates requests, acts for the caller, renders tasks."""

    def __init__(
        self,
        ledger: TaskLedger,
        watches: Watches,
        settings: TaskSettings,
        *,
        task_roles: Mapping[str, Role] | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._ledger = ledger
        self._watches = watches
        self._settings = settings
        self._task_roles = dict(task_roles or {})
        """Task types that need more than a user to create (``[agents.*] task_roles``)."""
        self._audit = audit

    async def CreateTask(  # noqa: N802 - generated servicer method name
        self, request: pb.CreateTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTaskResponse:
        """Store and queue a task (or return the one of a repeated idempotency key)."""
        payload = payload_of(request.payload)
        violations = create_violations(
            TaskRequest(
                type=request.type,
                payload_bytes=len(payload),
                priority=request.priority,
                required_capabilities=list(request.required_capabilities),
                resources=[ResourceNeed(r.resource_type, r.amount) for r in request.resources],
                timeout_seconds=request.timeout_seconds,
                idempotency_key=request.idempotency_key,
                max_attempts=request.max_attempts,
            )
        )
        if violations:
            raise invalid_argument(violations)
        identity = require_identity()
        needed = self._task_roles.get(request.type)
        if needed is not None and identity.role < needed:
            # Refused before anything is stored; the guard audits the denial.
            raise permission_denied(
                f"creating a {request.type!r} task needs the {needed.label} role",
                reason="TASK_ROLE_REQUIRED",
                domain=DOMAIN,
                metadata={"type": request.type, "role": needed.label},
            )
        new = NewTask(
            task_id=uuid.uuid4(),
            owner_id=identity.user_id,
            type=request.type,
            payload=payload,
            priority=request.priority,
            required_capabilities=tuple(request.required_capabilities),
            resources=tuple(ResourceNeed(r.resource_type, r.amount) for r in request.resources),
            timeout_seconds=request.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
            idempotency_key=request.idempotency_key,
            max_attempts=request.max_attempts or self._settings.default_max_attempts,
        )
        try:
            with _writable():
                task, created = await self._ledger.create(new)
        except QueueFullError as exc:
            raise resource_exhausted(str(exc), QUEUE_RETRY_SECONDS) from exc
        if needed is not None and created:
            await self._audit_privileged(identity, request.type, needed, str(task.task_id))
        return pb.CreateTaskResponse(task=task_message(task), created=created)

    async def _audit_privileged(
        self, identity: Identity, task_type: str, needed: Role, task_id: str
    ) -> None:
        """Record an accepted task of a privileged type (what it will change is its payload)."""
        if self._audit is None:
            return
        event = AuditEvent(
            action=PRIVILEGED_TASK_ACTION,
            outcome=AUDIT_OK,
            actor=identity.username,
            target=task_id,
            detail=f"type={task_type} role={needed.label}",
            request_id=rpc_context.request_id.get() or "",
        )
        try:
            await self._audit.record(event)
        except Exception:
            # The task exists already; losing its audit line is logged loudly, not hidden.
            log.exception("audit.write_failed", action=event.action, target=task_id)

    async def GetTask(  # noqa: N802 - generated servicer method name
        self, request: pb.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTaskResponse:
        """One task with its attempts (another user's is NOT_FOUND)."""
        task_id = _task_id(request.task_id)
        identity = require_identity()
        with _writable():
            found = await self._ledger.get(task_id, owner_id=_owner(identity))
        if found is None:
            raise not_found("task", request.task_id)
        return pb.GetTaskResponse(task=task_message(*found))

    async def ListTasks(  # noqa: N802 - generated servicer method name
        self, request: pb.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTasksResponse:
        """A page of the caller's tasks (every user's with ``all_users``), newest first."""
        violations: dict[str, str] = {}
        size = _size(violations, "page_size", request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        cursor = _cursor(violations, request.page_token)
        states = _states(violations, "states", request.states)
        if request.type and (problem := capability_violation(request.type)) is not None:
            violations["type"] = problem
        if len(request.agent_id) > MAX_AGENT_ID_CHARS:
            violations["agent_id"] = f"must be at most {MAX_AGENT_ID_CHARS} characters"
        if violations:
            raise invalid_argument(violations)
        identity = require_identity()
        owner_id = _scope(identity, all_users=request.all_users)
        with _writable():
            found = await self._ledger.store.page(
                owner_id=owner_id,
                states=states,
                task_type=request.type,
                agent_id=request.agent_id,
                after=cursor,
                limit=size + 1,
            )
        page = found[:size]
        token = Cursor(page[-1].created_at, page[-1].task_id).token() if len(found) > size else ""
        return pb.ListTasksResponse(tasks=[task_message(t) for t in page], next_page_token=token)

    async def CancelTask(  # noqa: N802 - generated servicer method name
        self, request: pb.CancelTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelTaskResponse:
        """Cancel an unfinished task: CANCELLED at once, its agent stopped by the coordinator."""
        violations: dict[str, str] = {}
        try:
            task_id = parse_task_id(request.task_id)
        except ValueError as exc:
            violations["task_id"] = str(exc)
        if len(request.reason) > MAX_REASON_CHARS:
            violations["reason"] = f"must be at most {MAX_REASON_CHARS} characters"
        if violations:
            raise invalid_argument(violations)
        identity = require_identity()
        try:
            with _writable():
                task = await self._ledger.cancel(
                    task_id, owner_id=_owner(identity), reason=request.reason
                )
        except TaskFinishedError as exc:
            raise failed_precondition(str(exc)) from exc
        if task is None:
            raise not_found("task", request.task_id)
        return pb.CancelTaskResponse(task=task_message(task))

    async def WatchTask(  # noqa: N802 - generated servicer method name
        self, request: pb.WatchTaskRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchTaskResponse]:
        """The task now, then each change, until a final state."""
        task_id = _task_id(request.task_id)
        identity = require_identity()
        with self._watches.slot(_caller(identity, context)):
            async for task, attempts in self._watches.task(task_id, owner_id=_owner(identity)):
                yield pb.WatchTaskResponse(task=task_message(task, attempts))

    async def WatchTasks(  # noqa: N802 - generated servicer method name
        self, request: pb.WatchTasksRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchTasksResponse]:
        """The newest matching tasks (``snapshot``), then every change of a matching task."""
        violations: dict[str, str] = {}
        size = _size(
            violations,
            "snapshot_size",
            request.snapshot_size,
            DEFAULT_SNAPSHOT_SIZE,
            MAX_SNAPSHOT_SIZE,
        )
        states = _states(violations, "states", request.states)
        if request.type and (problem := capability_violation(request.type)) is not None:
            violations["type"] = problem
        if violations:
            raise invalid_argument(violations)
        identity = require_identity()
        where = WatchFilter(
            owner_id=_scope(identity, all_users=request.all_users),
            states=frozenset(states),
            type=request.type,
        )
        with self._watches.slot(_caller(identity, context)):
            async for item in self._watches.tasks(where, snapshot_size=size):
                if item is None:
                    yield pb.WatchTasksResponse()  # keep-alive: no task
                else:
                    yield pb.WatchTasksResponse(task=task_message(item[0]), snapshot=item[1])

    async def ListDeadLetters(  # noqa: N802 - generated servicer method name
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        """A page of dead-lettered tasks, newest first (operators; the guard checks)."""
        violations: dict[str, str] = {}
        size = _size(violations, "page_size", request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        cursor = _cursor(violations, request.page_token)
        if violations:
            raise invalid_argument(violations)
        with _writable():
            found = await self._ledger.store.dead_letters(after=cursor, limit=size + 1)
        page = found[:size]
        token = ""
        if len(found) > size and page[-1].finished_at is not None:
            token = Cursor(page[-1].finished_at, page[-1].task_id).token()
        return pb.ListDeadLettersResponse(
            tasks=[task_message(t) for t in page], next_page_token=token
        )

    async def RequeueDeadLetter(  # noqa: N802 - generated servicer method name
        self, request: pb.RequeueDeadLetterRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequeueDeadLetterResponse:
        """Queue a dead letter again with a fresh allowance of attempts (operators, audited)."""
        task_id = _task_id(request.task_id)
        try:
            with _writable():
                task = await self._ledger.requeue(task_id)
        except NotDeadLetteredError as exc:
            raise failed_precondition(str(exc)) from exc
        if task is None:
            raise not_found("task", request.task_id)
        return pb.RequeueDeadLetterResponse(task=task_message(task))


def _task_id(text: str) -> uuid.UUID:
    try:
        return parse_task_id(text)
    except ValueError as exc:
        raise invalid_argument({"task_id": str(exc)}) from None


def _is_operator(identity: Identity) -> bool:
    return identity.role >= Role.OPERATOR


def _owner(identity: Identity) -> str | None:
    """Whose tasks the caller may read and cancel: their own, or (operators) everyone's."""
    return None if _is_operator(identity) else identity.user_id


def _scope(identity: Identity, *, all_users: bool) -> str | None:
    """Whose tasks a listing shows: the caller's, or everyone's (``all_users``, operators)."""
    if not all_users:
        return identity.user_id
    if not _is_operator(identity):
        raise permission_denied(
            "all_users is for operators",
            reason="ROLE_REQUIRED",
            domain=DOMAIN,
            metadata={"role": Role.OPERATOR.label},
        )
    return None


def _caller(identity: Identity, context: grpc.aio.ServicerContext) -> str:
    metadata: Mapping[str, str] = {
        k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)
    }
    return caller_key(identity, metadata, context.peer())


def _size(violations: dict[str, str], field: str, requested: int, default: int, most: int) -> int:
    try:
        return size_of(requested, default, most)
    except ValueError as exc:
        violations[field] = str(exc)
        return default


def _cursor(violations: dict[str, str], token: str) -> Cursor | None:
    if not token:
        return None
    try:
        return Cursor.parse(token)
    except ValueError as exc:
        violations["page_token"] = str(exc)
        return None


def _states(violations: dict[str, str], field: str, values: Iterable[int]) -> list[TaskState]:
    states: list[TaskState] = []
    for index, value in enumerate(values):
        state = FROM_WIRE.get(value)  # type: ignore[call-overload]
        if state is None:
            violations[f"{field}[{index}]"] = "must be a task state (PENDING to CANCELLED)"
        elif state not in states:
            states.append(state)
    return states


@contextlib.contextmanager
def _writable() -> Iterator[None]:
    """Turn a database failure into UNAVAILABLE (the caller may retry), not INTERNAL."""
    try:
        yield
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise unavailable("the task record cannot be reached now", DATABASE_RETRY_SECONDS) from exc
