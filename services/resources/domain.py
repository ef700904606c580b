"""The arbitration rules, pure: policies, their validation, and the decision on one request.

Reproduces the original Resource Arbitration Agent's policy table and algorithm (ORIGINAL_SYSTEM
§3.6) without its lock: :func:`decide` only computes. The store calls it inside one database
transaction that holds the resource's policy row, and carries out what it says (deleting the
pre-empted leases, inserting the new one) in that same transaction, so nothing here ever waits.

How a request is judged (:func:`decide`), against the resource's live leases:

1. The host must have some of the resource (no GPU, no GPU leases).
2. Per holder: what the holder already holds plus the request stays within
   ``max_per_holder_percent`` of capacity.
3. Exclusive resources: a lease holds the resource alone, so every lease of another holder must
   go. They are pre-empted, lowest priority first, only if every one of them has a lower priority
   than the request; one of an equal or higher priority denies the request and nothing is
   pre-empted. (Leases of the same holder are not its rivals; they count against its cap.)
4. Total: what the remaining leases hold plus the request stays within ``max_total_percent`` of
   capacity, or within ``oversubscription_ratio`` x capacity when the policy oversubscribes.
5. The resource holds at most ``max_leases`` live leases.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Final

MAX_HOLDER_CHARS: Final = 128
MIN_DURATION_SECONDS: Final = 1
MAX_DURATION_SECONDS: Final = 86_400
MAX_PRIORITY: Final = 3
MAX_AMOUNT: Final = 1e12
"""No host has this much of anything: a bound that keeps sums finite."""
MAX_OVERSUBSCRIPTION: Final = 4.0
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_RELATIVE_EPSILON: Final = 1e-9
"""Sums of floating-point amounts (0.1 + 0.2) may miss a cap by a rounding error: a request that
meets a cap exactly is granted."""


class ResourceKind(Enum):
    """A kind of capacity; the value is its key in the database."""

    CPU = "cpu"
    MEMORY = "memory"
    DISK = "disk"
    NETWORK = "network"
    GPU = "gpu"

    @property
    def unit(self) -> str:
        """Its unit, as the proto names it."""
        return _UNITS[self]


_UNITS: Final = {
    ResourceKind.CPU: "cores",
    ResourceKind.MEMORY: "GiB",
    ResourceKind.DISK: "GiB",
    ResourceKind.NETWORK: "Mbps",
    ResourceKind.GPU: "devices",
}


@dataclass(frozen=True, slots=True)
class Policy:
    """The limits of one resource's leases."""

    kind: ResourceKind
    max_total_percent: float
    max_per_holder_percent: float
    oversubscription_ratio: float = 1.0
    exclusive: bool = False

    def total_limit(self, capacity: float) -> float:
        """What all leases may hold together: the total cap, or ratio x capacity (oversold)."""
        if self.oversubscription_ratio > 1.0:
            return capacity * self.oversubscription_ratio
        return capacity * self.max_total_percent / 100.0

    def holder_limit(self, capacity: float) -> float:
        """What one holder may hold."""
        return capacity * self.max_per_holder_percent / 100.0


DEFAULT_POLICIES: Final = (
    Policy(ResourceKind.CPU, 80.0, 30.0),
    Policy(ResourceKind.MEMORY, 85.0, 25.0),
    Policy(ResourceKind.GPU, 90.0, 50.0, exclusive=True),
    Policy(ResourceKind.DISK, 90.0, 20.0),
    Policy(ResourceKind.NETWORK, 95.0, 15.0, oversubscription_ratio=1.5),
)
"""The original system's table (ORIGINAL_SYSTEM §3.6); migration 0001 stores the same rows."""


def policy_violations(policy: Policy, prefix: str = "policy.") -> dict[str, str]:
    """Each field of ``policy`` outside the proto's ranges, by field path."""
    violations: dict[str, str] = {}
    for name, value in (
        ("max_total_percent", policy.max_total_percent),
        ("max_per_holder_percent", policy.max_per_holder_percent),
    ):
        if not (math.isfinite(value) and 1.0 <= value <= 100.0):
            violations[prefix + name] = "must be from 1 to 100"
    ratio = policy.oversubscription_ratio
    if not (math.isfinite(ratio) and 1.0 <= ratio <= MAX_OVERSUBSCRIPTION):
        violations[prefix + "oversubscription_ratio"] = (
            f"must be from 1 (no oversubscription) to {MAX_OVERSUBSCRIPTION:g}"
        )
    elif policy.exclusive and ratio != 1.0:
        violations[prefix + "oversubscription_ratio"] = (
            "must be 1: an exclusive resource cannot be oversubscribed"
        )
    return violations


@dataclass(frozen=True, slots=True)
class Lease:
    """One live lease."""

    allocation_id: uuid.UUID
    holder: str
    kind: ResourceKind
    amount: float
    priority: int
    task_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """A validated request for a lease."""

    holder: str
    kind: ResourceKind
    amount: float
    priority: int
    duration_seconds: int
    task_id: uuid.UUID | None = None


def request_violations(
    *, holder: str, amount: float, priority: int, duration_seconds: int, task_id: str
) -> dict[str, str]:
    """Each field of an allocation request outside the proto's rules (the kind is checked apart)."""
    violations = holder_violations(holder, "holder", required=True)
    if not (math.isfinite(amount) and 0.0 < amount <= MAX_AMOUNT):
        violations["amount"] = "must be more than 0 (in the resource's unit)"
    if not 0 <= priority <= MAX_PRIORITY:
        violations["priority"] = f"must be from 0 (low) to {MAX_PRIORITY} (critical)"
    if not MIN_DURATION_SECONDS <= duration_seconds <= MAX_DURATION_SECONDS:
        violations["duration_seconds"] = (
            f"must be from {MIN_DURATION_SECONDS} to {MAX_DURATION_SECONDS:,} seconds"
        )
    if task_id and parse_uuid(task_id) is None:
        violations["task_id"] = "must be a task id (a UUID)"
    return violations


