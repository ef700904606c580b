"""Agents: every agent instance live from ``WatchAgents``; for operators, the coordinator.

The agents table follows the registry's stream (state, capabilities, load, running of the
maximum, time since the last heartbeat, tasks done and failed); the heartbeat ages tick with the
clock between messages. Operators also see the coordinator's strategy and figures
(``GetStats``) and the JetStream streams and consumers of dispatch (``ListStreams``: pending,
waiting for acknowledgement, redelivered). There is no stream of those, so a worker asks for
them every ``SUTAZAI_TUI_AGENTS_POLL_SECONDS`` (2 s by default). Operators change the strategy
with ``s``: pick one, confirm, and ``SetStrategy`` applies it to every coordinator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Select, Static

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.coordinator.v1 import coordinator_service_pb2 as coordinator_pb
from sutazai.tui.access import may_operate
from sutazai.tui.format import (
    MISSING,
    STRATEGIES,
    agent_state_name,
    count,
    percent,
    since,
    strategy_name,
)
from sutazai.tui.screens.base import MeshScreen
from sutazai.tui.screens.confirm import ConfirmScreen
from sutazai.tui.source import ClientError, SessionEnded, opened
from sutazai.tui.widgets.tables import Cell, KeyedTable

AGENT_STYLE = {"online": "green", "draining": "yellow", "offline": "bold red", "unknown": ""}
_ORDER = {"online": 0, "draining": 1, "offline": 2, "unknown": 3}

Command = tuple[str, str, Callable[[], object]]
"""A palette entry: title, help, and what it does."""


class StrategyScreen(ModalScreen[int | None]):
    """Pick the coordinator's strategy; returns it, or ``None`` when cancelled or unchanged."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: int) -> None:
        """A dialog whose select starts at ``current``."""
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        """Lay out the widgets."""
        with Vertical(classes="dialog") as box:
            box.border_title = "Strategy"
            yield Label("How the coordinator picks an agent:", classes="question")
            yield Select(
                [(name, value) for value, name in STRATEGIES.items()],
                value=self.current if self.current in STRATEGIES else Select.BLANK,
                allow_blank=self.current not in STRATEGIES,
                id="strategy",
            )
            with Horizontal(classes="buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        """Start in the select."""
        self.query_one("#strategy", Select).focus()

    def action_cancel(self) -> None:
        """Close without a change."""
        self.dismiss(None)

    @on(Button.Pressed, "#apply")
    def _apply(self) -> None:
        value = self.query_one("#strategy", Select).value
        self.dismiss(value if isinstance(value, int) and value != self.current else None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class AgentsScreen(MeshScreen):
    """Agents live; the coordinator's strategy, figures and streams for operators, polled."""

    SCREEN_NAME = "agents"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "change_strategy", "Strategy"),
        Binding("ctrl+r", "refresh", "Refresh", show=False),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As :class:`MeshScreen`; nothing heard yet."""
        super().__init__(*args, **kwargs)
        self.agents: dict[str, agents_pb.Agent] = {}
        self.heard = False
        """Whether the registry's first snapshot arrived (an empty one too)."""
        self.strategy: coordinator_pb.GetStrategyResponse | None = None
        self.stats: coordinator_pb.GetStatsResponse | None = None
        self.polls = 0
        """Completed polls of the coordinator (tests wait on it)."""

    @property
    def operator(self) -> bool:
        """Whether the signed-in role sees the coordinator (the server checks again)."""
        return may_operate(self.role)

    def compose_body(self) -> ComposeResult:
        """The screen's widgets."""
        yield Static(Text("Waiting for the agent registry…"), id="agents-summary")
        with Vertical(id="agents-body"):
            agents = KeyedTable(
                [
                    ("agent", "Agent", None),
                    ("state", "State", 8),
                    ("load", "Load", 6),
                    ("running", "Run", 5),
                    ("done", "Done", 7),
                    ("failed", "Failed", 6),
                    ("heartbeat", "Beat", 6),
                    ("capabilities", "Capabilities", None),
                ],
                id="agents",
            )
            agents.border_title = "Agents (registry)"
            yield agents
            if self.operator:
                yield Static(Text(""), id="coordinator")
                streams = KeyedTable(
                    [
                        ("stream", "Stream", None),
                        ("consumer", "Consumer", None),
                        ("messages", "Msgs", 7),
                        ("pending", "Pending", 7),
                        ("ack_pending", "Ack pend", 8),
                        ("redelivered", "Redeliv", 7),
                    ],
                    id="streams",
                )
                streams.border_title = "JetStream"
                yield streams

    def on_mount(self) -> None:
        """Follow the registry; operators also poll the coordinator."""
        self.follow_agents()
        if self.operator:
            self.poll()
        self.set_interval(1.0, self._tick)

    # --- agents ----------------------------------------------------------------------------

    @work(exclusive=True, group="agents")
    async def follow_agents(self) -> None:
        """Draw every agent as the registry sends it."""
        try:
            async with opened(self.api.watch_agents()) as messages:
                async for message in messages:
                    if self.torn_down:
                        return
                    self.heard = True
                    if message.HasField("agent"):
                        self.agents[message.agent.heartbeat.agent_id] = message.agent
                    self.draw_agents()
        except ClientError as error:
            self.report(error, "Watching the agents")

    def draw_agents(self) -> None:
        """The agents table (online first, then by id) and the summary line."""
        now = self.now()
        rows: dict[str, list[Cell]] = {}
        ordered = sorted(
            self.agents.values(),
            key=lambda a: (_ORDER[agent_state_name(a.state)], a.heartbeat.agent_id),
        )
        for agent in ordered:
            beat = agent.heartbeat
            state = agent_state_name(agent.state)
            rows[beat.agent_id] = [
                Text(beat.agent_id),
                Text(state, style=AGENT_STYLE[state]),
                Text(percent(agent.load), justify="right"),
                Text(f"{beat.running}/{beat.max_concurrency}", justify="right"),
                Text(count(beat.succeeded), justify="right"),
                Text(count(beat.failed), justify="right", style="red" if beat.failed else ""),
                Text(since(beat.heartbeat_at, now), justify="right"),
                Text(", ".join(beat.capabilities) or MISSING),
            ]
        self.query_one("#agents", KeyedTable).sync(rows)
        self._summary()

    def _summary(self) -> None:
        if not self.heard:
            return
        states = [agent_state_name(a.state) for a in self.agents.values()]
        text = Text()
        if self.strategy is not None:
            text.append("Strategy ")
            text.append(strategy_name(self.strategy.strategy), style="bold")
            text.append("  ")
        text.append(f"{len(states)} agents: {states.count('online')} online")
        for other in ("draining", "offline"):
            if states.count(other):
                text.append(f", {states.count(other)} {other}", style=AGENT_STYLE[other])
        running = sum(a.heartbeat.running for a in self.agents.values())
        slots = sum(a.heartbeat.max_concurrency for a in self.agents.values())
        text.append(f"  {running}/{slots} slots busy")
        self.query_one("#agents-summary", Static).update(text)

    def _tick(self) -> None:
        # Heartbeat ages grow with the clock between messages; only those cells change.
        if self.agents:
            self.draw_agents()

    # --- the coordinator (operators) -------------------------------------------------------

    @work(exclusive=True, group="coordinator-poll")
    async def poll(self) -> None:
        """Ask for the strategy, figures and streams every ``agents_poll_seconds``.

        A failure is shown once; polling goes on and the next success clears it. An ended
        session goes back to sign-in.
        """
        failing = False
        while True:
            try:
                await self.fetch()
                failing = False
            except SessionEnded as error:
                self.report(error, "Reading the coordinator")
                return
            except ClientError as error:
                if not failing:
                    self.report(error, "Reading the coordinator")
                failing = True
            self.polls += 1
            await asyncio.sleep(self.settings.agents_poll_seconds)

    async def fetch(self) -> None:
        """One round: strategy, figures, streams; then draw them."""
        strategy = await self.api.get_strategy()
        stats = await self.api.coordinator_stats()
        streams = await self.api.list_streams()
        self.show_coordinator(strategy, stats, streams)

    def show_coordinator(
        self,
        strategy: coordinator_pb.GetStrategyResponse,
        stats: coordinator_pb.GetStatsResponse,
        streams: list[coordinator_pb.StreamInfo],
    ) -> None:
        """Draw one round of the coordinator's figures."""
        self.strategy, self.stats = strategy, stats
        queued = list(stats.queued_by_priority) + [0] * 4
        # Most telling first: at 80 columns the line's end may be cut.
        text = Text("Queued ", style="bold")
        text.append(" ".join(f"p{p}:{queued[p]}" for p in (3, 2, 1, 0)))
        text.append(f"  in flight {count(stats.in_flight)}")
        text.append(
            f"  dead letters {count(stats.dead_letters)}",
            style="bold red" if stats.dead_letters else "",
        )
        if stats.waiting_for_resources:
            text.append(f"  waiting for resources {count(stats.waiting_for_resources)}")
        text.append(
            f"  {count(stats.succeeded_last_minute)} ok/min"
            f"  {count(stats.failed_last_minute)} failed/min"
        )
        self.query_one("#coordinator", Static).update(text)
        rows: dict[str, list[Cell]] = {}
        for stream in streams:
            consumers = list(stream.consumers) or [coordinator_pb.ConsumerInfo()]
            for consumer in consumers:
                rows[f"{stream.name}/{consumer.name}"] = [
                    Text(stream.name),
                    Text(consumer.name or MISSING),
                    Text(count(stream.messages), justify="right"),
                    Text(count(consumer.pending), justify="right"),
                    Text(count(consumer.ack_pending), justify="right"),
                    Text(
                        count(consumer.redelivered),
                        justify="right",
                        style="yellow" if consumer.redelivered else "",
                    ),
                ]
        self.query_one("#streams", KeyedTable).sync(rows)
        table = self.query_one("#streams", KeyedTable)
        table.border_title = (
            f"JetStream (polled {self.now().strftime('%H:%M:%S')} every "
            f"{self.settings.agents_poll_seconds:g} s)"
        )
        self._summary()
        self.refresh_bindings()

    def action_refresh(self) -> None:
        """Poll the coordinator now (operators)."""
        if self.operator:
            self.poll()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The strategy key exists for operators, greyed out until the strategy is known."""
        if action == "change_strategy":
            if not self.operator:
                return False
            return True if self.strategy is not None else None
        return True

    def action_change_strategy(self) -> None:
        """Pick a strategy, confirm, apply it."""
        if not self.operator or self.strategy is None:
            return
        current = self.strategy.strategy

        def chosen(strategy: int | None) -> None:
            if strategy is None:
                return

            def answered(yes: bool | None) -> None:
                if yes:
                    self.apply_strategy(strategy)

            self.app.push_screen(
                ConfirmScreen(
                    f"Change the strategy from {strategy_name(current)} to "
                    f"{strategy_name(strategy)}? Every coordinator uses it from its next "
                    "assignment on.",
                    action="Change",
                ),
                answered,
            )

        self.app.push_screen(StrategyScreen(current), chosen)

    @work(group="strategy")
    async def apply_strategy(self, strategy: int) -> None:
        """Make the confirmed change, say how it went, and poll at once."""
        try:
            now = await self.api.set_strategy(strategy)  # type: ignore[arg-type]
        except ClientError as error:
            self.report(error, "Changing the strategy")
            return
        self.notify(f"Strategy is now {strategy_name(now)}", title="Done")
        self.poll()

    def commands(self) -> list[Command]:
        """The palette entries of the agents screen (the coordinator's for operators only)."""
        if not self.operator:
            return []
        return [
            (
                "Agents: change the coordinator's strategy",
                "Pick, confirm",
                self.action_change_strategy,
            ),
            ("Agents: refresh the coordinator's figures", "ctrl+r", self.action_refresh),
        ]
