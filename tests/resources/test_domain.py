"""The arbitration rules with fixed inputs: caps, oversubscription, exclusive pre-emption."""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from importlib.resources import files

import pytest

from sutazai.services.resources.domain import (
    DEFAULT_POLICIES,
    Denial,
    DenialReason,
    Grant,
    Lease,
    LeaseRequest,
    Policy,
    ResourceKind,
    available,
    decide,
    holder_violations,
    parse_uuid,
    policy_violations,
    request_violations,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICIES = {policy.kind: policy for policy in DEFAULT_POLICIES}
CPU = POLICIES[ResourceKind.CPU]
GPU = POLICIES[ResourceKind.GPU]
NETWORK = POLICIES[ResourceKind.NETWORK]


def lease(
    holder: str,
    amount: float,
    *,
    kind: ResourceKind = ResourceKind.CPU,
    priority: int = 1,
    age: float = 0.0,
    ttl: float = 60.0,
) -> Lease:
    created = NOW - timedelta(seconds=age)
    return Lease(
        allocation_id=uuid.uuid4(),
        holder=holder,
        kind=kind,
        amount=amount,
        priority=priority,
        task_id=None,
        created_at=created,
        expires_at=NOW + timedelta(seconds=ttl),
    )


def ask(
    holder: str, amount: float, *, kind: ResourceKind = ResourceKind.CPU, priority: int = 1
) -> LeaseRequest:
    return LeaseRequest(
        holder=holder, kind=kind, amount=amount, priority=priority, duration_seconds=60
    )


def judge(
    policy: Policy,
    capacity: float,
    leases: list[Lease],
    request: LeaseRequest,
    max_leases: int = 1000,
) -> Grant | Denial:
    return decide(policy, capacity, leases, request, now=NOW, max_leases=max_leases)


def denied(decision: Grant | Denial, reason: DenialReason) -> Denial:
    assert isinstance(decision, Denial), decision
    assert decision.reason is reason, decision
    return decision


# The original table --------------------------------------------------------------------------


def test_the_defaults_are_the_original_table() -> None:
    table = {
        p.kind: (
            p.max_total_percent,
            p.max_per_holder_percent,
            p.oversubscription_ratio,
            p.exclusive,
        )
        for p in DEFAULT_POLICIES
    }
    assert table == {
        ResourceKind.CPU: (80, 30, 1, False),
        ResourceKind.MEMORY: (85, 25, 1, False),
        ResourceKind.GPU: (90, 50, 1, True),
        ResourceKind.DISK: (90, 20, 1, False),
        ResourceKind.NETWORK: (95, 15, 1.5, False),
    }


def test_the_migration_stores_the_same_table() -> None:
    sql = (
        files("sutazai.services.resources.migrations")
        .joinpath("0001_policies_and_leases.sql")
        .read_text()
    )
    rows = re.findall(r"\('(\w+)', ([\d.]+), ([\d.]+), ([\d.]+), (true|false)\)", sql)
    stored = {
        ResourceKind(kind): (float(total), float(holder), float(ratio), flag == "true")
        for kind, total, holder, ratio, flag in rows
    }
    assert stored == {
        p.kind: (
            p.max_total_percent,
            p.max_per_holder_percent,
            p.oversubscription_ratio,
            p.exclusive,
        )
        for p in DEFAULT_POLICIES
    }


# Caps -------------------------------------------------------------------------------------------


def test_total_cap_is_a_share_of_capacity_and_meeting_it_exactly_is_granted() -> None:
    # 10 cores: 80 % total = 8 cores, 30 % per holder = 3 cores.
    held = [lease("a", 3.0), lease("b", 3.0), lease("c", 1.5)]

    assert judge(CPU, 10, held, ask("d", 0.5)) == Grant()
    refusal = denied(judge(CPU, 10, held, ask("d", 0.6)), DenialReason.TOTAL_CAP)
    assert "7.5 of 8 cores" in refusal.message


def test_floating_point_sums_meeting_a_cap_are_granted() -> None:
    held = [lease(f"h{i}", 0.1) for i in range(79)]  # 7.9 cores, summed with rounding errors

    assert judge(CPU, 10, held, ask("last", 0.1)) == Grant()


def test_per_holder_cap_counts_what_the_holder_already_holds() -> None:
    held = [lease("a", 2.0), lease("b", 1.0)]

    assert judge(CPU, 10, held, ask("a", 1.0)) == Grant()
    refusal = denied(judge(CPU, 10, held, ask("a", 1.5)), DenialReason.HOLDER_CAP)
    assert "'a' would hold 3.5 cores" in refusal.message
    assert "per-holder cap of 3 cores (30% of 10)" in refusal.message
    # Another holder is not affected by a's leases.
    assert judge(CPU, 10, held, ask("c", 3.0)) == Grant()


def test_a_request_above_the_per_holder_cap_is_denied_on_an_empty_resource() -> None:
    denied(judge(CPU, 10, [], ask("a", 3.01)), DenialReason.HOLDER_CAP)


def test_oversubscription_replaces_the_total_cap_with_ratio_times_capacity() -> None:
    # 1000 Mbps: 15 % per holder = 150, 1.5x = 1500 in all (beyond the 95 % = 950 total cap).
    held = [lease(f"h{i}", 150.0, kind=ResourceKind.NETWORK) for i in range(9)]  # 1350

    assert judge(NETWORK, 1000, held, ask("h9", 150.0, kind=ResourceKind.NETWORK)) == Grant()
    held.append(lease("h9", 150.0, kind=ResourceKind.NETWORK))
    refusal = denied(
        judge(NETWORK, 1000, held, ask("h10", 1.0, kind=ResourceKind.NETWORK)),
        DenialReason.TOTAL_CAP,
    )
    assert "1.5x capacity" in refusal.message


def test_without_oversubscription_the_same_load_stops_at_the_total_cap() -> None:
    shared = Policy(ResourceKind.NETWORK, 95.0, 15.0, oversubscription_ratio=1.0)
    held = [lease(f"h{i}", 150.0, kind=ResourceKind.NETWORK) for i in range(6)]  # 900

    denied(
        judge(shared, 1000, held, ask("h6", 100.0, kind=ResourceKind.NETWORK)),
        DenialReason.TOTAL_CAP,
    )
    assert judge(shared, 1000, held, ask("h6", 50.0, kind=ResourceKind.NETWORK)) == Grant()


def test_no_capacity_means_no_lease() -> None:
    denied(judge(GPU, 0, [], ask("a", 1, kind=ResourceKind.GPU)), DenialReason.NO_CAPACITY)


def test_the_number_of_live_leases_is_bounded() -> None:
    held = [lease(f"h{i}", 0.01) for i in range(3)]

    denied(judge(CPU, 10, held, ask("x", 0.01), max_leases=3), DenialReason.LEASE_LIMIT)
    assert judge(CPU, 10, held, ask("x", 0.01), max_leases=4) == Grant()


def test_the_retry_hint_is_when_the_first_lease_in_the_way_ends() -> None:
    held = [lease("a", 3.0, ttl=40), lease("b", 3.0, ttl=12.2), lease("c", 2.0, ttl=90)]

    refusal = denied(judge(CPU, 10, held, ask("d", 1.0)), DenialReason.TOTAL_CAP)
    assert refusal.retry_after_seconds == 13
    own = denied(judge(CPU, 10, held, ask("a", 1.0)), DenialReason.HOLDER_CAP)
    assert own.retry_after_seconds == 40


# Exclusive resources ------------------------------------------------------------------------------


def gpu(holder: str, amount: float = 1.0, *, priority: int, age: float = 0.0) -> Lease:
    return lease(holder, amount, kind=ResourceKind.GPU, priority=priority, age=age)


def gpu_ask(holder: str, amount: float = 1.0, *, priority: int) -> LeaseRequest:
    return ask(holder, amount, kind=ResourceKind.GPU, priority=priority)


def test_an_exclusive_resource_is_granted_when_nobody_holds_it() -> None:
    # 2 GPUs: 50 % per holder = 1 device.
    assert judge(GPU, 2, [], gpu_ask("a", priority=0)) == Grant()


def test_a_higher_priority_preempts_every_other_holder_lowest_priority_first() -> None:
    low = gpu("low", 0.5, priority=0, age=1)
    mid_old = gpu("mid-old", 0.5, priority=1, age=9)
    mid_new = gpu("mid-new", 0.5, priority=1, age=2)

    decision = judge(GPU, 2, [mid_new, low, mid_old], gpu_ask("boss", priority=2))

    assert decision == Grant(preempt=(low, mid_old, mid_new))


def test_an_equal_priority_is_denied_and_nothing_is_preempted() -> None:
    held = [gpu("a", priority=0), gpu("b", priority=2)]

    refusal = denied(judge(GPU, 2, held, gpu_ask("c", priority=2)), DenialReason.EXCLUSIVE_HELD)
    assert "priority 2 or more" in refusal.message


def test_a_lower_priority_is_denied() -> None:
    denied(
        judge(GPU, 2, [gpu("a", priority=3)], gpu_ask("b", priority=1)),
        DenialReason.EXCLUSIVE_HELD,
    )


def test_the_holders_own_leases_are_not_rivals_but_count_against_its_cap() -> None:
    held = [gpu("a", 0.5, priority=0)]

    assert judge(GPU, 2, held, gpu_ask("a", 0.5, priority=0)) == Grant()
    denied(judge(GPU, 2, held, gpu_ask("a", 0.6, priority=3)), DenialReason.HOLDER_CAP)


def test_nothing_is_preempted_for_a_request_the_caps_refuse_anyway() -> None:
    # 90 % of 1 GPU is 0.9; per holder 100 % so only the total cap is in the way.
    roomy = Policy(ResourceKind.GPU, 90.0, 100.0, exclusive=True)

    denied(
        judge(roomy, 1, [gpu("a", 0.5, priority=0)], gpu_ask("b", 1.0, priority=3)),
        DenialReason.TOTAL_CAP,
    )


# Policies and requests ---------------------------------------------------------------------------


def test_available_is_what_the_total_cap_leaves() -> None:
    assert available(CPU, 10, 6.5) == pytest.approx(1.5)
    assert available(CPU, 10, 9) == 0
    assert available(NETWORK, 1000, 1000) == pytest.approx(500)
    assert available(GPU, 0, 0) == 0


@pytest.mark.parametrize(
    ("policy", "fields"),
    [
        (Policy(ResourceKind.CPU, 0.5, 30), {"policy.max_total_percent"}),
        (Policy(ResourceKind.CPU, 80, 101), {"policy.max_per_holder_percent"}),
        (Policy(ResourceKind.CPU, math.nan, 30), {"policy.max_total_percent"}),
        (Policy(ResourceKind.CPU, 80, 30, 0.5), {"policy.oversubscription_ratio"}),
        (Policy(ResourceKind.CPU, 80, 30, 4.5), {"policy.oversubscription_ratio"}),
        (Policy(ResourceKind.CPU, 80, 30, math.inf), {"policy.oversubscription_ratio"}),
        (Policy(ResourceKind.GPU, 90, 50, 1.5, exclusive=True), {"policy.oversubscription_ratio"}),
        (Policy(ResourceKind.CPU, 100, 1, 4), set()),
        (Policy(ResourceKind.CPU, 1, 100), set()),
    ],
)
def test_policy_ranges(policy: Policy, fields: set[str]) -> None:
    assert set(policy_violations(policy)) == fields


def valid_request(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "holder": "agent-1",
        "amount": 1.0,
        "priority": 2,
        "duration_seconds": 60,
        "task_id": "",
    }
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"holder": ""}, "holder"),
        ({"holder": "x" * 129}, "holder"),
        ({"holder": "bad\nname"}, "holder"),
        ({"amount": 0.0}, "amount"),
        ({"amount": -1.0}, "amount"),
        ({"amount": math.nan}, "amount"),
        ({"amount": math.inf}, "amount"),
        ({"priority": 4}, "priority"),
        ({"duration_seconds": 0}, "duration_seconds"),
        ({"duration_seconds": 86_401}, "duration_seconds"),
        ({"task_id": "not-a-uuid"}, "task_id"),
        ({"task_id": "1234567812341234123412345678abcd----"}, "task_id"),
        ({"task_id": "{12345678-1234-1234-1234-123456789abc}"}, "task_id"),
    ],
)
def test_request_rules_name_the_field(changes: dict[str, object], field: str) -> None:
    assert set(request_violations(**valid_request(**changes))) == {field}  # type: ignore[arg-type]


def test_a_valid_request_has_no_violations() -> None:
    assert request_violations(**valid_request(holder="x" * 128, duration_seconds=86_400)) == {}  # type: ignore[arg-type]
    assert (
        request_violations(**valid_request(task_id=str(uuid.uuid4()), duration_seconds=1)) == {}  # type: ignore[arg-type]
    )


def test_a_holder_filter_may_be_empty() -> None:
    assert holder_violations("", "holder", required=False) == {}
    assert holder_violations("", "holder", required=True) == {"holder": "required"}


def test_uuids_are_parsed_strictly() -> None:
    value = uuid.uuid4()
    assert parse_uuid(str(value)) == value
    assert parse_uuid(str(value).upper()) == value
    assert parse_uuid(value.hex) is None
    assert parse_uuid(f"urn:uuid:{value}") is None
    assert parse_uuid(f"{value}\n") is None
