"""The arbiter without a database: validation, refusals and their details, the host's figures.

The store is a stand-in recording what reaches it; a malformed request must never reach it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import cast

import grpc
import psutil
import pytest
from google.rpc import error_details_pb2
from prometheus_client import CollectorRegistry

from sutazai.ops.supervisor.nats_auth import Policy as NatsPolicy
from sutazai.ops.supervisor.nats_auth import Principal
from sutazai.resources.v1 import resource_service_pb2 as pb
from sutazai.runtime.faults import RpcStatusError
from sutazai.runtime.settings import ResourcesSettings
from sutazai.services.resources.arbiter import Arbiter
from sutazai.services.resources.domain import (
    DEFAULT_POLICIES,
    Denial,
    DenialReason,
    Lease,
    LeaseRequest,
    Policy,
    ResourceKind,
)
from sutazai.services.resources.host import GIB, HostProbe, Usage, nvidia_devices
from sutazai.services.resources.metrics import ResourceMetrics
from sutazai.services.resources.store import Allocated, LeaseStore, PolicyChange, Refused

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakeStore:
    """Answers like the store would; records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[LeaseRequest] = []
        self.released: list[uuid.UUID] = []
        self.denial: Denial | None = None
        self.held: dict[ResourceKind, float] = {}

    async def allocate(
        self, request: LeaseRequest, capacity: float, *, max_leases: int
    ) -> Allocated | Refused:
        self.requests.append(request)
        if self.denial is not None:
            return Refused(self.denial, expired=0)
        lease = Lease(
            uuid.uuid4(),
            request.holder,
            request.kind,
            request.amount,
            request.priority,
            request.task_id,
            NOW,
            NOW + timedelta(seconds=request.duration_seconds),
        )
        return Allocated(lease, (), expired=0)

    async def release(self, allocation_id: uuid.UUID) -> Lease | None:
        self.released.append(allocation_id)
        return None

    async def leases(self, kind: ResourceKind | None = None, holder: str = "") -> list[Lease]:
        return []

    async def allocated(self) -> dict[ResourceKind, float]:
        return self.held

    async def policies(self) -> list[Policy]:
        return list(DEFAULT_POLICIES)

    async def set_policy(self, policy: Policy, actor: str) -> PolicyChange:
        return PolicyChange(policy, policy)


CAPACITY = {
    ResourceKind.CPU: 8.0,
    ResourceKind.MEMORY: 16.0,
    ResourceKind.DISK: 100.0,
    ResourceKind.NETWORK: 1000.0,
    ResourceKind.GPU: 0.0,
}


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def arbiter(store: FakeStore) -> Arbiter:
    usage = Usage(MappingProxyType({ResourceKind.CPU: 12.5, ResourceKind.MEMORY: 40.0}))
    return Arbiter(
        cast(LeaseStore, store),
        lambda: CAPACITY,
        lambda: usage,
        ResourcesSettings(),
        ResourceMetrics(CollectorRegistry()),
        audit=None,
    )


def violations(fault: RpcStatusError) -> dict[str, str]:
    for detail in fault.details:
        if isinstance(detail, error_details_pb2.BadRequest):
            return {v.field: v.description for v in detail.field_violations}
    return {}


def request(**changes: object) -> pb.AllocateRequest:
    fields: dict[str, object] = {
        "holder": "agent-1",
        "resource_type": pb.RESOURCE_TYPE_CPU,
        "amount": 1.0,
        "priority": 1,
        "duration_seconds": 30,
    }
    fields.update(changes)
    return pb.AllocateRequest(**fields)  # type: ignore[arg-type]


async def test_a_valid_request_reaches_the_store(arbiter: Arbiter, store: FakeStore) -> None:
    task = str(uuid.uuid4())
    answer = await arbiter.allocate(request(task_id=task), actor="op")

    assert store.requests == [
        LeaseRequest("agent-1", ResourceKind.CPU, 1.0, 1, 30, uuid.UUID(task))
    ]
    assert answer.allocation.task_id == task
    assert answer.allocation.resource_type == pb.RESOURCE_TYPE_CPU
    assert answer.allocation.expires_at.ToDatetime(UTC) - answer.allocation.created_at.ToDatetime(
        UTC
    ) == timedelta(seconds=30)


async def test_every_bad_field_is_named_and_nothing_reaches_the_store(
    arbiter: Arbiter, store: FakeStore
) -> None:
    bad = pb.AllocateRequest(
        holder="", resource_type=99, amount=-1, priority=7, duration_seconds=0, task_id="nope"
    )
    with pytest.raises(RpcStatusError) as raised:
        await arbiter.allocate(bad, actor="op")

    assert raised.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(raised.value)) == {
        "holder",
        "resource_type",
        "amount",
        "priority",
        "duration_seconds",
        "task_id",
    }
    assert store.requests == []


async def test_a_denial_is_resource_exhausted_with_retry_reason_and_quota(
    arbiter: Arbiter, store: FakeStore
) -> None:
    store.denial = Denial(DenialReason.TOTAL_CAP, "cpu: 8 of 8 cores leased", 7.0)
    with pytest.raises(RpcStatusError) as raised:
        await arbiter.allocate(request(), actor="op")

    fault = raised.value
    assert fault.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert fault.message == "cpu: 8 of 8 cores leased"
    kinds = {type(detail): detail for detail in fault.details}
    retry = kinds[error_details_pb2.RetryInfo]
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.seconds == 7
    info = kinds[error_details_pb2.ErrorInfo]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "TOTAL_CAP_EXCEEDED"
    quota = kinds[error_details_pb2.QuotaFailure]
    assert isinstance(quota, error_details_pb2.QuotaFailure)
    assert quota.violations[0].subject == "resources/cpu"


