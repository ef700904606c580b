"""The registry mirror against a real NATS KV bucket."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from sutazai.gateway.registry_trust import RegistryTrust
from sutazai.gateway.registry_watch import Instances, RegistryMirror
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.deployment import grpc_owners, load_catalog
from sutazai.runtime.errors import RegistryError
from sutazai.runtime.registry import Registry, instance_key
from sutazai.runtime.settings import RegistrySettings
from tests.harness.waiting import wait_for

SYSTEM_SERVICE = "sutazai.system.v1.SystemService"
AUTH_SERVICE = "sutazai.auth.v1.AuthService"
RUN_DIR = Path("/run/sutazai-test")


def trust(metrics: CollectorRegistry | None = None) -> RegistryTrust:
    """The trust of a gateway reading ``deploy/mesh.toml``."""
    return RegistryTrust(grpc_owners(load_catalog()), RUN_DIR, metrics)


def instance(instance_id: str, port: int) -> ServiceInstance:
    return ServiceInstance(
        service="system",
        instance_id=instance_id,
        host="127.0.0.1",
        port=port,
        grpc_services=[SYSTEM_SERVICE],
    )


class Recorder:
    """Collects what the mirror publishes."""

    def __init__(self) -> None:
        self.published: list[Instances] = []

    async def __call__(self, instances: Instances) -> None:
        self.published.append(instances)

    @property
    def latest(self) -> set[str]:
        return set(self.published[-1]) if self.published else set()


@pytest.fixture
async def registry(nats_client: Client) -> Registry:
    settings = RegistrySettings(bucket=f"mirror_{uuid.uuid4().hex[:8]}", ttl_seconds=300)
    return await Registry.open(nats_client.jetstream(), settings)


@contextlib.asynccontextmanager
async def mirroring(mirror: RegistryMirror) -> AsyncIterator[None]:
    task = asyncio.create_task(mirror.run())
    try:
        await asyncio.wait_for(mirror.wait_synced(), 10)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_mirror_follows_puts_and_deletes(registry: Registry) -> None:
    recorder = Recorder()

    async def open_registry() -> Registry:
        return registry

    mirror = RegistryMirror(open_registry, recorder, admit=trust().admit)
    a, b = instance("a", 5001), instance("b", 5002)
    await registry.put(a)

    async with mirroring(mirror):
        assert recorder.latest == {instance_key(a)}
        await registry.put(b)
        await wait_for(lambda: recorder.latest == {instance_key(a), instance_key(b)}, 10)
        await registry.remove(a)
        await wait_for(lambda: recorder.latest == {instance_key(b)}, 10)

        published = len(recorder.published)
        b.heartbeat_at.GetCurrentTime()
        await registry.put(b)  # a heartbeat: same routing data
        moved = instance("b", 5003)
        await registry.put(moved)
        await wait_for(lambda: mirror.instances[instance_key(b)].port == 5003, 10)
        assert len(recorder.published) == published + 1, "heartbeats publish nothing"


async def test_restart_drops_instances_deleted_meanwhile(registry: Registry) -> None:
    recorder = Recorder()

    async def open_registry() -> Registry:
        return registry

    mirror = RegistryMirror(open_registry, recorder, admit=trust().admit)
    a, b = instance("a", 5001), instance("b", 5002)
    await registry.put(a)
    async with mirroring(mirror):
        assert set(mirror.instances) == {instance_key(a)}

    # While the mirror is cut off: `a` goes, and so does every trace of its deletion.
    await registry.remove(a)
    await registry._kv.purge_deletes(olderthan=0)
    await registry.put(b)

    async with mirroring(mirror):
        assert set(mirror.instances) == {instance_key(b)}
        assert recorder.latest == {instance_key(b)}


async def test_mirror_retries_until_the_registry_opens(registry: Registry) -> None:
    recorder = Recorder()
    attempts = 0

    async def flaky_open() -> Registry:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RegistryError("NATS is still starting")
        return registry

    mirror = RegistryMirror(flaky_open, recorder, admit=trust().admit, retry_wait_max=0.05)
    await registry.put(instance("a", 5001))

    async with mirroring(mirror):
        assert attempts == 3
        assert recorder.latest == {"system.a"}


async def test_mirror_keeps_only_what_the_writer_owns(registry: Registry) -> None:
    recorder = Recorder()
    metrics = CollectorRegistry()

    async def open_registry() -> Registry:
        return registry

    mirror = RegistryMirror(open_registry, recorder, admit=trust(metrics).admit)
    greedy = ServiceInstance(
        service="system", instance_id="greedy", grpc_services=[SYSTEM_SERVICE, AUTH_SERVICE]
    )
    thief = ServiceInstance(service="system", instance_id="thief", grpc_services=[AUTH_SERVICE])
    impostor = ServiceInstance(service="auth", instance_id="x", grpc_services=[AUTH_SERVICE])
    await registry.put(greedy)
    async with mirroring(mirror):
        assert list(mirror.instances["system.greedy"].grpc_services) == [SYSTEM_SERVICE]
        await registry.put(thief)
        # Written under system's key, claiming to be auth's instance.
        await registry._kv.put("system.impostor", impostor.SerializeToString())
        await registry.put(instance("after", 5004))
        await wait_for(lambda: "system.after" in recorder.latest, 10)
        assert recorder.latest == {"system.greedy", "system.after"}

    def rejected(reason: str) -> float | None:
        return metrics.get_sample_value(
            "sutazai_gateway_registry_rejected_total", {"service": "system", "reason": reason}
        )

    # The watch replays what the listing read: an entry may be refused more than once.
    assert (rejected("not_owner") or 0) >= 2
    assert (rejected("key_mismatch") or 0) >= 1
