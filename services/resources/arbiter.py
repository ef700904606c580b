"""The one code path of every call, whether it came over gRPC or over NATS.

Checks a request against the proto's rules (INVALID_ARGUMENT naming each field), runs it against
the store, turns a denial into RESOURCE_EXHAUSTED (with ``RetryInfo``, ``ErrorInfo`` and
``QuotaFailure``), counts it, and writes the audit events the guard cannot: pre-emptions (who
lost which lease to whom), policy changes (before and after), and the calls that came over NATS,
which no guard sees.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime

import structlog
from google.protobuf import timestamp_pb2

from sutazai.resources.v1 import resource_service_pb2 as pb
from sutazai.runtime import context as rpc_context
from sutazai.runtime.audit import OK, AuditEvent, AuditLog
from sutazai.runtime.faults import invalid_argument, not_found, resource_exhausted
from sutazai.runtime.settings import ResourcesSettings
from sutazai.services.resources.domain import (
    Lease,
    LeaseRequest,
    Policy,
    ResourceKind,
    available,
    holder_violations,
    parse_uuid,
    policy_violations,
    request_violations,
)
from sutazai.services.resources.host import Usage
from sutazai.services.resources.metrics import ResourceMetrics
from sutazai.services.resources.store import Allocated, LeaseStore

log = structlog.get_logger(__name__)

KINDS: Mapping[pb.ResourceType.ValueType, ResourceKind] = {
    pb.RESOURCE_TYPE_CPU: ResourceKind.CPU,
    pb.RESOURCE_TYPE_MEMORY: ResourceKind.MEMORY,
    pb.RESOURCE_TYPE_DISK: ResourceKind.DISK,
    pb.RESOURCE_TYPE_NETWORK: ResourceKind.NETWORK,
    pb.RESOURCE_TYPE_GPU: ResourceKind.GPU,
}
TYPES: Mapping[ResourceKind, pb.ResourceType.ValueType] = {k: t for t, k in KINDS.items()}
Capacity = Callable[[], Mapping[ResourceKind, float]]
"""The host's capacity per resource (a test injects a fixed one)."""


