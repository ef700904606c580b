"""NATS permissions of tasks and agents (nats/README.md, "Tasks and agents"), on the real server.

Each principal does, with the client calls it really uses (nats-py 2.16), what the wire contract
gives it, and is refused the rest: an agent runs only its own instances' work, publishes only
its own reports, writes only its own heartbeats and sees no task queue; the services reach only
their streams and consumers. Shares the NATS of ``test_nats_permissions`` (module fixture).
"""

from __future__ import annotations

import uuid

import nats.errors
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy, RetentionPolicy

from sutazai.agents.v1.agent_service_pb2 import AgentHeartbeat
from sutazai.resources.v1.resource_service_pb2 import AllocateReply
from sutazai.runtime.jetstream import (
    DEAD_STREAM,
    REPORTS_STREAM,
    TASKS_STREAM,
    WORK_STREAM,
    JetStreamDeclarations,
    ensure_jetstream,
    work_consumer,
    work_subject,
)
from sutazai.runtime.settings import MeshSettings
from sutazai.tasks.v1.dispatch_pb2 import TaskAssignment, TaskDispatch, TaskReport
from tests.supervisor.test_nats_permissions import (
    AGENTS,
    _violation,
    connected,
    nats_mesh,
)

pytestmark = pytest.mark.integration

__all__ = ["nats_mesh"]

AGENT_IDS = [agent_id for agent in AGENTS for agent_id in agent.agent_ids]


async def test_the_supervisor_creates_the_task_streams_buckets_and_work_consumers(
    nats_mesh: MeshSettings,
) -> None:
    async with connected(nats_mesh, "admin") as admin:
        js = admin.client.jetstream()
        tasks = await js.stream_info(TASKS_STREAM)
        assert tasks.config.retention == RetentionPolicy.WORK_QUEUE
        assert tasks.config.subjects == [f"sutazai.tasks.queue.{p}" for p in range(4)]
        assert tasks.config.duplicate_window == 120
        assert (await js.stream_info(WORK_STREAM)).config.retention == RetentionPolicy.WORK_QUEUE
        reports = await js.stream_info(REPORTS_STREAM)
        assert reports.config.max_age == 7 * 24 * 3600
        assert (await js.stream_info(DEAD_STREAM)).config.max_age == 30 * 24 * 3600
        agents = await js.stream_info("KV_sutazai_agents")
        assert agents.config.max_age == 10
        assert agents.config.max_msgs_per_subject == 1
        assert (await js.stream_info("KV_sutazai_coordinator")).config.max_msgs_per_subject == 5
        for agent_id in AGENT_IDS:
            consumer = await js.consumer_info(WORK_STREAM, work_consumer(agent_id))
            assert consumer.config.filter_subject == work_subject(agent_id)
            assert consumer.config.ack_wait == 30
            assert consumer.config.max_deliver == 1000

        # Idempotent, and a limit changed by hand is brought back to the declaration.
        tasks.config.max_msgs = 5
        await js.update_stream(tasks.config)
        await ensure_jetstream(js, JetStreamDeclarations.packaged(), AGENT_IDS)
        assert (await js.stream_info(TASKS_STREAM)).config.max_msgs == 100_000
        assert admin.errors == []


