"""``sutazai agents`` and ``sutazai coordinator``: the agent registry and the task coordinator.

``sutazai agents`` (or ``agents list``) lists every agent instance with its state, capabilities,
load and counts; ``agents get ID`` shows one; ``agents watch`` prints each change as the
registry sends it. ``coordinator strategy`` shows (or, given a name, sets) how agents are
chosen; ``coordinator stats`` and ``coordinator streams`` show the queues and the JetStream
streams of dispatch. The coordinator's calls are for operators (the service refuses users).
Errors and ``--json`` as in ``sutazai tasks``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.client import MeshClient
from sutazai.coordinator.v1 import coordinator_service_pb2 as coord_pb
from sutazai.ops.cli.console import out
from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.mesh_calls import call_mesh
from sutazai.ops.cli.tasks import clock, json_list, proto_json, streaming

STRATEGIES: dict[str, coord_pb.Strategy.ValueType] = {
    "round-robin": coord_pb.STRATEGY_ROUND_ROBIN,
    "least-loaded": coord_pb.STRATEGY_LEAST_LOADED,
    "capability-match": coord_pb.STRATEGY_CAPABILITY_MATCH,
    "weighted-score": coord_pb.STRATEGY_WEIGHTED_SCORE,
}
"""``coordinator strategy NAME`` values."""
AGENT_STATES: dict[int, tuple[str, str]] = {
    agents_pb.AGENT_STATE_ONLINE: ("online", "green"),
    agents_pb.AGENT_STATE_DRAINING: ("draining", "yellow"),
    agents_pb.AGENT_STATE_OFFLINE: ("offline", "bold red"),
}

JsonOption = Annotated[bool, typer.Option("--json", help="Print proto JSON.")]

agents = typer.Typer(
    name="agents",
    help="List the agent instances and follow their heartbeats.",
    invoke_without_command=True,
)
coordinator = typer.Typer(
    name="coordinator",
    help="The coordinator's strategy, queues and streams (operators).",
    no_args_is_help=True,
)


@agents.callback()
def _default(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Without a command: list the agents."""
    if ctx.invoked_subcommand is None:
        _list(ctx, as_json)


