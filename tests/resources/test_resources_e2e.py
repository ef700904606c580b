"""The resource service on the real mesh: through Envoy (gRPC and REST) and over NATS.

The mesh's own service measures this host, so amounts here are small (a tenth of a core) and
every lease a test takes is released; the one policy a test changes is put back.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import nats
import psutil
import pytest
from google.rpc import code_pb2, error_details_pb2
from nats.aio.client import Client as NatsClient

from sutazai.resources.v1 import resource_service_pb2 as pb
from sutazai.resources.v1.resource_service_pb2_grpc import ResourceServiceStub
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.settings import MeshSettings
from sutazai.services.resources.host import GIB, nvidia_devices
from tests.auth.helpers import bearer
from tests.harness.waiting import wait_for

TIMEOUT = 10.0


@pytest.fixture
async def resources(mesh_services: MeshSettings) -> AsyncIterator[ResourceServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh_services.envoy.port}") as channel:
        yield ResourceServiceStub(channel)


@pytest.fixture
async def rest(mesh_services: MeshSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{mesh_services.envoy.port}", timeout=TIMEOUT
    ) as client:
        yield client


@pytest.fixture
async def admin_nats(mesh_services: MeshSettings) -> AsyncIterator[NatsClient]:
    nc = await connect_nats(mesh_services, name="resources-test")
    yield nc
    await nc.close()


def holder() -> str:
    return f"test-{secrets.token_hex(4)}"


def small(name: str, **fields: object) -> pb.AllocateRequest:
    request = pb.AllocateRequest(
        holder=name, resource_type=pb.RESOURCE_TYPE_CPU, amount=0.1, priority=1, duration_seconds=60
    )
    for key, value in fields.items():
        setattr(request, key, value)
    return request


# Figures ------------------------------------------------------------


async def test_get_resources_measures_this_host(
    resources: ResourceServiceStub, mesh_services: MeshSettings, user_token: str
) -> None:
    answer = await resources.GetResources(
        pb.GetResourcesRequest(), metadata=bearer(user_token), timeout=TIMEOUT
    )

    figures = {r.resource_type: r for r in answer.resources}
    expected = {
        pb.RESOURCE_TYPE_CPU,
        pb.RESOURCE_TYPE_MEMORY,
        pb.RESOURCE_TYPE_DISK,
        pb.RESOURCE_TYPE_NETWORK,
    }
    if nvidia_devices():
        expected.add(pb.RESOURCE_TYPE_GPU)
    assert set(figures) == expected, "no GPU entry without a GPU"
    cpu, memory, disk, network = (
        figures[pb.RESOURCE_TYPE_CPU],
        figures[pb.RESOURCE_TYPE_MEMORY],
        figures[pb.RESOURCE_TYPE_DISK],
        figures[pb.RESOURCE_TYPE_NETWORK],
    )
    assert (cpu.unit, cpu.capacity) == ("cores", psutil.cpu_count(logical=True))
    assert memory.unit == "GiB"
    assert memory.capacity == pytest.approx(psutil.virtual_memory().total / GIB)
    assert memory.utilization_percent == pytest.approx(psutil.virtual_memory().percent, abs=10)
    state = psutil.disk_usage(str(mesh_services.state_dir))
    assert disk.unit == "GiB"
    assert disk.capacity == pytest.approx(state.total / GIB)
    assert disk.utilization_percent == pytest.approx(state.percent, abs=2)
    assert (network.unit, network.capacity) == ("Mbps", 1000.0)
    assert 0.0 <= cpu.utilization_percent <= 100.0
    assert 0.0 <= network.utilization_percent <= 100.0
    # Nothing else holds CPU in the test mesh: available is the 80 % cap less what is leased.
    assert cpu.available == pytest.approx(max(0.0, cpu.capacity * 0.8 - cpu.allocated))


async def test_rest_reads_resources_and_policies(rest: httpx.AsyncClient, user_token: str) -> None:
    headers = {"authorization": f"Bearer {user_token}"}

    figures = await rest.get("/v1/resources", headers=headers)
    policies = await rest.get("/v1/resources/policies", headers=headers)
    anonymous = await rest.get("/v1/resources")

    assert figures.status_code == 200, figures.text
    kinds = {r["resource_type"] for r in figures.json()["resources"]}
    assert {"RESOURCE_TYPE_CPU", "RESOURCE_TYPE_MEMORY"} <= kinds
    assert policies.status_code == 200, policies.text
    table = {p["resource_type"]: p for p in policies.json()["policies"]}
    assert table["RESOURCE_TYPE_GPU"]["exclusive"] is True
    assert table["RESOURCE_TYPE_NETWORK"]["oversubscription_ratio"] == 1.5
    assert table["RESOURCE_TYPE_CPU"]["max_total_percent"] == 80
    assert anonymous.status_code == 401


# Leases through the edge ------------------------------------------------------------


async def test_an_operator_allocates_lists_and_releases_over_grpc(
    resources: ResourceServiceStub, operator_token: str
) -> None:
    name = holder()
    task = str(uuid.uuid4())
    granted = await resources.Allocate(
        small(name, task_id=task), metadata=bearer(operator_token), timeout=TIMEOUT
    )

    assert granted.allocation.holder == name
    assert granted.allocation.task_id == task
    listed = await resources.ListAllocations(
        pb.ListAllocationsRequest(holder=name), metadata=bearer(operator_token), timeout=TIMEOUT
    )
    assert [a.allocation_id for a in listed.allocations] == [granted.allocation.allocation_id]
    released = await resources.Release(
        pb.ReleaseRequest(allocation_id=granted.allocation.allocation_id),
        metadata=bearer(operator_token),
        timeout=TIMEOUT,
    )
    assert released.allocation == granted.allocation
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await resources.Release(
            pb.ReleaseRequest(allocation_id=granted.allocation.allocation_id),
            metadata=bearer(operator_token),
            timeout=TIMEOUT,
        )
    assert again.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await resources.Release(
            pb.ReleaseRequest(allocation_id="not-an-id"),
            metadata=bearer(operator_token),
            timeout=TIMEOUT,
        )
    assert malformed.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_denial_is_resource_exhausted_with_the_reason(
    resources: ResourceServiceStub, operator_token: str
) -> None:
    cores = float(psutil.cpu_count(logical=True) or 1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await resources.Allocate(
            small(holder(), amount=cores), metadata=bearer(operator_token), timeout=TIMEOUT
        )

    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "per-holder cap" in (refused.value.details() or "")


async def test_a_user_cannot_allocate_or_release(
    resources: ResourceServiceStub, rest: httpx.AsyncClient, user_token: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as allocate:
        await resources.Allocate(small(holder()), metadata=bearer(user_token), timeout=TIMEOUT)
    reply = await rest.delete(
        f"/v1/resources/allocations/{uuid.uuid4()}",
        headers={"authorization": f"Bearer {user_token}"},
    )

    assert allocate.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert reply.status_code == 403, reply.text


async def test_rest_allocate_list_and_release(rest: httpx.AsyncClient, operator_token: str) -> None:
    headers = {"authorization": f"Bearer {operator_token}"}
    name = holder()

    created = await rest.post(
        "/v1/resources/allocations",
        headers=headers,
        json={
            "holder": name,
            "resource_type": "RESOURCE_TYPE_MEMORY",
            "amount": 0.01,
            "priority": 2,
            "duration_seconds": 30,
        },
    )
    assert created.status_code == 200, created.text
    allocation = created.json()["allocation"]
    assert allocation["resource_type"] == "RESOURCE_TYPE_MEMORY"
    listed = await rest.get(
        "/v1/resources/allocations",
        headers=headers,
        params={"holder": name, "resource_type": "RESOURCE_TYPE_MEMORY"},
    )
    assert listed.status_code == 200, listed.text
    assert [a["allocation_id"] for a in listed.json()["allocations"]] == [
        allocation["allocation_id"]
    ]
    deleted = await rest.delete(
        f"/v1/resources/allocations/{allocation['allocation_id']}", headers=headers
    )
    assert deleted.status_code == 200, deleted.text
    gone = await rest.delete(
        f"/v1/resources/allocations/{allocation['allocation_id']}", headers=headers
    )
    assert gone.status_code == 404, gone.text
    bad = await rest.post(
        "/v1/resources/allocations",
        headers=headers,
        json={"holder": name, "resource_type": "RESOURCE_TYPE_CPU", "amount": 0.1},
    )
    assert bad.status_code == 400, bad.text
    assert "duration_seconds" in bad.text


# Policies ------------------------------------------------------------


async def test_only_an_admin_sets_a_policy(
    rest: httpx.AsyncClient,
    resources: ResourceServiceStub,
    operator_token: str,
    admin_token: str,
) -> None:
    path = "/v1/resources/policies/RESOURCE_TYPE_NETWORK"
    changed = {"max_total_percent": 90, "max_per_holder_percent": 10, "oversubscription_ratio": 2}
    original = {
        "max_total_percent": 95,
        "max_per_holder_percent": 15,
        "oversubscription_ratio": 1.5,
    }

    denied = await rest.put(
        path, headers={"authorization": f"Bearer {operator_token}"}, json=changed
    )
    assert denied.status_code == 403, denied.text
    try:
        accepted = await rest.put(
            path, headers={"authorization": f"Bearer {admin_token}"}, json=changed
        )
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["policy"] == {
            "resource_type": "RESOURCE_TYPE_NETWORK",
            "exclusive": False,
            **changed,
        }
        policies = await resources.GetPolicies(
            pb.GetPoliciesRequest(), metadata=bearer(operator_token), timeout=TIMEOUT
        )
        network = next(p for p in policies.policies if p.resource_type == pb.RESOURCE_TYPE_NETWORK)
        assert network.oversubscription_ratio == 2
        invalid = await rest.put(
            path,
            headers={"authorization": f"Bearer {admin_token}"},
            json={**changed, "max_total_percent": 0, "oversubscription_ratio": 5},
        )
        assert invalid.status_code == 400, invalid.text
        assert "policy.max_total_percent" in invalid.text
        assert "policy.oversubscription_ratio" in invalid.text
    finally:
        restored = await rest.put(
            path, headers={"authorization": f"Bearer {admin_token}"}, json=original
        )
        assert restored.status_code == 200, restored.text


# NATS ------------------------------------------------------------


async def test_the_nats_responder_allocates_and_releases(
    admin_nats: NatsClient, resources: ResourceServiceStub, operator_token: str
) -> None:
    name = holder()

    raw = await admin_nats.request(
        "sutazai.resources.allocate", small(name).SerializeToString(), timeout=TIMEOUT
    )
    reply = pb.AllocateReply.FromString(raw.data)

    assert reply.status.code == code_pb2.OK, reply.status
    allocation = reply.response.allocation
    assert allocation.holder == name
    listed = await resources.ListAllocations(
        pb.ListAllocationsRequest(holder=name), metadata=bearer(operator_token), timeout=TIMEOUT
    )
    assert [a.allocation_id for a in listed.allocations] == [allocation.allocation_id]

    release = pb.ReleaseRequest(allocation_id=allocation.allocation_id).SerializeToString()
    first = pb.ReleaseReply.FromString(
        (await admin_nats.request("sutazai.resources.release", release, timeout=TIMEOUT)).data
    )
    second = pb.ReleaseReply.FromString(
        (await admin_nats.request("sutazai.resources.release", release, timeout=TIMEOUT)).data
    )
    assert first.status.code == code_pb2.OK
    assert second.status.code == code_pb2.NOT_FOUND


async def test_the_nats_responder_answers_bad_requests_with_their_status(
    admin_nats: NatsClient,
) -> None:
    garbage = pb.AllocateReply.FromString(
        (await admin_nats.request("sutazai.resources.allocate", b"\xff\xff", timeout=TIMEOUT)).data
    )
    invalid = pb.AllocateReply.FromString(
        (
            await admin_nats.request(
                "sutazai.resources.allocate",
                small("", amount=-1).SerializeToString(),
                timeout=TIMEOUT,
            )
        ).data
    )
    exhausted = pb.AllocateReply.FromString(
        (
            await admin_nats.request(
                "sutazai.resources.allocate",
                small(holder(), amount=1e6).SerializeToString(),
                timeout=TIMEOUT,
            )
        ).data
    )

    assert garbage.status.code == code_pb2.INVALID_ARGUMENT
    assert invalid.status.code == code_pb2.INVALID_ARGUMENT
    bad_request = error_details_pb2.BadRequest()
    assert invalid.status.details[0].Unpack(bad_request)
    assert {v.field for v in bad_request.field_violations} == {"holder", "amount"}
    assert exhausted.status.code == code_pb2.RESOURCE_EXHAUSTED
    assert "per-holder cap" in exhausted.status.message
    assert not exhausted.HasField("response")


async def test_another_service_may_not_call_the_responder(mesh_services: MeshSettings) -> None:
    errors: list[str] = []

    async def record(error: Exception) -> None:
        errors.append(str(error))

    chat = mesh_services.as_principal("chat")
    credentials = chat.nats_credentials
    assert credentials is not None
    nc = await nats.connect(
        servers=chat.nats_servers,
        user=credentials[0],
        password=credentials[1],
        inbox_prefix=chat.nats.inbox_prefix,
        error_cb=record,
        allow_reconnect=False,
    )
    try:
        await nc.publish("sutazai.resources.allocate", small(holder()).SerializeToString())
        await nc.flush()

        async def violated() -> bool:
            return any("permissions violation" in e.lower() for e in errors)

        await wait_for(violated, timeout=TIMEOUT, interval=0.05, message="a permission error")
    finally:
        await nc.close()
    assert any("sutazai.resources.allocate" in e for e in errors)


async def test_concurrent_nats_requests_are_all_answered(admin_nats: NatsClient) -> None:
    names = [holder() for _ in range(20)]

    raws = await asyncio.gather(
        *(
            admin_nats.request(
                "sutazai.resources.allocate",
                small(name, amount=0.01).SerializeToString(),
                timeout=TIMEOUT,
            )
            for name in names
        )
    )

    replies = [pb.AllocateReply.FromString(raw.data) for raw in raws]
    assert [r.status.code for r in replies] == [code_pb2.OK] * 20
    releases = await asyncio.gather(
        *(
            admin_nats.request(
                "sutazai.resources.release",
                pb.ReleaseRequest(
                    allocation_id=r.response.allocation.allocation_id
                ).SerializeToString(),
                timeout=TIMEOUT,
            )
            for r in replies
        )
    )
    assert {pb.ReleaseReply.FromString(r.data).status.code for r in releases} == {code_pb2.OK}
