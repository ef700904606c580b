"""gRPC handlers of the coordinator service: CoordinatorService and AgentService.

They validate, then read the :class:`~.engine.Coordinator` and the
:class:`~.agents.AgentDirectory` of this instance. A NATS failure is UNAVAILABLE (retry).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Final

import grpc
import nats.errors

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.agents.v1 import agent_service_pb2_grpc as agents_grpc
from sutazai.coordinator.v1 import coordinator_service_pb2 as pb
from sutazai.coordinator.v1 import coordinator_service_pb2_grpc as pb_grpc
from sutazai.runtime.auth import require_identity
from sutazai.runtime.faults import invalid_argument, not_found, resource_exhausted, unavailable
from sutazai.runtime.jetstream import split_agent_id
from sutazai.services.coordinator.agents import MAX_WATCHERS, AgentDirectory
from sutazai.services.coordinator.engine import FROM_PROTO, Coordinator

KEEPALIVE_SECONDS: Final = 30.0
"""Silence after which a WatchAgents stream gets an empty message (the edge's idle limit)."""
MAX_AGENT_ID: Final = 128
RETRY_SECONDS: Final = 1.0


@contextlib.contextmanager
def _nats_call(what: str) -> Iterator[None]:
    try:
        yield
    except (nats.errors.Error, TimeoutError) as exc:
        raise unavailable(f"{what}: NATS does not answer now", RETRY_SECONDS) from exc


class CoordinatorHandlers(pb_grpc.CoordinatorServiceServicer):
    """Strategy, statistics and streams of task dispatch, for operators."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator

    async def GetStrategy(  # noqa: N802 - generated servicer method name
        self, request: pb.GetStrategyRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStrategyResponse:
        """The strategy in force."""
        return self._coordinator.strategy

    async def SetStrategy(  # noqa: N802 - generated servicer method name
        self, request: pb.SetStrategyRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetStrategyResponse:
        """Store a new strategy (audited by the guard: the method is declared so)."""
        if request.strategy not in FROM_PROTO:
            names = ", ".join(pb.Strategy.Name(s) for s in FROM_PROTO)
            raise invalid_argument({"strategy": f"must be one of {names}"})
        identity = require_identity()
        with _nats_call("the strategy cannot be stored"):
            record = await self._coordinator.set_strategy(request.strategy, identity.username)
        return pb.SetStrategyResponse(strategy=record.strategy)

    async def GetStats(  # noqa: N802 - generated servicer method name
        self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStatsResponse:
        """Queue depth, in flight, throughput, failures, dead letters."""
        stats = self._coordinator.stats()
        with _nats_call("the dead-letter stream cannot be read"):
            stats.dead_letters = await self._coordinator.dead_letters()
        return stats

    async def ListStreams(  # noqa: N802 - generated servicer method name
        self, request: pb.ListStreamsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListStreamsResponse:
        """The task streams and their consumers."""
        with _nats_call("the streams cannot be read"):
            return await self._coordinator.streams()


class AgentHandlers(agents_grpc.AgentServiceServicer):
    """The agent registry, for any signed-in caller."""

    def __init__(
        self, directory: AgentDirectory, *, keepalive_seconds: float = KEEPALIVE_SECONDS
    ) -> None:
        self._directory = directory
        self._keepalive = keepalive_seconds
        self._draining = asyncio.Event()

    def drain(self) -> None:
        """End every watch stream (the instance is shutting down; clients reconnect)."""
        self._draining.set()

    async def ListAgents(  # noqa: N802 - generated servicer method name
        self, request: agents_pb.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.ListAgentsResponse:
        """Every known agent instance, online first."""
        return agents_pb.ListAgentsResponse(agents=self._directory.listing())

    async def GetAgent(  # noqa: N802 - generated servicer method name
        self, request: agents_pb.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.GetAgentResponse:
        """One agent instance; NOT_FOUND when unknown."""
        agent_id = request.agent_id
        if len(agent_id) > MAX_AGENT_ID or split_agent_id(agent_id) is None:
            raise invalid_argument({"agent_id": "must be <agent name>.<instance>, e.g. text.1"})
        agent = self._directory.get(agent_id)
        if agent is None:
            raise not_found("agent", agent_id)
        return agents_pb.GetAgentResponse(agent=agent)

    async def WatchAgents(  # noqa: N802 - generated servicer method name
        self, request: agents_pb.WatchAgentsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agents_pb.WatchAgentsResponse]:
        """Every known instance (``snapshot``), then each change.

        An empty message after 30 s of silence keeps the stream open through the edge.
        """
        if self._directory.watchers >= MAX_WATCHERS:
            raise resource_exhausted(
                f"at most {MAX_WATCHERS} agent watches at a time", retry_after_seconds=5
            )
        async with self._directory.subscribe() as (snapshot, changes):
            for agent in snapshot:
                yield agents_pb.WatchAgentsResponse(agent=agent, snapshot=True)
            if not snapshot:
                yield agents_pb.WatchAgentsResponse(snapshot=True)
            draining = asyncio.ensure_future(self._draining.wait())
            try:
                while not self._draining.is_set():
                    change = asyncio.ensure_future(changes.get())
                    done, _ = await asyncio.wait(
                        {change, draining},
                        timeout=self._keepalive,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if change not in done:
                        change.cancel()
                        if draining in done:
                            return
                        yield agents_pb.WatchAgentsResponse()
                        continue
                    changed = change.result()
                    if changed is None:
                        return  # fell behind: the client reconnects for a fresh snapshot
                    yield agents_pb.WatchAgentsResponse(agent=changed)
            finally:
                draining.cancel()