@agents.command(name="list")
def list_agents(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List every known agent instance, online ones first."""
    _list(ctx, as_json)


@agents.command()
def get(
    ctx: typer.Context,
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="<agent name>.<instance>")],
    as_json: JsonOption = False,
) -> None:
    """Show one agent instance."""
    agent = call_mesh(mesh_settings(ctx), lambda client: client.get_agent(agent_id))
    if as_json:
        typer.echo(proto_json(agent))
        return
    out.print(render_agents([agent], title=agent_id))


@agents.command()
def watch(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Print every agent, then each change, until Ctrl-C."""

    async def run(client: MeshClient) -> None:
        async for message in client.watch_agents():
            if as_json:
                typer.echo(proto_json(message, indent=None))
            elif message.HasField("agent"):
                out.print(agent_line(message.agent, snapshot=message.snapshot))
            else:
                out.print(Text("no agents registered", style="dim"))

    streaming(mesh_settings(ctx), run)


def _list(ctx: typer.Context, as_json: bool) -> None:
    found = call_mesh(mesh_settings(ctx), lambda client: client.list_agents())
    if as_json:
        typer.echo(json_list(found))
        return
    out.print(render_agents(found, title="agents"))


@coordinator.command()
def strategy(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(help=f"Set it: {', '.join(STRATEGIES)}. Without it: show it."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show how agents are chosen, or change it for every coordinator (operators, audited)."""
    settings = mesh_settings(ctx)
    if name is None:
        current = call_mesh(settings, lambda client: client.get_strategy())
        if as_json:
            typer.echo(proto_json(current))
            return
        line = Text(strategy_name(current.strategy), style="bold")
        if current.HasField("changed_at"):
            line.append(f"  (set by {current.changed_by or '?'} at {clock(current.changed_at)})")
        else:
            line.append("  (the configured default)", style="dim")
        out.print(line)
        return
    wanted = STRATEGIES.get(name.lower())
    if wanted is None:
        raise typer.BadParameter(f"{name!r} is not one of {', '.join(STRATEGIES)}")
    now = call_mesh(settings, lambda client: client.set_strategy(wanted))
    if as_json:
        typer.echo(proto_json(coord_pb.SetStrategyResponse(strategy=now)))
        return
    out.print(Text(f"strategy is now {strategy_name(now)}"))


@coordinator.command()
def stats(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Queue depth per priority and type, in flight, throughput, failures, dead letters."""
    found = call_mesh(mesh_settings(ctx), lambda client: client.coordinator_stats())
    if as_json:
        typer.echo(proto_json(found))
        return
    out.print(render_stats(found))


@coordinator.command()
def streams(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The JetStream streams of dispatch with their consumers' pending and redelivered."""
    found = call_mesh(mesh_settings(ctx), lambda client: client.list_streams())
    if as_json:
        typer.echo(json_list(found))
        return
    out.print(render_streams(found))


# --- rendering ----------------------------------------------------------------------------


def strategy_name(value: int) -> str:
    """``STRATEGY_LEAST_LOADED`` -> ``least-loaded``."""
    for name, known in STRATEGIES.items():
        if known == value:
            return name
    return "unknown"


def _agent_state(state: int) -> Text:
    name, style = AGENT_STATES.get(state, ("unknown", "yellow"))
    return Text(name, style=style)


def _ago(stamp_seconds: float) -> str:
    if not stamp_seconds:
        return "-"
    seconds = max(0, int(datetime.now(UTC).timestamp() - stamp_seconds))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


def render_agents(found: list[agents_pb.Agent], *, title: str) -> Table:
    """One row per agent instance."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("agent", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("load", justify="right", no_wrap=True)
    table.add_column("running", justify="right", no_wrap=True)
    table.add_column("done", justify="right", no_wrap=True)
    table.add_column("failed", justify="right", no_wrap=True)
    table.add_column("heartbeat", no_wrap=True)
    table.add_column("runtime", no_wrap=True)
    table.add_column("capabilities", overflow="fold")
    for agent in found:
        beat = agent.heartbeat
        table.add_row(
            Text(beat.agent_id),
            _agent_state(agent.state),
            f"{agent.load * 100:.0f}%",
            f"{beat.running}/{beat.max_concurrency}",
            f"{beat.succeeded:,}",
            f"{beat.failed:,}",
            _ago(beat.heartbeat_at.seconds),
            Text(beat.runtime or "-"),
            Text(", ".join(beat.capabilities)),
        )
    return table


def agent_line(agent: agents_pb.Agent, *, snapshot: bool = False) -> Text:
    """One line per change of an agent."""
    beat = agent.heartbeat
    line = Text(f"{clock(beat.heartbeat_at)} {beat.agent_id} ")
    line.append_text(_agent_state(agent.state))
    line.append(
        f" running {beat.running}/{beat.max_concurrency} done {beat.succeeded} "
        f"failed {beat.failed} [{', '.join(beat.capabilities)}]"
    )
    if snapshot:
        line.append(" [snapshot]", style="dim")
    return line


def render_stats(found: coord_pb.GetStatsResponse) -> Group:
    """The coordinator's figures."""
    figures = Table.grid(padding=(0, 2))
    figures.add_column(style="bold", no_wrap=True)
    figures.add_column()
    by_priority = list(found.queued_by_priority) + [0] * (4 - len(found.queued_by_priority))
    figures.add_row("strategy", strategy_name(found.strategy))
    figures.add_row(
        "queued", "  ".join(f"p{p}: {n:,}" for p, n in reversed(list(enumerate(by_priority[:4]))))
    )
    figures.add_row("waiting for resources", f"{found.waiting_for_resources:,}")
    figures.add_row("in flight", f"{found.in_flight:,}")
    figures.add_row(
        "succeeded", f"{found.succeeded_last_minute:,} last minute, {found.succeeded_total:,} total"
    )
    figures.add_row(
        "failed attempts", f"{found.failed_last_minute:,} last minute, {found.failed_total:,} total"
    )
    figures.add_row("dead letters", f"{found.dead_letters:,}")
    parts: list[Table] = [figures]
    if found.queued_by_type:
        types = Table(title="queued by type", box=box.SIMPLE_HEAD, pad_edge=False)
        types.add_column("type", no_wrap=True)
        types.add_column("queued", justify="right", no_wrap=True)
        for name, queued in sorted(found.queued_by_type.items()):
            types.add_row(Text(name), f"{queued:,}")
        parts.append(types)
    return Group(*parts)


def render_streams(found: list[coord_pb.StreamInfo]) -> Table:
    """One row per consumer (a stream without consumers gets a row of its own)."""
    table = Table(title="streams", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("stream", no_wrap=True)
    table.add_column("messages", justify="right", no_wrap=True)
    table.add_column("bytes", justify="right", no_wrap=True)
    table.add_column("consumer", no_wrap=True)
    table.add_column("pending", justify="right", no_wrap=True)
    table.add_column("ack pending", justify="right", no_wrap=True)
    table.add_column("redelivered", justify="right", no_wrap=True)
    for stream in found:
        head: list[Text | str] = [Text(stream.name), f"{stream.messages:,}", f"{stream.bytes:,}"]
        if not stream.consumers:
            table.add_row(*head, "-", "-", "-", "-")
        for index, consumer in enumerate(stream.consumers):
            table.add_row(
                *(head if index == 0 else [Text(""), "", ""]),
                Text(consumer.name),
                f"{consumer.pending:,}",
                f"{consumer.ack_pending:,}",
                f"{consumer.redelivered:,}",
            )
    return table