class Arbiter:
    """Allocations, releases, listings, policies and the host's figures."""

    def __init__(
        self,
        store: LeaseStore,
        capacity: Capacity,
        usage: Callable[[], Usage],
        settings: ResourcesSettings,
        metrics: ResourceMetrics,
        audit: AuditLog | None,
    ) -> None:
        self._store = store
        self._capacity = capacity
        self._usage = usage
        self._settings = settings
        self._metrics = metrics
        self._audit = audit

    async def allocate(self, request: pb.AllocateRequest, *, actor: str) -> pb.AllocateResponse:
        """Grant a lease (pre-empting lower priorities on an exclusive resource).

        Raises:
            RpcStatusError: INVALID_ARGUMENT, or RESOURCE_EXHAUSTED with the reason.

        """
        wanted = _lease_request(request)
        capacity = self._capacity().get(wanted.kind, 0.0)
        started = time.perf_counter()
        outcome = await self._store.allocate(
            wanted, capacity, max_leases=self._settings.max_leases_per_resource
        )
        self._metrics.allocate_seconds.observe(time.perf_counter() - started)
        kind = wanted.kind.value
        if outcome.expired:
            self._metrics.ended.labels(kind, "expired").inc(outcome.expired)
        if not isinstance(outcome, Allocated):
            denial = outcome.denial
            self._metrics.allocations.labels(kind, denial.reason.value.lower()).inc()
            log.info(
                "resources.denied",
                resource=kind,
                holder=wanted.holder,
                amount=wanted.amount,
                reason=denial.reason.value,
            )
            raise resource_exhausted(
                denial.message,
                denial.retry_after_seconds,
                reason=denial.reason.value,
                quota={f"resources/{kind}": denial.message},
            )
        self._metrics.allocations.labels(kind, "granted").inc()
        lease = outcome.lease
        log.info(
            "resources.granted",
            allocation_id=str(lease.allocation_id),
            resource=kind,
            holder=lease.holder,
            amount=lease.amount,
            priority=lease.priority,
        )
        for lost in outcome.preempted:
            self._metrics.preemptions.labels(kind).inc()
            self._metrics.ended.labels(kind, "preempted").inc()
            log.warning(
                "resources.preempted",
                allocation_id=str(lost.allocation_id),
                resource=kind,
                holder=lost.holder,
                priority=lost.priority,
                by_allocation_id=str(lease.allocation_id),
                by_holder=lease.holder,
                by_priority=lease.priority,
            )
            await self._record(
                "resources.preempt",
                actor=actor,
                target=f"{lost.allocation_id} ({lost.holder})",
                detail=(
                    f"{kind} {lost.amount:g} {lost.kind.unit} at priority {lost.priority} "
                    f"pre-empted by {lease.allocation_id} ({lease.holder}) "
                    f"at priority {lease.priority}"
                ),
            )
        return pb.AllocateResponse(
            allocation=allocation_message(lease),
            preempted=[allocation_message(lost) for lost in outcome.preempted],
        )

    async def release(self, request: pb.ReleaseRequest) -> pb.ReleaseResponse:
        """End a live lease.

        Raises:
            RpcStatusError: INVALID_ARGUMENT (a malformed id), NOT_FOUND (no live lease).

        """
        allocation_id = parse_uuid(request.allocation_id)
        if allocation_id is None:
            raise invalid_argument(
                {"allocation_id": "required" if not request.allocation_id else "must be a UUID"}
            )
        lease = await self._store.release(allocation_id)
        if lease is None:
            raise not_found("allocation", request.allocation_id)
        self._metrics.ended.labels(lease.kind.value, "released").inc()
        log.info(
            "resources.released",
            allocation_id=str(lease.allocation_id),
            resource=lease.kind.value,
            holder=lease.holder,
        )
        return pb.ReleaseResponse(allocation=allocation_message(lease))

    async def list_allocations(
        self, request: pb.ListAllocationsRequest
    ) -> pb.ListAllocationsResponse:
        """Live leases, oldest first, filtered.

        Raises:
            RpcStatusError: INVALID_ARGUMENT (an unknown resource type, a malformed holder).

        """
        violations = holder_violations(request.holder, "holder", required=False)
        kind: ResourceKind | None = None
        if request.resource_type != pb.RESOURCE_TYPE_UNSPECIFIED:
            kind = KINDS.get(request.resource_type)
            if kind is None:
                violations["resource_type"] = "unknown resource type"
        if violations:
            raise invalid_argument(violations)
        leases = await self._store.leases(kind, request.holder)
        return pb.ListAllocationsResponse(allocations=[allocation_message(x) for x in leases])

    async def resources(self) -> pb.GetResourcesResponse:
        """Capacity, what leases hold and what is left under each total cap, and measured use."""
        capacity = self._capacity()
        allocated = await self._store.allocated()
        policies = {policy.kind: policy for policy in await self._store.policies()}
        usage = self._usage().percent
        answer = pb.GetResourcesResponse()
        for kind in ResourceKind:
            amount = capacity.get(kind, 0.0)
            self._metrics.capacity.labels(kind.value).set(amount)
            self._metrics.allocated.labels(kind.value).set(allocated.get(kind, 0.0))
            if amount <= 0.0:
                continue  # no such resource on this host (no GPU): no entry
            held = allocated.get(kind, 0.0)
            policy = policies.get(kind)
            answer.resources.append(
                pb.Resource(
                    resource_type=TYPES[kind],
                    unit=kind.unit,
                    capacity=amount,
                    allocated=held,
                    available=available(policy, amount, held) if policy else 0.0,
                    utilization_percent=usage.get(kind, 0.0),
                )
            )
        return answer

    async def policies(self) -> pb.GetPoliciesResponse:
        """Every resource's policy."""
        return pb.GetPoliciesResponse(
            policies=[policy_message(p) for p in await self._store.policies()]
        )

    async def set_policy(self, request: pb.SetPolicyRequest, *, actor: str) -> pb.SetPolicyResponse:
        """Replace one resource's policy; live leases stay.

        Raises:
            RpcStatusError: INVALID_ARGUMENT naming each field out of range.

        """
        if not request.HasField("policy"):
            raise invalid_argument({"policy": "required"})
        message = request.policy
        kind = KINDS.get(message.resource_type)
        policy = Policy(
            kind=kind or ResourceKind.CPU,
            max_total_percent=message.max_total_percent,
            max_per_holder_percent=message.max_per_holder_percent,
            oversubscription_ratio=message.oversubscription_ratio,
            exclusive=message.exclusive,
        )
        violations = policy_violations(policy)
        if kind is None:
            violations = {"policy.resource_type": "required: a known resource type", **violations}
        if violations:
            raise invalid_argument(violations)
        change = await self._store.set_policy(policy, actor)
        log.info("resources.policy_set", resource=kind.value if kind else "", actor=actor)
        await self._record(
            "resources.set_policy",
            actor=actor,
            target=policy.kind.value,
            detail=f"{_describe(change.before)} -> {_describe(change.after)}",
        )
        return pb.SetPolicyResponse(policy=policy_message(change.after))

    async def sweep(self) -> None:
        """Delete expired leases and refresh the allocation gauges."""
        for kind, count in (await self._store.sweep()).items():
            self._metrics.ended.labels(kind.value, "expired").inc(count)
        allocated = await self._store.allocated()
        for kind in ResourceKind:
            self._metrics.allocated.labels(kind.value).set(allocated.get(kind, 0.0))

    def observe(self, usage: Usage) -> None:
        """Export a utilisation sample and the capacity."""
        for kind, percent in usage.percent.items():
            self._metrics.utilization.labels(kind.value).set(percent)
        for kind, amount in self._capacity().items():
            self._metrics.capacity.labels(kind.value).set(amount)

    async def record_call(self, action: str, outcome: str, *, actor: str, target: str) -> None:
        """Audit a call that no guard saw (one that came over NATS)."""
        await self._record(action, outcome, actor=actor, target=target)

    async def _record(
        self, action: str, outcome: str = OK, *, actor: str, target: str = "", detail: str = ""
    ) -> None:
        if self._audit is None:
            return
        event = AuditEvent(
            action=action,
            outcome=outcome,
            actor=actor,
            target=target,
            detail=detail,
            request_id=rpc_context.request_id.get() or "",
        )
        try:
            await self._audit.record(event)
        except Exception:
            # What it describes has happened (a lease is gone); losing its line is logged loudly.
            log.exception("audit.write_failed", action=action, outcome=outcome)