@pytest.mark.parametrize(
    ("allocation_id", "description"),
    [("", "required"), ("123", "must be a UUID"), (uuid.uuid4().hex, "must be a UUID")],
)
async def test_release_needs_a_uuid(
    arbiter: Arbiter, store: FakeStore, allocation_id: str, description: str
) -> None:
    with pytest.raises(RpcStatusError) as raised:
        await arbiter.release(pb.ReleaseRequest(allocation_id=allocation_id))

    assert raised.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert violations(raised.value) == {"allocation_id": description}
    assert store.released == []


async def test_release_of_an_unknown_lease_is_not_found(arbiter: Arbiter) -> None:
    with pytest.raises(RpcStatusError) as raised:
        await arbiter.release(pb.ReleaseRequest(allocation_id=str(uuid.uuid4())))

    assert raised.value.code is grpc.StatusCode.NOT_FOUND


async def test_set_policy_names_each_bad_field(arbiter: Arbiter) -> None:
    bad = pb.Policy(max_total_percent=0, max_per_holder_percent=200, oversubscription_ratio=9)
    with pytest.raises(RpcStatusError) as raised:
        await arbiter.set_policy(pb.SetPolicyRequest(policy=bad), actor="root")

    assert set(violations(raised.value)) == {
        "policy.resource_type",
        "policy.max_total_percent",
        "policy.max_per_holder_percent",
        "policy.oversubscription_ratio",
    }
    with pytest.raises(RpcStatusError) as missing:
        await arbiter.set_policy(pb.SetPolicyRequest(), actor="root")
    assert violations(missing.value) == {"policy": "required"}


async def test_list_filters_are_checked(arbiter: Arbiter) -> None:
    with pytest.raises(RpcStatusError) as raised:
        await arbiter.list_allocations(
            pb.ListAllocationsRequest(resource_type=42, holder="y" * 200)  # type: ignore[arg-type]
        )

    assert set(violations(raised.value)) == {"resource_type", "holder"}


async def test_resources_leave_out_what_the_host_lacks(arbiter: Arbiter, store: FakeStore) -> None:
    store.held = {ResourceKind.CPU: 2.5, ResourceKind.NETWORK: 1200.0}

    answer = await arbiter.resources()

    figures = {
        r.resource_type: (r.unit, r.capacity, r.allocated, r.available, r.utilization_percent)
        for r in answer.resources
    }
    assert figures == {
        pb.RESOURCE_TYPE_CPU: ("cores", 8.0, 2.5, pytest.approx(8 * 0.8 - 2.5), 12.5),
        pb.RESOURCE_TYPE_MEMORY: ("GiB", 16.0, 0.0, pytest.approx(16 * 0.85), 40.0),
        pb.RESOURCE_TYPE_DISK: ("GiB", 100.0, 0.0, pytest.approx(90.0), 0.0),
        pb.RESOURCE_TYPE_NETWORK: ("Mbps", 1000.0, 1200.0, pytest.approx(300.0), 0.0),
    }


# The host probe ----------------------------------------------------------------------------------


def test_the_probe_measures_capacity_with_psutil(tmp_path: Path) -> None:
    probe = HostProbe(disk_path=tmp_path, network_mbps=250.0, gpu_devices=2)

    capacity = probe.capacity()

    assert capacity[ResourceKind.CPU] == psutil.cpu_count(logical=True)
    assert capacity[ResourceKind.MEMORY] == pytest.approx(psutil.virtual_memory().total / GIB)
    assert capacity[ResourceKind.DISK] == pytest.approx(
        psutil.disk_usage(str(tmp_path)).total / GIB
    )
    assert capacity[ResourceKind.NETWORK] == 250.0
    assert capacity[ResourceKind.GPU] == 2.0
    usage = probe.sample().percent
    assert set(usage) == set(ResourceKind)
    assert all(0.0 <= value <= 100.0 for value in usage.values())


def test_nvidia_devices_are_counted_from_their_device_files(tmp_path: Path) -> None:
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia12", "nvidia3x"):
        (tmp_path / name).touch()

    assert nvidia_devices(str(tmp_path / "nvidia[0-9]*")) == 3


# NATS permissions: the responder's grant ------------------------------------------------------


def test_the_resources_principal_may_answer_but_not_publish_on_its_subjects() -> None:
    permissions = NatsPolicy.packaged().permissions(
        Principal("resources", "service"), bucket="reg", revocations="rev"
    )

    assert {"sutazai.resources.allocate", "sutazai.resources.release"} <= set(permissions.subscribe)
    assert permissions.allow_responses
    assert not any(s.startswith("sutazai.resources") for s in permissions.publish)
    assert permissions.config()["allow_responses"] is True
    other = NatsPolicy.packaged().permissions(
        Principal("chat", "service"), bucket="reg", revocations="rev"
    )
    assert not other.allow_responses
    assert "allow_responses" not in other.config()