def holder_violations(holder: str, field: str, *, required: bool) -> dict[str, str]:
    """A holder name: 1 to 128 printable characters (or empty, where it is only a filter)."""
    if not holder:
        return {field: "required"} if required else {}
    if len(holder) > MAX_HOLDER_CHARS:
        return {field: f"must be at most {MAX_HOLDER_CHARS} characters"}
    if not holder.isprintable():
        return {field: "must be printable characters"}
    return {}


def parse_uuid(text: str) -> uuid.UUID | None:
    """The UUID in ``text`` written in its usual 36-character form, else ``None``."""
    return uuid.UUID(text) if _UUID.match(text) else None


class DenialReason(Enum):
    """Why a request was refused; the value is the ``google.rpc.ErrorInfo`` reason."""

    NO_CAPACITY = "NO_CAPACITY"
    HOLDER_CAP = "HOLDER_CAP_EXCEEDED"
    EXCLUSIVE_HELD = "EXCLUSIVE_HELD"
    TOTAL_CAP = "TOTAL_CAP_EXCEEDED"
    LEASE_LIMIT = "LEASE_LIMIT_REACHED"


@dataclass(frozen=True, slots=True)
class Denial:
    """The request cannot be granted now."""

    reason: DenialReason
    message: str
    retry_after_seconds: float
    """When a lease in the way ends (a hint; a release may come sooner)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """The request is granted, after ending ``preempt`` (lowest priority, then oldest, first)."""

    preempt: tuple[Lease, ...] = ()


NO_EXPIRY_HINT_SECONDS: Final = 60.0
"""Retry hint when nothing in the way will expire (no such resource on the host)."""


def decide(
    policy: Policy,
    capacity: float,
    leases: Sequence[Lease],
    request: LeaseRequest,
    *,
    now: datetime,
    max_leases: int,
) -> Grant | Denial:
    """Judge ``request`` against ``policy`` and the resource's live ``leases`` (module docstring).

    ``capacity`` is the host's, in the resource's unit; ``now`` only computes retry hints.
    """
    kind, unit = request.kind, request.kind.unit
    if capacity <= 0.0:
        return Denial(
            DenialReason.NO_CAPACITY,
            f"this host has no {kind.value} to lease",
            NO_EXPIRY_HINT_SECONDS,
        )
    epsilon = _RELATIVE_EPSILON * max(1.0, capacity)
    own = [lease for lease in leases if lease.holder == request.holder]
    held = sum(lease.amount for lease in own)
    holder_limit = policy.holder_limit(capacity)
    if held + request.amount > holder_limit + epsilon:
        return Denial(
            DenialReason.HOLDER_CAP,
            f"{kind.value}: holder {request.holder!r} would hold {held + request.amount:g} {unit}, "
            f"more than the per-holder cap of {holder_limit:g} {unit} "
            f"({policy.max_per_holder_percent:g}% of {capacity:g})",
            _retry_after(own, now),
        )
    remaining: Sequence[Lease] = leases
    preempt: tuple[Lease, ...] = ()
    if policy.exclusive:
        rivals = [lease for lease in leases if lease.holder != request.holder]
        blocking = [lease for lease in rivals if lease.priority >= request.priority]
        if blocking:
            top = max(lease.priority for lease in blocking)
            return Denial(
                DenialReason.EXCLUSIVE_HELD,
                f"{kind.value} is exclusive and held by {len(blocking)} lease(s) of priority "
                f"{top} or more (this request has priority {request.priority}; only a higher "
                "priority pre-empts)",
                _retry_after(blocking, now),
            )
        preempt = tuple(sorted(rivals, key=lambda lease: (lease.priority, lease.created_at)))
        remaining = own
    allocated = sum(lease.amount for lease in remaining)
    total_limit = policy.total_limit(capacity)
    if allocated + request.amount > total_limit + epsilon:
        cap = (
            f"{policy.oversubscription_ratio:g}x capacity"
            if policy.oversubscription_ratio > 1.0
            else f"{policy.max_total_percent:g}% of {capacity:g}"
        )
        return Denial(
            DenialReason.TOTAL_CAP,
            f"{kind.value}: {allocated:g} of {total_limit:g} {unit} leased ({cap}); "
            f"{request.amount:g} more would exceed the total cap",
            _retry_after(remaining, now),
        )
    if len(remaining) >= max_leases:
        return Denial(
            DenialReason.LEASE_LIMIT,
            f"{kind.value} already has {len(remaining)} live leases, the most allowed",
            _retry_after(remaining, now),
        )
    return Grant(preempt)


def _retry_after(leases: Sequence[Lease], now: datetime) -> float:
    if not leases:
        return NO_EXPIRY_HINT_SECONDS
    soonest = min(lease.expires_at for lease in leases)
    return max(1.0, math.ceil((soonest - now).total_seconds()))


def available(policy: Policy, capacity: float, allocated: float) -> float:
    """What a new lease could still get under the total cap (never negative)."""
    return max(0.0, policy.total_limit(capacity) - allocated) if capacity > 0.0 else 0.0