def _lease_request(request: pb.AllocateRequest) -> LeaseRequest:
    violations = request_violations(
        holder=request.holder,
        amount=request.amount,
        priority=request.priority,
        duration_seconds=request.duration_seconds,
        task_id=request.task_id,
    )
    kind = KINDS.get(request.resource_type)
    if kind is None:
        violations = {"resource_type": "required: a known resource type", **violations}
    if violations or kind is None:
        raise invalid_argument(violations)
    return LeaseRequest(
        holder=request.holder,
        kind=kind,
        amount=request.amount,
        priority=request.priority,
        duration_seconds=request.duration_seconds,
        task_id=parse_uuid(request.task_id) if request.task_id else None,
    )


def allocation_message(lease: Lease) -> pb.Allocation:
    """A lease as the proto's ``Allocation``."""
    message = pb.Allocation(
        allocation_id=str(lease.allocation_id),
        holder=lease.holder,
        resource_type=TYPES[lease.kind],
        amount=lease.amount,
        priority=lease.priority,
        task_id=str(lease.task_id) if lease.task_id else "",
    )
    _stamp(message.created_at, lease.created_at)
    _stamp(message.expires_at, lease.expires_at)
    return message


def policy_message(policy: Policy) -> pb.Policy:
    """A policy as the proto's ``Policy``."""
    return pb.Policy(
        resource_type=TYPES[policy.kind],
        max_total_percent=policy.max_total_percent,
        max_per_holder_percent=policy.max_per_holder_percent,
        oversubscription_ratio=policy.oversubscription_ratio,
        exclusive=policy.exclusive,
    )


def _stamp(field: timestamp_pb2.Timestamp, moment: datetime) -> None:
    field.FromDatetime(moment)


def _describe(policy: Policy) -> str:
    return (
        f"total {policy.max_total_percent:g}%, per holder {policy.max_per_holder_percent:g}%, "
        f"oversubscription {policy.oversubscription_ratio:g}x, "
        f"{'exclusive' if policy.exclusive else 'shared'}"
    )
