"""Leases on the real PostgreSQL, from two service instances at once.

Each test gets a schema of its own (created by the superuser for the service's role, as the
supervisor creates ``resources``) and two arbiters with separate pools, i.e. two instances of
the service; capacity is injected so the arithmetic is exact whatever the host. The running
mesh's own resource service (if any) is untouched.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from prometheus_client import CollectorRegistry

from sutazai.ops.supervisor.components.postgres import maintenance_dsn
from sutazai.ops.supervisor.components.postgres_roles import quote_identifier
from sutazai.resources.v1 import resource_service_pb2 as pb
from sutazai.runtime.audit import AuditLog
from sutazai.runtime.faults import RpcStatusError
from sutazai.runtime.settings import MeshSettings, ResourcesSettings
from sutazai.services.resources.arbiter import Arbiter
from sutazai.services.resources.domain import ResourceKind
from sutazai.services.resources.host import Usage
from sutazai.services.resources.metrics import ResourceMetrics
from sutazai.services.resources.store import open_pool, open_store
from tests.harness.waiting import wait_for

CAPACITY = {
    ResourceKind.CPU: 10.0,  # total cap 8 cores, 3 per holder
    ResourceKind.MEMORY: 64.0,
    ResourceKind.DISK: 500.0,
    ResourceKind.NETWORK: 1000.0,
    ResourceKind.GPU: 2.0,  # exclusive, 1 device per holder
}
NO_DEADLOCK_SECONDS = 60.0
"""A deadlock would hang (or be broken by PostgreSQL after deadlock_timeout, as an error)."""


@dataclass(frozen=True, slots=True)
class Instances:
    """Two arbiters on one schema, each with its own pool, and a superuser connection."""

    arbiters: tuple[Arbiter, Arbiter]
    admin: asyncpg.Connection
    schema: str

    async def live_sum(self, kind: ResourceKind) -> float:
        total = await self.admin.fetchval(
            f"SELECT coalesce(sum(amount), 0) FROM {self.schema}.leases "  # noqa: S608
            "WHERE resource_type = $1 AND expires_at > clock_timestamp()",
            kind.value,
        )
        return float(total)

    async def rows(self, kind: ResourceKind) -> int:
        count = await self.admin.fetchval(
            f"SELECT count(*) FROM {self.schema}.leases WHERE resource_type = $1",  # noqa: S608
            kind.value,
        )
        return int(count)


@pytest.fixture
async def instances(mesh_settings: MeshSettings) -> AsyncIterator[Instances]:
    schema = f"resources_t{secrets.token_hex(4)}"
    role = mesh_settings.postgres.service_role("resources")
    admin = await asyncpg.connect(maintenance_dsn(mesh_settings, mesh_settings.postgres.database))
    await admin.execute(
        f"CREATE SCHEMA {quote_identifier(schema)} AUTHORIZATION {quote_identifier(role)}"
    )
    dsn = mesh_settings.as_principal("resources").postgres_dsn
    pools = [await open_pool(dsn, schema, max_size=10) for _ in range(2)]
    try:
        # Both instances migrate at once, as two processes starting together would.
        stores = await asyncio.gather(*(open_store(pool, schema) for pool in pools))
        usage = Usage({})
        arbiters = tuple(
            Arbiter(
                store,
                lambda: CAPACITY,
                lambda: usage,
                ResourcesSettings(),
                ResourceMetrics(CollectorRegistry()),
                AuditLog(pool),
            )
            for store, pool in zip(stores, pools, strict=True)
        )
        yield Instances((arbiters[0], arbiters[1]), admin, schema)
    finally:
        for pool in pools:
            await pool.close()
        await admin.execute(f"DROP SCHEMA {quote_identifier(schema)} CASCADE")
        await admin.close()


def ask(
    holder: str,
    amount: float,
    kind: int = pb.RESOURCE_TYPE_CPU,
    *,
    priority: int = 1,
    seconds: int = 300,
) -> pb.AllocateRequest:
    return pb.AllocateRequest(
        holder=holder,
        resource_type=kind,  # type: ignore[arg-type]
        amount=amount,
        priority=priority,
        duration_seconds=seconds,
    )


def reason_of(fault: RpcStatusError) -> str:
    for detail in fault.details:
        if isinstance(detail, error_details_pb2.ErrorInfo):
            return detail.reason
    return ""


def split(
    outcomes: Sequence[pb.AllocateResponse | BaseException],
) -> tuple[list[pb.AllocateResponse], list[RpcStatusError]]:
    granted = [o for o in outcomes if isinstance(o, pb.AllocateResponse)]
    refused = [o for o in outcomes if isinstance(o, RpcStatusError)]
    unexpected = [o for o in outcomes if not isinstance(o, pb.AllocateResponse | RpcStatusError)]
    assert not unexpected, unexpected
    return granted, refused


# Concurrency ----------------------------------------------------------------------------------


async def test_fifty_concurrent_requests_never_exceed_the_total_cap(instances: Instances) -> None:
    # 50 holders ask 0.5 core each of 10 cores: the total cap (80 %) admits exactly 16.
    outcomes = await asyncio.gather(
        *(
            instances.arbiters[i % 2].allocate(ask(f"agent-{i}", 0.5), actor="test")
            for i in range(50)
        ),
        return_exceptions=True,
    )

    granted, refused = split(outcomes)
    assert len(granted) == 16
    assert len(refused) == 34
    assert {f.code for f in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert {reason_of(f) for f in refused} == {"TOTAL_CAP_EXCEEDED"}
    assert await instances.live_sum(ResourceKind.CPU) == pytest.approx(8.0)
    listed = await instances.arbiters[1].list_allocations(
        pb.ListAllocationsRequest(resource_type=pb.RESOURCE_TYPE_CPU)
    )
    assert {a.allocation_id for a in listed.allocations} == {
        g.allocation.allocation_id for g in granted
    }


async def test_fifty_concurrent_requests_of_one_holder_never_exceed_its_cap(
    instances: Instances,
) -> None:
    # One holder asks 0.5 core fifty times: 30 % of 10 cores admits exactly 6.
    outcomes = await asyncio.gather(
        *(instances.arbiters[i % 2].allocate(ask("greedy", 0.5), actor="test") for i in range(50)),
        return_exceptions=True,
    )

    granted, refused = split(outcomes)
    assert len(granted) == 6
    assert {reason_of(f) for f in refused} == {"HOLDER_CAP_EXCEEDED"}
    assert await instances.live_sum(ResourceKind.CPU) == pytest.approx(3.0)


async def test_network_may_be_oversubscribed_to_its_ratio_and_no_further(
    instances: Instances,
) -> None:
    # 15 % per holder = 150 Mbps; 1.5 x 1000 Mbps admits exactly 10 of them (not 6, at 95 %).
    outcomes = await asyncio.gather(
        *(
            instances.arbiters[i % 2].allocate(
                ask(f"stream-{i}", 150.0, pb.RESOURCE_TYPE_NETWORK), actor="test"
            )
            for i in range(50)
        ),
        return_exceptions=True,
    )

    granted, _ = split(outcomes)
    assert len(granted) == 10
    assert await instances.live_sum(ResourceKind.NETWORK) == pytest.approx(1500.0)


# Exclusive GPUs --------------------------------------------------------------------------------


async def test_a_higher_priority_preempts_and_an_equal_one_is_denied(
    instances: Instances,
) -> None:
    first, second = instances.arbiters
    low = await first.allocate(ask("batch-job", 1.0, pb.RESOURCE_TYPE_GPU, priority=0), actor="t")

    high = await second.allocate(ask("urgent", 1.0, pb.RESOURCE_TYPE_GPU, priority=2), actor="t")

    assert [p.allocation_id for p in high.preempted] == [low.allocation.allocation_id]
    assert high.preempted[0].holder == "batch-job"
    with pytest.raises(RpcStatusError) as equal:
        await first.allocate(ask("rival", 1.0, pb.RESOURCE_TYPE_GPU, priority=2), actor="t")
    assert equal.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(equal.value) == "EXCLUSIVE_HELD"
    listed = await first.list_allocations(
        pb.ListAllocationsRequest(resource_type=pb.RESOURCE_TYPE_GPU)
    )
    assert [a.allocation_id for a in listed.allocations] == [high.allocation.allocation_id]
    with pytest.raises(RpcStatusError) as gone:
        await first.release(pb.ReleaseRequest(allocation_id=low.allocation.allocation_id))
    assert gone.value.code is grpc.StatusCode.NOT_FOUND


async def test_concurrent_preemptions_releases_and_sweeps_do_not_deadlock(
    instances: Instances,
) -> None:
    rng = random.Random(10)  # noqa: S311 - test data
    granted: list[pb.AllocateResponse] = []
    refusals: list[grpc.StatusCode] = []
    missed: list[grpc.StatusCode] = []
    # Held at the lowest priority: the first grant of any higher priority must pre-empt it.
    seed = await instances.arbiters[0].allocate(
        ask("seed", 1.0, pb.RESOURCE_TYPE_GPU, priority=0), actor="t"
    )

    async def contender(i: int) -> None:
        arbiter = instances.arbiters[i % 2]
        for round_ in range(4):
            # Priorities rise round by round, so later requests pre-empt earlier holders.
            priority = min(3, round_ + rng.randint(0, 1))
            request = ask(f"gpu-{i}", 1.0, pb.RESOURCE_TYPE_GPU, priority=priority)
            try:
                answer = await arbiter.allocate(request, actor="t")
            except RpcStatusError as fault:
                refusals.append(fault.code)
                continue
            granted.append(answer)
            for lost in answer.preempted:
                assert lost.priority < answer.allocation.priority
                assert lost.holder != answer.allocation.holder
            # Some CPU work in between: another resource's lock, taken by the same instances.
            with_cpu = ask(f"gpu-{i}", 0.1, priority=1, seconds=1 + round_)
            await arbiter.allocate(with_cpu, actor="t")
            if rng.random() < 0.5:
                try:
                    await arbiter.release(
                        pb.ReleaseRequest(allocation_id=answer.allocation.allocation_id)
                    )
                except RpcStatusError as fault:  # pre-empted meanwhile
                    missed.append(fault.code)

    async def sweeper() -> None:
        for _ in range(20):
            await instances.arbiters[0].sweep()
            await asyncio.sleep(0)

    await asyncio.wait_for(
        asyncio.gather(*(contender(i) for i in range(16)), sweeper()), NO_DEADLOCK_SECONDS
    )

    assert granted
    assert set(refusals) <= {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert set(missed) <= {grpc.StatusCode.NOT_FOUND}
    preempted = [lost.allocation_id for answer in granted for lost in answer.preempted]
    assert seed.allocation.allocation_id in preempted
    assert len(preempted) == len(set(preempted)), "a lease is pre-empted once"
    live = await instances.arbiters[1].list_allocations(
        pb.ListAllocationsRequest(resource_type=pb.RESOURCE_TYPE_GPU)
    )
    assert len({a.holder for a in live.allocations}) <= 1, "an exclusive GPU has one holder"
    assert await instances.live_sum(ResourceKind.GPU) <= 1.0


# Expiry, release, policies ----------------------------------------------------------------------


async def test_an_expired_lease_frees_capacity_at_once_and_is_swept(instances: Instances) -> None:
    arbiter = instances.arbiters[0]
    short = await arbiter.allocate(ask("brief", 3.0, seconds=1), actor="t")
    with pytest.raises(RpcStatusError) as full:
        await arbiter.allocate(ask("brief", 3.0), actor="t")
    assert reason_of(full.value) == "HOLDER_CAP_EXCEEDED"

    async def expired() -> bool:
        listed = await arbiter.list_allocations(pb.ListAllocationsRequest(holder="brief"))
        return not listed.allocations

    await wait_for(expired, timeout=15, interval=0.1, message="the 1 s lease expired")
    # Not counted any more, though the row is still there until the sweeper comes.
    assert await instances.live_sum(ResourceKind.CPU) == 0
    assert await instances.rows(ResourceKind.CPU) == 1
    with pytest.raises(RpcStatusError) as ended:
        await arbiter.release(pb.ReleaseRequest(allocation_id=short.allocation.allocation_id))
    assert ended.value.code is grpc.StatusCode.NOT_FOUND

    await arbiter.sweep()

    assert await instances.rows(ResourceKind.CPU) == 0
    again = await arbiter.allocate(ask("brief", 3.0), actor="t")
    assert again.allocation.amount == 3.0


async def test_release_ends_a_lease_once(instances: Instances) -> None:
    first, second = instances.arbiters
    lease = await first.allocate(ask("done-early", 2.0), actor="t")

    released = await second.release(pb.ReleaseRequest(allocation_id=lease.allocation.allocation_id))

    assert released.allocation == lease.allocation
    assert await instances.live_sum(ResourceKind.CPU) == 0
    with pytest.raises(RpcStatusError) as again:
        await first.release(pb.ReleaseRequest(allocation_id=lease.allocation.allocation_id))
    assert again.value.code is grpc.StatusCode.NOT_FOUND
    with pytest.raises(RpcStatusError) as unknown:
        await first.release(pb.ReleaseRequest(allocation_id=str(uuid.uuid4())))
    assert unknown.value.code is grpc.StatusCode.NOT_FOUND


async def test_a_policy_change_applies_to_new_leases_and_is_audited(
    instances: Instances, mesh_settings: MeshSettings
) -> None:
    first, second = instances.arbiters
    kept = await first.allocate(ask("before", 2.0), actor="t")
    actor = f"admin-{secrets.token_hex(3)}"

    answer = await first.set_policy(
        pb.SetPolicyRequest(
            policy=pb.Policy(
                resource_type=pb.RESOURCE_TYPE_CPU,
                max_total_percent=25,
                max_per_holder_percent=10,
                oversubscription_ratio=1,
            )
        ),
        actor=actor,
    )

    assert answer.policy.max_total_percent == 25
    policies = await second.policies()
    cpu = next(p for p in policies.policies if p.resource_type == pb.RESOURCE_TYPE_CPU)
    assert (cpu.max_total_percent, cpu.max_per_holder_percent) == (25, 10)
    # The live lease stays; a new one follows the new caps (2.5 cores in all, 1 per holder).
    listed = await second.list_allocations(pb.ListAllocationsRequest())
    assert [a.allocation_id for a in listed.allocations] == [kept.allocation.allocation_id]
    with pytest.raises(RpcStatusError) as over_holder:
        await second.allocate(ask("after", 1.5), actor="t")
    assert reason_of(over_holder.value) == "HOLDER_CAP_EXCEEDED"
    await second.allocate(ask("after", 0.5), actor="t")
    with pytest.raises(RpcStatusError) as over_total:
        await second.allocate(ask("late", 0.5), actor="t")
    assert reason_of(over_total.value) == "TOTAL_CAP_EXCEEDED"
    event = await instances.admin.fetchrow(
        "SELECT target, detail, outcome FROM audit.events "
        "WHERE action = 'resources.set_policy' AND actor = $1",
        actor,
    )
    assert event is not None
    assert event["target"] == "cpu"
    assert event["detail"] == (
        "total 80%, per holder 30%, oversubscription 1x, shared -> "
        "total 25%, per holder 10%, oversubscription 1x, shared"
    )


async def test_preemptions_are_audited_with_both_holders(instances: Instances) -> None:
    first, second = instances.arbiters
    actor = f"op-{secrets.token_hex(3)}"
    low = await first.allocate(ask("victim", 1.0, pb.RESOURCE_TYPE_GPU, priority=1), actor=actor)
    high = await second.allocate(ask("winner", 1.0, pb.RESOURCE_TYPE_GPU, priority=3), actor=actor)

    event = await instances.admin.fetchrow(
        "SELECT target, detail FROM audit.events WHERE action = 'resources.preempt' AND actor = $1",
        actor,
    )

    assert event is not None
    assert event["target"] == f"{low.allocation.allocation_id} (victim)"
    assert (
        f"pre-empted by {high.allocation.allocation_id} (winner) at priority 3" in (event["detail"])
    )
