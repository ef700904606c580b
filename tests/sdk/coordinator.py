"""A test playing the coordinator: assigns work to one agent instance and reads its reports."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import struct_pb2
from nats.aio.client import Client
from nats.js.api import DeliverPolicy

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.sdk import subjects
from sutazai.tasks.v1 import dispatch_pb2 as pb
from tests.harness.waiting import wait_for

FINAL = frozenset({"succeeded", "failed", "cancelled"})


class Coordinator:
    """Assignments to ``<name>.<instance>`` and every report it publishes (read from the stream)."""

    def __init__(self, nc: Client, name: str, instance: str) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.name = name
        self.instance = instance
        self.reports: list[pb.TaskReport] = []
        self._subscription: Any = None

    async def start(self) -> None:
        async def received(message: Any) -> None:
            self.reports.append(pb.TaskReport.FromString(message.data))

        self._subscription = await self.js.subscribe(
            subjects.report_subject(self.name, self.instance),
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            cb=received,
        )

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()

    async def assign(
        self,
        task_type: str,
        payload: dict[str, Any] | None = None,
        *,
        task_id: str | None = None,
        attempt: int = 1,
        deadline_seconds: float = 60.0,
        msg_id: str | None = None,
    ) -> str:
        task_id = task_id or str(uuid.uuid4())
        body = struct_pb2.Struct()
        body.update(payload or {})
        assignment = pb.TaskAssignment(
            task_id=task_id, attempt=attempt, type=task_type, payload=body
        )
        assignment.deadline.FromDatetime(datetime.now(UTC) + timedelta(seconds=deadline_seconds))
        await self.js.publish(
            subjects.work_subject(self.name, self.instance),
            assignment.SerializeToString(),
            headers={"Nats-Msg-Id": msg_id or f"{task_id}.{attempt}"},
        )
        return task_id

    async def cancel(self, task_id: str, attempt: int = 1) -> None:
        control = pb.TaskControl(
            task_id=task_id, attempt=attempt, cancel=pb.TaskCancelRequested(reason="test")
        )
        await self.nc.publish(
            subjects.control_subject(self.name, self.instance), control.SerializeToString()
        )
        await self.nc.flush()

    def of(self, task_id: str, event: str | None = None) -> list[pb.TaskReport]:
        return [
            r
            for r in self.reports
            if r.task_id == task_id and (event is None or r.WhichOneof("event") == event)
        ]

    async def event(
        self,
        task_id: str,
        event: str,
        timeout: float = 30.0,  # noqa: ASYNC109 - a polling deadline
    ) -> pb.TaskReport:
        await wait_for(lambda: bool(self.of(task_id, event)), timeout=timeout, message=event)
        return self.of(task_id, event)[0]

    async def final(
        self,
        task_id: str,
        timeout: float = 30.0,  # noqa: ASYNC109 - a polling deadline
    ) -> pb.TaskReport:
        def finals() -> list[pb.TaskReport]:
            return [r for r in self.of(task_id) if r.WhichOneof("event") in FINAL]

        await wait_for(lambda: bool(finals()), timeout=timeout, message=f"final of {task_id}")
        return finals()[0]

    async def final_of(
        self,
        task_id: str,
        attempt: int,
        timeout: float = 30.0,  # noqa: ASYNC109 - a polling deadline
    ) -> pb.TaskReport:
        """The final report of one attempt."""

        def finals() -> list[pb.TaskReport]:
            return [
                r
                for r in self.of(task_id)
                if r.attempt == attempt and r.WhichOneof("event") in FINAL
            ]

        await wait_for(lambda: bool(finals()), timeout=timeout, message=f"final of {task_id}")
        return finals()[0]

    async def heartbeat(self) -> agents_pb.AgentHeartbeat | None:
        kv = await self.js.key_value(subjects.AGENTS_BUCKET)
        try:
            entry = await kv.get(subjects.agent_id(self.name, self.instance))
        except Exception:
            return None
        if not entry.value:
            return None
        return agents_pb.AgentHeartbeat.FromString(entry.value)

    async def settled(self) -> bool:
        """Whether nothing is left for the instance: every assignment acknowledged."""
        info = await self.js.consumer_info(
            subjects.WORK_STREAM, subjects.consumer_name(self.name, self.instance)
        )
        return info.num_pending == 0 and info.num_ack_pending == 0


async def sleep_forever() -> None:
    await asyncio.Event().wait()