async def test_an_agent_runs_its_own_work_and_nothing_else(nats_mesh: MeshSettings) -> None:
    task_id = str(uuid.uuid4())
    async with connected(nats_mesh, "admin") as admin, connected(nats_mesh, "scribe") as scribe:
        admin_js = admin.client.jetstream()
        assignment = TaskAssignment(task_id=task_id, attempt=1, type="text.summarize")
        await admin_js.publish(work_subject("scribe.1"), assignment.SerializeToString())
        await admin_js.publish(work_subject("other.1"), b"someone else's")

        js = scribe.client.jetstream(timeout=2.0)
        control = await scribe.client.subscribe("sutazai.control.scribe.1")
        kv = await js.key_value("sutazai_agents")
        await kv.put("scribe.1", AgentHeartbeat(agent_id="scribe.1").SerializeToString())
        work = await js.pull_subscribe(
            work_subject("scribe.1"), durable=work_consumer("scribe.1"), stream=WORK_STREAM
        )
        (message,) = await work.fetch(1, timeout=5)
        assert TaskAssignment.FromString(message.data).task_id == task_id
        await message.in_progress()
        report = TaskReport(task_id=task_id, attempt=1, agent_id="scribe.1")
        ack = await js.publish("sutazai.reports.agent.scribe.1", report.SerializeToString())
        assert ack.stream == REPORTS_STREAM
        await message.ack_sync()
        # Its grant: generation requests to the inference service (no responder here).
        with pytest.raises(nats.errors.NoRespondersError):
            await scribe.client.request("sutazai.inference.generate", b"", timeout=2)
        await control.unsubscribe()
        await scribe.settle()
        assert scribe.errors == []

        # A consumer gone (deleted) is created again by the agent, in the filtered form only.
        await admin_js.delete_consumer(WORK_STREAM, work_consumer("scribe.2"))
        await js.pull_subscribe(
            work_subject("scribe.2"),
            durable=work_consumer("scribe.2"),
            stream=WORK_STREAM,
            config=ConsumerConfig(ack_wait=30, max_deliver=1000),
        )
        assert scribe.errors == []
        await ensure_jetstream(admin_js, JetStreamDeclarations.packaged(), AGENT_IDS)
        await admin_js.purge_stream(WORK_STREAM)


async def test_an_agent_cannot_read_another_agents_work(nats_mesh: MeshSettings) -> None:
    async with connected(nats_mesh, "scribe") as scribe:
        for subject in (
            "$JS.API.CONSUMER.INFO.SUTAZAI_WORK.agent-other-1",
            "$JS.API.CONSUMER.MSG.NEXT.SUTAZAI_WORK.agent-other-1",
            "$JS.ACK.SUTAZAI_WORK.agent-other-1.1.1.1.1.1",
            # Its own consumer name with another agent's filter, or with none (the body's
            # filter is then not checked by the server), or the legacy durable form.
            "$JS.API.CONSUMER.CREATE.SUTAZAI_WORK.agent-scribe-1.sutazai.work.other.1",
            "$JS.API.CONSUMER.CREATE.SUTAZAI_WORK.agent-scribe-1",
            "$JS.API.CONSUMER.DURABLE.CREATE.SUTAZAI_WORK.agent-scribe-1",
            "$JS.API.CONSUMER.CREATE.SUTAZAI_WORK.agent-other-1.sutazai.work.other.1",
            # An instance it does not have.
            "$JS.API.CONSUMER.MSG.NEXT.SUTAZAI_WORK.agent-scribe-3",
            "$JS.API.CONSUMER.CREATE.SUTAZAI_WORK.agent-scribe-3.sutazai.work.scribe.3",
            "$JS.API.STREAM.MSG.GET.SUTAZAI_WORK",
            "$JS.API.DIRECT.GET.SUTAZAI_WORK",
            "$JS.API.STREAM.PURGE.SUTAZAI_WORK",
            "$JS.API.CONSUMER.DELETE.SUTAZAI_WORK.agent-other-1",
        ):
            assert await scribe.publish_denied(subject), subject
        for subject in ("sutazai.work.>", "sutazai.work.other.1", "sutazai.control.other.1"):
            assert await scribe.subscribe_denied(subject), subject
        with pytest.raises(nats.errors.Error):
            await scribe.client.jetstream(timeout=1.0).pull_subscribe(
                work_subject("other.1"), durable=work_consumer("other.1"), stream=WORK_STREAM
            )


async def test_an_agent_cannot_publish_another_agents_reports_or_heartbeats(
    nats_mesh: MeshSettings,
) -> None:
    async with connected(nats_mesh, "other") as other:
        for subject in (
            "sutazai.reports.agent.scribe.1",
            "sutazai.reports.agent.other.2",
            "sutazai.reports.coordinator",
            "sutazai.reports.tasks",
            "sutazai.dead.tasks",
            "sutazai.control.other.1",
            "$KV.sutazai_agents.scribe.1",
            "$KV.sutazai_agents.other.2",
            # No registry, no coordinator state, no inference without the grant.
            f"$KV.{nats_mesh.registry.bucket}.other.x",
            "$KV.sutazai_coordinator.strategy",
            "$KV.sutazai_coordinator.assignment.x",
            "sutazai.inference.generate",
            "sutazai.resources.allocate",
        ):
            assert await other.publish_denied(subject), subject
        assert not await other.publish_denied("sutazai.reports.agent.other.1")
        assert not await other.publish_denied("$KV.sutazai_agents.other.1")


