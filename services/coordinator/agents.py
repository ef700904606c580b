"""The agent registry as the coordinator sees it: the ``sutazai_agents`` bucket, watched.

Every instance of the coordinator service keeps one :class:`AgentDirectory` (the AgentService
answers from it), fed by a watch of the bucket: a put is a heartbeat, a delete (the instance
stopped) or an expiry marker (it went silent for the bucket's TTL) makes it OFFLINE. An
OFFLINE instance keeps its last heartbeat (listing shows what it was) until it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

from sutazai.agents.v1.agent_service_pb2 import (
    AGENT_STATE_DRAINING,
    AGENT_STATE_OFFLINE,
    AGENT_STATE_ONLINE,
    Agent,
    AgentHeartbeat,
)
from sutazai.runtime.deployment import ANY_TASK_TYPE, TaskTypes
from sutazai.services.coordinator.domain import AgentView

MAX_CAPABILITIES = 64
"""Capabilities of one heartbeat taken into account (the bucket bounds a value's size)."""
MAX_WATCHERS = 64
"""Concurrent WatchAgents streams of one instance."""
WATCH_BUFFER = 1024
"""Changes buffered for one slow watcher before its stream is ended (it may reconnect)."""

_STATE_ORDER = {AGENT_STATE_ONLINE: 0, AGENT_STATE_DRAINING: 1, AGENT_STATE_OFFLINE: 2}

Listener = Callable[[str, bool], None]
"""Called with an agent id and whether it is online now, after each change."""


def to_agent(heartbeat: AgentHeartbeat, *, offline: bool) -> Agent:
    """The Agent message of a heartbeat: OFFLINE when expired, else its own state."""
    state = AGENT_STATE_OFFLINE if offline else heartbeat.state or AGENT_STATE_ONLINE
    if state not in _STATE_ORDER:
        state = AGENT_STATE_ONLINE
    load = (
        min(1.0, heartbeat.running / heartbeat.max_concurrency)
        if heartbeat.max_concurrency
        else 0.0
    )
    return Agent(heartbeat=heartbeat, state=state, load=0.0 if offline else load)


def _comparable(agent: Agent) -> bytes:
    """The agent without its heartbeat time: what a watcher is told about when it changes."""
    copy = Agent()
    copy.CopyFrom(agent)
    copy.heartbeat.ClearField("heartbeat_at")
    return copy.SerializeToString(deterministic=True)


class AgentDirectory:
    """Known agent instances, their latest state, and the watchers of changes.

    ``task_types`` maps agent names (the ``<name>`` of ``<name>.<instance>``, the principal
    whose NATS credentials alone may write that key) to what each may run; a name it lacks
    runs nothing. ``None``: no restriction (a directory for tests of the scheduler).
    """

    def __init__(self, task_types: Mapping[str, TaskTypes] | None = None) -> None:
        self._task_types = task_types
        self._agents: dict[str, Agent] = {}
        self._watchers: set[asyncio.Queue[Agent | None]] = set()
        self._listeners: list[Listener] = []
        self.ready = asyncio.Event()
        """Set once the bucket's current entries are loaded."""

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` after every change (the coordinator's scheduler)."""
        self._listeners.append(listener)

    def put(self, agent_id: str, heartbeat: AgentHeartbeat) -> None:
        """A heartbeat of ``agent_id`` (the bucket key, which only that agent may write)."""
        heartbeat.agent_id = agent_id
        if len(heartbeat.capabilities) > MAX_CAPABILITIES:
            del heartbeat.capabilities[MAX_CAPABILITIES:]
        self._set(agent_id, to_agent(heartbeat, offline=False))

    def gone(self, agent_id: str) -> None:
        """``agent_id``'s key was deleted or expired: OFFLINE, its last heartbeat kept."""
        previous = self._agents.get(agent_id)
        heartbeat = (
            previous.heartbeat if previous is not None else AgentHeartbeat(agent_id=agent_id)
        )
        self._set(agent_id, to_agent(heartbeat, offline=True))

    def _set(self, agent_id: str, agent: Agent) -> None:
        previous = self._agents.get(agent_id)
        self._agents[agent_id] = agent
        changed = previous is None or _comparable(previous) != _comparable(agent)
        if changed:
            for queue in list(self._watchers):
                try:
                    queue.put_nowait(agent)
                except asyncio.QueueFull:
                    # A watcher this far behind is ended; it may reconnect for a fresh snapshot.
                    self._watchers.discard(queue)
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                    queue.put_nowait(None)
        online = agent.state == AGENT_STATE_ONLINE
        for listener in self._listeners:
            listener(agent_id, online)

    def get(self, agent_id: str) -> Agent | None:
        """The agent instance, if known."""
        return self._agents.get(agent_id)

    def listing(self) -> list[Agent]:
        """Every known instance: online first, then draining, then offline; by id within."""
        return sorted(
            self._agents.values(),
            key=lambda a: (_STATE_ORDER.get(a.state, 3), a.heartbeat.agent_id),
        )

    def is_online(self, agent_id: str) -> bool:
        """Whether the instance heartbeats (online or draining): its work is not lost."""
        agent = self._agents.get(agent_id)
        return agent is not None and agent.state != AGENT_STATE_OFFLINE

    def task_types(self, agent_id: str) -> TaskTypes:
        """What the deployment lets ``agent_id`` run."""
        if self._task_types is None:
            return ANY_TASK_TYPE
        return self._task_types.get(agent_id.partition(".")[0], TaskTypes())

    def views(self) -> Iterator[AgentView]:
        """The instances as the scheduler sees them (only ONLINE ones take work)."""
        for agent_id, agent in self._agents.items():
            heartbeat = agent.heartbeat
            yield AgentView(
                agent_id=agent_id,
                capabilities=frozenset(heartbeat.capabilities),
                max_concurrency=heartbeat.max_concurrency,
                running=heartbeat.running,
                online=agent.state == AGENT_STATE_ONLINE,
                succeeded=heartbeat.succeeded,
                failed=heartbeat.failed,
                mean_duration_ms=heartbeat.mean_duration_ms,
                task_types=self.task_types(agent_id),
            )

    @property
    def watchers(self) -> int:
        """Streams watching now."""
        return len(self._watchers)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[tuple[list[Agent], asyncio.Queue[Agent | None]]]:
        """The current instances and a queue of later changes (``None``: fell behind)."""
        queue: asyncio.Queue[Agent | None] = asyncio.Queue(maxsize=WATCH_BUFFER)
        self._watchers.add(queue)
        try:
            yield self.listing(), queue
        finally:
            self._watchers.discard(queue)
