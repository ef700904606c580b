"""``sutazai tasks``: create, inspect, follow and cancel tasks; handle dead letters (operators).

Every call goes through :class:`sutazai.client.MeshClient` with the saved session
(``ops/cli/mesh_calls.py``): a refusal ends the command with exit status 1 and the status's
name (``INVALID_ARGUMENT`` with each field's violation, ``NOT_FOUND``, ``PERMISSION_DENIED``,
``UNAVAILABLE``), a bad option with typer's usage status 2, Ctrl-C with 130. Following a task
(``create --wait``, ``watch ID``) ends with 0 when it SUCCEEDED and 1 when it FAILED or was
CANCELLED. Tables for people by default; ``--json`` prints proto JSON with the proto's field
names (one document, or one line per change when following).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from sutazai.client import ClientError, MeshClient
from sutazai.ops.cli.console import err, out
from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError
from sutazai.ops.cli.mesh_calls import CALL_TIMEOUT, call_mesh, cli_error
from sutazai.runtime.settings import MeshSettings
from sutazai.tasks.v1 import task_service_pb2 as pb

R = TypeVar("R")

MAX_PAYLOAD_BYTES = 65_536
"""``CreateTaskRequest.payload``: at most 64 KiB serialised (the service checks it too)."""
_READ_LIMIT = 4 * MAX_PAYLOAD_BYTES
"""Bytes read from a ``--payload @file`` at most: JSON text may be longer than its protobuf."""

STATES: dict[str, pb.TaskState.ValueType] = {
    "pending": pb.TASK_STATE_PENDING,
    "queued": pb.TASK_STATE_QUEUED,
    "running": pb.TASK_STATE_RUNNING,
    "succeeded": pb.TASK_STATE_SUCCEEDED,
    "failed": pb.TASK_STATE_FAILED,
    "cancelled": pb.TASK_STATE_CANCELLED,
}
"""``--state`` values."""
STATE_STYLE = {
    "pending": "yellow",
    "queued": "cyan",
    "running": "bold blue",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "magenta",
}

tasks = typer.Typer(
    name="tasks",
    help="Create, list, follow and cancel tasks; list and re-queue dead letters (operators).",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print proto JSON.")]


def _parse_states(values: list[str] | None) -> list[str]:
    for value in values or []:
        if value.lower() not in STATES:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(STATES)}")
    return [value.lower() for value in values or []]


StateOption = Annotated[
    list[str] | None,
    typer.Option(
        "--state",
        "-s",
        help=f"Only tasks in this state (repeatable): {', '.join(STATES)}.",
        callback=_parse_states,
    ),
]
TypeOption = Annotated[str, typer.Option("--type", "-t", help="Only tasks of this type.")]
AllOption = Annotated[
    bool, typer.Option("--all", help="Every user's tasks, not only yours (operators).")
]


@tasks.command()
def create(
    ctx: typer.Context,
    task_type: Annotated[str, typer.Argument(metavar="TYPE", help="e.g. text.summarize.")],
    payload: Annotated[
        str,
        typer.Option(
            "--payload",
            "-p",
            help="The input: a JSON object, @FILE to read it from a file, @- from stdin.",
        ),
    ] = "{}",
    priority: Annotated[
        int, typer.Option("--priority", min=0, max=3, help="0 (low) to 3 (critical).")
    ] = 0,
    capability: Annotated[
        list[str] | None,
        typer.Option("--capability", "-c", help="A further capability the agent must offer."),
    ] = None,
    timeout: Annotated[
        int,
        typer.Option(
            "--timeout", min=0, max=86_400, help="Seconds one attempt may run (0: default)."
        ),
    ] = 0,
    idempotency_key: Annotated[
        str,
        typer.Option(
            "--idempotency-key", help="Repeating it returns the first task instead of a new one."
        ),
    ] = "",
    max_attempts: Annotated[
        int,
        typer.Option(
            "--max-attempts", min=0, max=10, help="Attempts before dead-lettering (0: default)."
        ),
    ] = 0,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Follow the task until it finishes.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a task; with --wait, follow it to its end (exit 1 unless it SUCCEEDED)."""
    settings = mesh_settings(ctx)
    document = read_payload(payload)

    async def run(client: MeshClient) -> pb.CreateTaskResponse:
        return await client.create_task(
            task_type,
            document,
            priority=priority,
            required_capabilities=capability or [],
            timeout_seconds=timeout,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
        )

    response = call_mesh(settings, run)
    if not wait:
        if as_json:
            typer.echo(proto_json(response))
            return
        verb = "created" if response.created else "exists (same idempotency key):"
        out.print(Text(f"{verb} task {response.task.task_id}"))
        out.print(render_task(response.task))
        return
    kept = "" if response.created else " (existing task: same idempotency key)"
    err.print(Text(f"task {response.task.task_id}{kept}", style="dim"))
    follow_task(settings, response.task.task_id, as_json=as_json, final_only=as_json)


