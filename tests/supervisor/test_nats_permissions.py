"""Per-principal NATS credentials and subject permissions, on the real embedded server.

The server runs with the services ``alpha``, ``beta``, ``auth`` (the one that writes revocations)
and those of tasks and agents (``tasks``, ``coordinator``, ``resources``, ``inference``), two
agents (``scribe`` with two instances and the ``inference_call`` grant, ``other`` with one),
besides ``admin`` and ``gateway``; the task streams and buckets of ``nats/jetstream.toml``.
A denied publish or subscription is reported by the server as an asynchronous ``-ERR``; nats-py
hands it to the error callback while reading, in order with the server's other replies. So once
a PING sent after the publish is answered, the ``-ERR`` (if any) has been read, and the checks
below need no waiting on time (see :meth:`Session.settle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js.api import KeyValueConfig

from sutazai.ops.supervisor.components.nats import nats_component
from sutazai.ops.supervisor.environment import child_environment
from sutazai.ops.supervisor.nats_auth import Policy
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.deployment import AgentEntry
from sutazai.runtime.errors import RegistryError
from sutazai.runtime.registry import Registry
from sutazai.runtime.revocations import ensure_bucket
from sutazai.runtime.settings import MeshSettings
from tests.harness import MeshPorts, build_settings, new_state_dir, remove_state_dir, supervised

pytestmark = pytest.mark.integration

SERVICES = ("alpha", "beta", "auth", "tasks", "coordinator", "resources", "inference")
PACKAGED = Policy.packaged()
POLICY = dataclasses.replace(
    PACKAGED,
    # What the task and resource services take with their entry in deploy/mesh.toml (see
    # permissions.toml, [service_grants]).
    service_grants={
        **PACKAGED.service_grants,
        "tasks": ("tasks_dispatch", "tasks_reports", "dead_letters"),
        "resources": ("resources_answer",),
    },
)
AGENTS = (
    AgentEntry("scribe", module="unused", instances=2, grants=("inference_call",)),
    AgentEntry("other", module="unused", instances=1),
)


@pytest.fixture(scope="module")
async def nats_mesh() -> AsyncIterator[MeshSettings]:
    """An embedded NATS with the principals of SERVICES and AGENTS, admin and gateway."""
    state_dir = new_state_dir()
    try:
        settings = build_settings(state_dir, MeshPorts.pick(), services=SERVICES, agents=AGENTS)
        component = nats_component(
            settings, child_environment(settings), services=SERVICES, agents=AGENTS, policy=POLICY
        )
        async with supervised(settings, [component]):
            yield settings
    finally:
        remove_state_dir(state_dir)


@dataclass
class Session:
    """A connection as one principal, with the permission errors the server reported."""

    client: NatsClient
    errors: list[str] = field(default_factory=list)

    async def settle(self) -> None:
        """Return once the server has answered everything sent so far."""
        # nats-py writes a flush's PING straight to the socket, ahead of publishes still
        # buffered for its flusher task; the first flush gets those written, the second one's
        # PONG then comes after the server's reply to them.
        await self.client.flush()
        await self.client.flush()

    async def publish_denied(self, subject: str) -> bool:
        """Publish once; whether the server refused it."""
        seen = len(self.errors)
        await self.client.publish(subject, b"probe")
        await self.settle()
        return _violation(self.errors[seen:], "publish", subject)

    async def subscribe_denied(self, subject: str) -> bool:
        """Subscribe (then unsubscribe); whether the server refused it."""
        seen = len(self.errors)
        subscription = await self.client.subscribe(subject)
        await self.settle()
        await subscription.unsubscribe()
        return _violation(self.errors[seen:], "subscription", subject)


def _violation(errors: list[str], kind: str, subject: str) -> bool:
    # nats-py lower-cases the server's message.
    wanted = f'permissions violation for {kind} to "{subject}"'.lower()
    return any(wanted in error for error in errors)


@contextlib.asynccontextmanager
async def connected(settings: MeshSettings, principal: str) -> AsyncIterator[Session]:
    """A session as ``principal``, with its password from the secrets file and its inbox."""
    as_principal = settings.as_principal(principal)
    credentials = as_principal.nats_credentials
    assert credentials is not None
    session = Session(NatsClient())

    async def record(error: Exception) -> None:
        session.errors.append(str(error))

    await session.client.connect(
        servers=as_principal.nats_servers,
        user=credentials[0],
        password=credentials[1],
        inbox_prefix=as_principal.nats.inbox_prefix,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=2,
        error_cb=record,
    )
    try:
        yield session
    finally:
        await session.client.close()


async def open_registry(settings: MeshSettings, session: Session) -> Registry:
    # A short API timeout: a denied request is never answered, and the test waits for that.
    return await Registry.open(session.client.jetstream(timeout=1.0), settings.registry)


def instance(service: str) -> ServiceInstance:
    return ServiceInstance(service=service, instance_id=uuid.uuid4().hex[:12], host="127.0.0.1")


def kv_subject(settings: MeshSettings, key: str) -> str:
    return f"$KV.{settings.registry.bucket}.{key}"


def stream(settings: MeshSettings) -> str:
    return f"KV_{settings.registry.bucket}"


async def registered(settings: MeshSettings, key: str) -> bool:
    async with connected(settings, "admin") as admin:
        registry = await open_registry(settings, admin)
        return any(f"{i.service}.{i.instance_id}" == key for i in await registry.list())


async def test_the_supervisor_creates_the_registry_bucket_as_admin(
    nats_mesh: MeshSettings,
) -> None:
    async with connected(nats_mesh, "admin") as admin:
        info = await admin.client.jetstream().stream_info(stream(nats_mesh))
    assert info.config.subjects == [f"$KV.{nats_mesh.registry.bucket}.>"]


async def test_a_service_registers_reads_and_deregisters_its_own_instances(
    nats_mesh: MeshSettings,
) -> None:
    mine = instance("alpha")
    key = f"alpha.{mine.instance_id}"
    async with connected(nats_mesh, "alpha") as alpha:
        registry = await open_registry(nats_mesh, alpha)
        await registry.put(mine)
        assert key in {f"{i.service}.{i.instance_id}" for i in await registry.list()}
        kv = await alpha.client.jetstream().key_value(nats_mesh.registry.bucket)
        assert (await kv.get(key)).value == mine.SerializeToString()
        await alpha.client.jetstream().account_info()
        await registry.remove(mine)
        assert alpha.errors == []
    assert not await registered(nats_mesh, key)


async def test_a_service_cannot_write_another_services_entries(nats_mesh: MeshSettings) -> None:
    theirs = instance("beta")
    key = f"beta.{theirs.instance_id}"
    async with connected(nats_mesh, "alpha") as alpha:
        registry = await open_registry(nats_mesh, alpha)
        with pytest.raises(RegistryError, match="cannot register"):
            await registry.put(theirs)
        assert _violation(alpha.errors, "publish", kv_subject(nats_mesh, key))
        for other in ("beta.x", "gateway.x", "admin.x", "alpha"):
            assert await alpha.publish_denied(kv_subject(nats_mesh, other)), other
    assert not await registered(nats_mesh, key)


async def test_the_gateway_reads_and_watches_but_cannot_write(nats_mesh: MeshSettings) -> None:
    live = instance("alpha")
    key = f"alpha.{live.instance_id}"
    async with connected(nats_mesh, "gateway") as gateway, connected(nats_mesh, "alpha") as alpha:
        registry = await open_registry(nats_mesh, gateway)
        events = registry.watch()
        await (await open_registry(nats_mesh, alpha)).put(live)
        async with asyncio.timeout(10):
            async for event in events:
                if event.key == key:
                    assert event.instance == live
                    break
        await events.aclose()
        assert key in {f"{i.service}.{i.instance_id}" for i in await registry.list()}
        kv = await gateway.client.jetstream().key_value(nats_mesh.registry.bucket)
        assert (await kv.get(key)).value == live.SerializeToString()
        # The flow-control replies of its watch consumers are allowed too.
        assert not await gateway.publish_denied(f"$JS.FC.{stream(nats_mesh)}.consumer.1")
        assert gateway.errors == []

        with pytest.raises(RegistryError, match="cannot register"):
            await registry.put(instance("gateway"))
        for target in (key, "gateway.x", "alpha.x"):
            assert await gateway.publish_denied(kv_subject(nats_mesh, target)), target
        assert await gateway.publish_denied("$JS.API.INFO")


async def test_only_auth_writes_revocations_and_every_principal_watches_them(
    nats_mesh: MeshSettings,
) -> None:
    bucket = nats_mesh.auth.revocations_bucket
    async with (
        connected(nats_mesh, "auth") as auth,
        connected(nats_mesh, "alpha") as alpha,
        connected(nats_mesh, "gateway") as gateway,
    ):
        watchers = []
        for reader in (alpha, gateway):
            kv = await reader.client.jetstream(timeout=1.0).key_value(bucket)
            watchers.append(await kv.watch("account.u1"))
        writer = await auth.client.jetstream(timeout=1.0).key_value(bucket)
        await writer.put("account.u1", b'{"after": 1}')
        async with asyncio.timeout(10):
            for watcher in watchers:
                async for entry in watcher:
                    if entry is not None and entry.value == b'{"after": 1}':
                        break
                await watcher.stop()
        assert auth.errors == alpha.errors == gateway.errors == []
        for session in (alpha, gateway):
            for key in ("account.u1", "token.x"):
                assert await session.publish_denied(f"$KV.{bucket}.{key}"), key
        # The auth service writes only revocations besides its own registry entries.
        assert await auth.publish_denied(kv_subject(nats_mesh, "alpha.x"))


async def test_only_admin_creates_deletes_or_purges_streams(nats_mesh: MeshSettings) -> None:
    registry_stream = stream(nats_mesh)
    for principal in ("gateway", "alpha"):
        async with connected(nats_mesh, principal) as session:
            for subject in (
                "$JS.API.STREAM.CREATE.KV_scratch",
                f"$JS.API.STREAM.CREATE.{registry_stream}",
                f"$JS.API.STREAM.UPDATE.{registry_stream}",
                f"$JS.API.STREAM.DELETE.{registry_stream}",
                f"$JS.API.STREAM.PURGE.{registry_stream}",
                f"$JS.API.STREAM.MSG.DELETE.{registry_stream}",
                f"$JS.API.CONSUMER.DELETE.{registry_stream}.any",
                "$JS.API.STREAM.LIST",
            ):
                assert await session.publish_denied(subject), (principal, subject)
            with pytest.raises(NatsError):
                await session.client.jetstream(timeout=1.0).create_key_value(
                    KeyValueConfig(bucket="scratch")
                )
    async with connected(nats_mesh, "admin") as admin:
        js = admin.client.jetstream()
        await js.create_key_value(KeyValueConfig(bucket="scratch"))
        assert await js.delete_key_value("scratch")
        assert admin.errors == []


async def test_each_principal_reads_only_its_own_inbox(nats_mesh: MeshSettings) -> None:
    async with connected(nats_mesh, "gateway") as gateway:
        for subject in (
            "_INBOX.alpha.>",
            "_INBOX.>",
            "_INBOX.x",
            f"$KV.{nats_mesh.registry.bucket}.>",
            ">",
        ):
            assert await gateway.subscribe_denied(subject), subject
        assert not await gateway.subscribe_denied("_INBOX.gateway.mine")
    async with connected(nats_mesh, "alpha") as alpha:
        assert await alpha.subscribe_denied("_INBOX.gateway.>")
        assert not await alpha.subscribe_denied("_INBOX.alpha.>")


async def test_principals_need_their_own_password(nats_mesh: MeshSettings) -> None:
    secrets = nats_mesh.secrets
    passwords = secrets.nats_passwords
    assert len(set(passwords.values())) == len(passwords) == 2 + len(SERVICES) + len(AGENTS)
    for user, password in (
        ("alpha", secrets.nats_password("beta")),
        ("gateway", secrets.nats_password("admin")),
        ("nobody", secrets.nats_password("admin")),
    ):
        client = NatsClient()

        async def quiet(_: Exception) -> None:
            return None

        try:
            with pytest.raises(NatsError, match="Authorization Violation"):
                await client.connect(
                    servers=nats_mesh.nats_servers,
                    user=user,
                    password=password,
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                    connect_timeout=2,
                    error_cb=quiet,
                )
        finally:
            await client.close()


async def test_the_config_names_each_principal_once(nats_mesh: MeshSettings) -> None:
    config = (nats_mesh.state_dir / "nats" / "nats-server.conf").read_text()
    for principal in ("admin", "gateway", *SERVICES, *(a.name for a in AGENTS)):
        assert config.count(f'"user": "{principal}"') == 1


async def test_the_revocation_bucket_outlives_every_token_it_can_refuse(
    nats_mesh: MeshSettings,
) -> None:
    async with connected(nats_mesh, "admin") as admin:
        js = admin.client.jetstream()
        stream_name = f"KV_{nats_mesh.auth.revocations_bucket}"
        created = await js.stream_info(stream_name)
        assert created.config.max_age == nats_mesh.auth.revocation_max_age_seconds
        # A longer access-token lifetime widens the bucket's max_age at the next start.
        longer = nats_mesh.auth.model_copy(update={"access_ttl_seconds": 1800})
        await ensure_bucket(js, longer)
        assert (
            await js.stream_info(stream_name)
        ).config.max_age == longer.revocation_max_age_seconds
        # A shorter one never narrows it: entries of tokens issued before must stay.
        await ensure_bucket(js, nats_mesh.auth)
        assert (
            await js.stream_info(stream_name)
        ).config.max_age == longer.revocation_max_age_seconds