async def test_an_agent_cannot_read_task_queues_or_reports(nats_mesh: MeshSettings) -> None:
    async with connected(nats_mesh, "scribe") as scribe:
        for subject in (
            "sutazai.tasks.queue.3",
            "$JS.API.STREAM.INFO.SUTAZAI_TASKS",
            "$JS.API.CONSUMER.MSG.NEXT.SUTAZAI_TASKS.coordinator",
            "$JS.API.CONSUMER.CREATE.SUTAZAI_TASKS.spy",
            "$JS.API.CONSUMER.CREATE.SUTAZAI_REPORTS.spy",
            "$JS.API.CONSUMER.MSG.NEXT.SUTAZAI_REPORTS.tasks",
            "$JS.API.STREAM.MSG.GET.SUTAZAI_TASKS",
            "$JS.API.DIRECT.GET.SUTAZAI_DEAD",
            "$JS.API.STREAM.MSG.GET.KV_sutazai_coordinator",
            "$JS.API.STREAM.LIST",
        ):
            assert await scribe.publish_denied(subject), subject
        for subject in ("sutazai.tasks.queue.>", "sutazai.reports.>", "sutazai.dead.tasks"):
            assert await scribe.subscribe_denied(subject), subject


async def test_the_task_service_dispatches_reads_reports_and_deletes_dead_letters(
    nats_mesh: MeshSettings,
) -> None:
    task_id = str(uuid.uuid4())
    async with connected(nats_mesh, "admin") as admin, connected(nats_mesh, "tasks") as tasks:
        js = tasks.client.jetstream(timeout=2.0)
        dispatch = TaskDispatch(task_id=task_id, attempt=1, type="text.summarize", priority=2)
        ack = await js.publish(
            "sutazai.tasks.queue.2",
            dispatch.SerializeToString(),
            headers={"Nats-Msg-Id": f"{task_id}.1"},
        )
        assert ack.stream == TASKS_STREAM
        await js.publish("sutazai.reports.tasks", TaskReport(task_id=task_id).SerializeToString())
        reports = await js.pull_subscribe(
            "sutazai.reports.>",
            durable="tasks",
            stream=REPORTS_STREAM,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        for message in await reports.fetch(1, timeout=5):
            await message.ack_sync()
        dead = await admin.client.jetstream().publish(
            "sutazai.dead.tasks", dispatch.SerializeToString()
        )
        assert (await js.get_msg(DEAD_STREAM, dead.seq)).data == dispatch.SerializeToString()
        assert await js.delete_msg(DEAD_STREAM, dead.seq)
        await tasks.settle()
        assert tasks.errors == []
        for subject in (
            "sutazai.work.scribe.1",
            "sutazai.reports.coordinator",
            "sutazai.dead.tasks",
            "$JS.API.CONSUMER.MSG.NEXT.SUTAZAI_TASKS.coordinator",
            "$JS.API.CONSUMER.MSG.NEXT.SUTAZAI_REPORTS.coordinator",
            "$KV.sutazai_coordinator.strategy",
        ):
            assert await tasks.publish_denied(subject), subject
        await admin.client.jetstream().purge_stream(TASKS_STREAM)


async def test_the_coordinator_and_its_responders(nats_mesh: MeshSettings) -> None:
    task_id = str(uuid.uuid4())
    async with (
        connected(nats_mesh, "admin") as admin,
        connected(nats_mesh, "coordinator") as coordinator,
        connected(nats_mesh, "resources") as resources,
        connected(nats_mesh, "inference") as inference,
        connected(nats_mesh, "scribe") as scribe,
    ):

        async def allocate(message: nats.aio.msg.Msg) -> None:
            await message.respond(AllocateReply().SerializeToString())

        async def generate(message: nats.aio.msg.Msg) -> None:
            await message.respond(b"generated")

        await resources.client.subscribe("sutazai.resources.allocate", "resources", cb=allocate)
        await resources.client.subscribe("sutazai.resources.release", "resources", cb=allocate)
        await inference.client.subscribe("sutazai.inference.generate", "inference", cb=generate)
        await resources.settle()
        await inference.settle()

        dispatch = TaskDispatch(task_id=task_id, attempt=1, type="text.summarize", priority=1)
        await admin.client.jetstream().publish(
            "sutazai.tasks.queue.1", dispatch.SerializeToString()
        )
        js = coordinator.client.jetstream(timeout=2.0)
        queue = await js.pull_subscribe(
            "sutazai.tasks.queue.*", durable="coordinator", stream=TASKS_STREAM
        )
        (message,) = await queue.fetch(1, timeout=5)
        await message.in_progress()
        for subject, data in (
            (work_subject("scribe.1"), b"assignment"),
            ("sutazai.reports.coordinator", b"report"),
            ("sutazai.dead.tasks", b"dead"),
            ("sutazai.tasks.queue.0", b"retry"),
        ):
            await js.publish(subject, data)
        await message.ack_sync()
        await coordinator.client.publish("sutazai.control.scribe.1", b"cancel")
        await js.pull_subscribe(
            "sutazai.reports.agent.>", durable="coordinator", stream=REPORTS_STREAM
        )
        state = await js.key_value("sutazai_coordinator")
        await state.put("strategy", b"s")
        assert (await state.get("strategy")).value == b"s"
        watch = await state.watch("assignment.>")
        await watch.stop()
        agents = await js.key_value("sutazai_agents")
        await (await agents.watch(">")).stop()
        for stream in (TASKS_STREAM, WORK_STREAM, REPORTS_STREAM, DEAD_STREAM):
            await js.stream_info(stream)
            await js.consumers_info(stream)
        assert await js.purge_stream(WORK_STREAM, subject=work_subject("scribe.1"))
        reply = await coordinator.client.request("sutazai.resources.allocate", b"", timeout=2)
        assert AllocateReply.FromString(reply.data) == AllocateReply()
        await coordinator.client.request("sutazai.resources.release", b"", timeout=2)
        generated = await scribe.client.request("sutazai.inference.generate", b"", timeout=2)
        assert generated.data == b"generated"
        for session in (coordinator, resources, inference, scribe):
            await session.settle()
            assert session.errors == []

        for subject in (
            "$KV.sutazai_agents.scribe.1",
            "sutazai.reports.agent.scribe.1",
            "sutazai.reports.tasks",
            "$JS.API.STREAM.CREATE.SUTAZAI_SCRATCH",
            "$JS.API.STREAM.PURGE.SUTAZAI_TASKS",
            "$JS.API.STREAM.MSG.DELETE.SUTAZAI_DEAD",
            "$JS.API.CONSUMER.MSG.NEXT.SUTAZAI_WORK.agent-scribe-1",
            "$JS.API.CONSUMER.MSG.NEXT.SUTAZAI_REPORTS.tasks",
            "sutazai.inference.generate",
        ):
            assert await coordinator.publish_denied(subject), subject
        # Responders answer only the requests they receive: no other inbox, no subject.
        for session in (resources, inference):
            for subject in ("_INBOX.coordinator.x", "_INBOX.scribe.x", "sutazai.reports.tasks"):
                assert await session.publish_denied(subject), subject
        assert await resources.subscribe_denied("sutazai.inference.generate")
        assert await inference.subscribe_denied("sutazai.resources.allocate")
        await admin.client.jetstream().purge_stream(WORK_STREAM)
        await admin.client.jetstream().purge_stream(DEAD_STREAM)


async def test_a_denied_consumer_request_reports_the_subject(nats_mesh: MeshSettings) -> None:
    # The names nats-py really asks for (checked above by the calls themselves) are what the
    # permission errors name: a sanity check of _violation on one JetStream API call.
    async with connected(nats_mesh, "other") as other:
        with pytest.raises(nats.errors.Error):
            await other.client.jetstream(timeout=1.0).stream_info(TASKS_STREAM)
        await other.settle()
        assert _violation(other.errors, "publish", "$JS.API.STREAM.INFO.SUTAZAI_TASKS")