@tasks.command()
def get(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="The task's id.")],
    as_json: JsonOption = False,
) -> None:
    """Show one task with its attempts, result or error."""
    task = call_mesh(mesh_settings(ctx), lambda client: client.get_task(task_id))
    if as_json:
        typer.echo(proto_json(task))
        return
    out.print(render_task(task))


@tasks.command(name="list")
def list_tasks(
    ctx: typer.Context,
    state: StateOption = None,
    task_type: TypeOption = "",
    all_users: AllOption = False,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=10_000, help="Most tasks shown.")
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List tasks, newest first."""
    wanted = [STATES[name] for name in state or []]
    found = call_mesh(
        mesh_settings(ctx),
        lambda client: client.list_tasks(
            states=wanted, task_type=task_type, all_users=all_users, limit=limit
        ),
    )
    if as_json:
        typer.echo(json_list(found))
        return
    out.print(render_tasks(found, title="tasks", owners=all_users))


@tasks.command()
def watch(
    ctx: typer.Context,
    task_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="One task, followed to its end.")
    ] = None,
    state: StateOption = None,
    task_type: TypeOption = "",
    all_users: AllOption = False,
    as_json: JsonOption = False,
) -> None:
    """Follow one task until it finishes, or (without ID) every change of your tasks."""
    settings = mesh_settings(ctx)
    if task_id is not None:
        if state or task_type or all_users:
            raise CliError("--state, --type and --all filter the watch of every task, not an ID")
        follow_task(settings, task_id, as_json=as_json, final_only=False)
        return
    wanted = [STATES[name] for name in state or []]

    async def run(client: MeshClient) -> None:
        async for message in client.watch_tasks(
            states=wanted, task_type=task_type, all_users=all_users
        ):
            if as_json:
                typer.echo(proto_json(message, indent=None))
            else:
                out.print(change_line(message.task, snapshot=message.snapshot))

    streaming(settings, run)


@tasks.command()
def cancel(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="The task to cancel.")],
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why, for the record (512 characters).")
    ] = "",
    as_json: JsonOption = False,
) -> None:
    """Cancel a task that has not finished (a running one is stopped by its agent)."""
    if len(reason) > 512:
        raise CliError("--reason is longer than 512 characters")
    task = call_mesh(mesh_settings(ctx), lambda client: client.cancel_task(task_id, reason=reason))
    if as_json:
        typer.echo(proto_json(task))
        return
    out.print(Text(f"task {task.task_id} {state_name(task.state)}"))


@tasks.command(name="dead-letters")
def dead_letters(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=10_000, help="Most shown.")
    ] = 100,
    as_json: JsonOption = False,
) -> None:
    """List the tasks that exhausted their attempts, newest first (operators)."""
    found = call_mesh(mesh_settings(ctx), lambda client: client.list_dead_letters(limit=limit))
    if as_json:
        typer.echo(json_list(found))
        return
    out.print(render_tasks(found, title="dead letters", owners=True, errors=True))


@tasks.command()
def requeue(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="The dead letter to re-queue.")],
    as_json: JsonOption = False,
) -> None:
    """Queue a dead letter again with a fresh allowance of attempts (operators)."""
    task = call_mesh(mesh_settings(ctx), lambda client: client.requeue_dead_letter(task_id))
    if as_json:
        typer.echo(proto_json(task))
        return
    out.print(Text(f"task {task.task_id} re-queued ({state_name(task.state)})"))


# --- following ----------------------------------------------------------------------------


def follow_task(settings: MeshSettings, task_id: str, *, as_json: bool, final_only: bool) -> None:
    """Print each state of ``task_id`` until a final one; fail unless it SUCCEEDED.

    With ``as_json``, one JSON line per change, or only the final task (``final_only``).
    """
    last: list[pb.Task] = []

    async def run(client: MeshClient) -> None:
        async for task in client.watch_task(task_id):
            previous = last[0] if last else None
            last[:] = [task]
            if as_json:
                if not final_only:
                    typer.echo(proto_json(task, indent=None))
            elif previous is None or _moved(previous, task):
                out.print(change_line(task))

    streaming(settings, run)
    if not last:
        raise CliError(f"the watch of task {task_id} ended without a state")
    task = last[0]
    if as_json and final_only:
        typer.echo(proto_json(task))
    elif not as_json:
        out.print(render_outcome(task))
    if task.state != pb.TASK_STATE_SUCCEEDED:
        why = f": {task.error.message}" if task.error.message else ""
        raise CliError(f"task {task.task_id} ended {state_name(task.state).upper()}{why}")


def _moved(before: pb.Task, after: pb.Task) -> bool:
    """Whether a person would see a difference (state, attempt, agent or progress)."""
    return (before.state, before.attempt, before.agent_id, before.progress) != (
        after.state,
        after.attempt,
        after.agent_id,
        after.progress,
    )


def streaming(settings: MeshSettings, work: Callable[[MeshClient], Awaitable[R]]) -> R:
    """Run ``work`` (which reads a stream) until it ends; Ctrl-C stops it with status 130."""

    async def run() -> R:
        async with MeshClient(settings, call_timeout=CALL_TIMEOUT) as client:
            return await work(client)

    try:
        return asyncio.run(run())
    except ClientError as exc:
        raise cli_error(exc) from None
    except KeyboardInterrupt:
        # asyncio.run cancelled the reading task, which closed the stream: the call is over.
        raise CliError("stopped", exit_code=130) from None


# --- input and output ---------------------------------------------------------------------


def read_payload(given: str) -> dict[str, Any]:
    """``--payload``: JSON text, ``@FILE`` or ``@-`` (stdin), which must be a JSON object.

    Raises:
        CliError: unreadable, not JSON, not an object, or larger than the service accepts.

    """
    text = given
    if given.startswith("@"):
        source = given[1:]
        try:
            if source == "-":
                text = sys.stdin.read(_READ_LIMIT + 1)
            else:
                with Path(source).expanduser().open(encoding="utf-8") as file:
                    text = file.read(_READ_LIMIT + 1)
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--payload: cannot read {source}: {exc}") from None
    if len(text) > _READ_LIMIT:
        raise CliError(f"--payload is larger than {MAX_PAYLOAD_BYTES:,} bytes")
    try:
        document = json.loads(text or "{}")
    except ValueError as exc:
        raise CliError(f"--payload is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise CliError('--payload must be a JSON object, e.g. \'{"text": "..."}\'')
    if len(json.dumps(document, separators=(",", ":")).encode()) > MAX_PAYLOAD_BYTES:
        raise CliError(f"--payload is larger than {MAX_PAYLOAD_BYTES:,} bytes")
    return document


def proto_json(message: Message, *, indent: int | None = 2) -> str:
    """Proto JSON with the proto's field names and every field (scripts parse this)."""
    text = json_format.MessageToJson(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        indent=indent,
    )
    return text if indent is not None else text.replace("\n", "")


def json_list(messages: Sequence[Message]) -> str:
    """A JSON array of messages, as :func:`proto_json` prints each."""
    return "[" + ",".join(proto_json(message) for message in messages) + "]"


def state_name(state: int) -> str:
    """``TASK_STATE_SUCCEEDED`` -> ``succeeded``."""
    for name, value in STATES.items():
        if value == state:
            return name
    return "unknown"


def _state(state: int) -> Text:
    name = state_name(state)
    return Text(name, style=STATE_STYLE.get(name, ""))


def clock(stamp: Timestamp) -> str:
    """Local time of day, with the date when it is not today; ``-`` when unset."""
    if not stamp.seconds and not stamp.nanos:
        return "-"
    moment = stamp.ToDatetime(tzinfo=UTC).astimezone()
    if moment.date() == datetime.now().astimezone().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def change_line(task: pb.Task, *, snapshot: bool = False) -> Text:
    """One line per change: time, id, type, state, attempt, agent, progress or reason."""
    moment = task.updated_at if task.HasField("updated_at") else task.created_at
    line = Text(f"{clock(moment)} {task.task_id} ")
    line.append(task.type)
    line.append(" ")
    line.append_text(_state(task.state))
    if task.attempt:
        line.append(f" attempt {task.attempt}/{task.max_attempts}")
    if task.agent_id:
        line.append(f" on {task.agent_id}")
    if task.state == pb.TASK_STATE_RUNNING and task.progress:
        line.append(f" {task.progress * 100:.0f}%")
        if task.progress_message:
            line.append(f" {task.progress_message}")
    note = task.error.message or task.waiting_reason
    if note:
        line.append(f" ({note})", style="dim")
    if snapshot:
        line.append(" [snapshot]", style="dim")
    return line


def render_tasks(
    found: Sequence[pb.Task], *, title: str, owners: bool = False, errors: bool = False
) -> Table:
    """One row per task."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("prio", justify="right", no_wrap=True)
    table.add_column("attempt", justify="right", no_wrap=True)
    table.add_column("agent", no_wrap=True)
    if owners:
        table.add_column("owner", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("error" if errors else "note", overflow="fold")
    for task in found:
        row: list[Text | str] = [
            Text(task.task_id),
            Text(task.type),
            _state(task.state),
            str(task.priority),
            f"{task.attempt}/{task.max_attempts}" if task.max_attempts else str(task.attempt),
            Text(task.agent_id or "-"),
        ]
        if owners:
            row.append(Text(task.owner_id or "-"))
        row += [clock(task.created_at), Text(task.error.message or task.waiting_reason or "")]
        table.add_row(*row)
    return table


def render_task(task: pb.Task) -> Group:
    """One task: its fields, its attempts and its result or error."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    rows: list[tuple[str, Text | str]] = [
        ("id", Text(task.task_id)),
        ("type", Text(task.type)),
        ("state", _state(task.state)),
        ("priority", str(task.priority)),
        ("attempt", f"{task.attempt} of {task.max_attempts}"),
        ("agent", Text(task.agent_id or "-")),
        ("owner", Text(task.owner_id or "-")),
        ("created", clock(task.created_at)),
        ("queued", clock(task.queued_at)),
        ("started", clock(task.started_at)),
        ("finished", clock(task.finished_at)),
    ]
    if task.required_capabilities:
        rows.append(("capabilities", Text(", ".join(task.required_capabilities))))
    if task.timeout_seconds:
        rows.append(("timeout", f"{task.timeout_seconds} s"))
    if task.idempotency_key:
        rows.append(("idempotency key", Text(task.idempotency_key)))
    if task.state == pb.TASK_STATE_RUNNING:
        rows.append(("progress", Text(f"{task.progress * 100:.0f}% {task.progress_message}")))
    if task.waiting_reason:
        rows.append(("waiting", Text(task.waiting_reason)))
    if task.dead_lettered:
        rows.append(("dead letter", Text("yes", style="bold red")))
    for name, value in rows:
        fields.add_row(name, value)
    parts: list[Table | Text] = [fields]
    if task.attempts:
        attempts = Table(title="attempts", box=box.SIMPLE_HEAD, pad_edge=False)
        for column in ("#", "agent", "state", "started", "finished", "error"):
            attempts.add_column(column, no_wrap=column != "error", overflow="fold")
        for attempt in task.attempts:
            attempts.add_row(
                str(attempt.number),
                Text(attempt.agent_id or "-"),
                _state(attempt.state),
                clock(attempt.started_at),
                clock(attempt.finished_at),
                Text(attempt.error.message),
            )
        parts.append(attempts)
    parts.append(render_outcome(task))
    return Group(*parts)


def render_outcome(task: pb.Task) -> Text:
    """The result (as JSON) of a task that succeeded, the error of one that did not."""
    if task.HasField("result"):
        result = json.dumps(json_format.MessageToDict(task.result), indent=2, ensure_ascii=False)
        return Text.assemble(("result ", "bold"), result)
    if task.error.message:
        return Text.assemble(("error ", "bold red"), task.error.message)
    return Text("")
