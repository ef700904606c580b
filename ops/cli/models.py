"""``sutazai models``: the inference service's models, through the edge with the saved session.

``sutazai models`` (or ``models list``) lists every model of every backend; ``models backends``
shows each backend's circuit breaker and concurrency; ``models load MODEL``, ``models unload
MODEL`` and ``models reset-breaker BACKEND`` are operator calls (the service refuses users).
Every call goes through :class:`sutazai.client.MeshClient` (``ops/cli/mesh_calls.py``).
"""

from __future__ import annotations

from typing import Annotated

import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from rich import box
from rich.table import Table
from rich.text import Text

from sutazai.inference.v1.inference_service_pb2 import (
    Backend,
    BackendKind,
    BreakerState,
    ListModelsResponse,
    Model,
)
from sutazai.ops.cli.console import out
from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.mesh_calls import call_mesh

_LOAD_TIMEOUT = 120.0
"""Loading a large model on a remote backend takes a while; the edge caps unary calls anyway."""

models = typer.Typer(
    name="models",
    help="List the models of every backend; load or unload one (operators).",
    invoke_without_command=True,
)


@models.callback()
def _default(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print proto JSON.")] = False,
) -> None:
    """Without a command: list the models."""
    if ctx.invoked_subcommand is None:
        _list(ctx, as_json)


@models.command(name="list")
def list_models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print proto JSON.")] = False,
) -> None:
    """List every model of every backend, and the default one."""
    _list(ctx, as_json)


@models.command()
def backends(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print proto JSON.")] = False,
) -> None:
    """List the backends with their circuit breaker, concurrency and last tokens/s."""
    found = call_mesh(mesh_settings(ctx), lambda client: client.list_backends())
    if as_json:
        typer.echo("[" + ",".join(_json(backend) for backend in found) + "]")
        return
    out.print(render_backends(found))


@models.command()
def load(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model to load and warm up.")],
) -> None:
    """Load and warm up a model, so the first request does not wait for it (operator)."""
    response = call_mesh(
        mesh_settings(ctx),
        lambda client: client.load_model(model),
        generation_timeout=_LOAD_TIMEOUT,
    )
    took = f" in {response.load_ms:.0f} ms" if response.load_ms else " (already loaded)"
    out.print(f"{response.model.name} loaded on {response.model.backend}{took}")


@models.command()
def unload(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model to unload.")],
) -> None:
    """Free a loaded model's memory once its calls in flight finish (operator)."""
    unloaded = call_mesh(
        mesh_settings(ctx),
        lambda client: client.unload_model(model),
        generation_timeout=_LOAD_TIMEOUT,
    )
    out.print(f"{unloaded.name} unloaded from {unloaded.backend}")


@models.command(name="reset-breaker")
def reset_breaker(
    ctx: typer.Context,
    backend: Annotated[str, typer.Argument(help="The backend whose breaker to close.")],
) -> None:
    """Close a backend's circuit breaker, so calls go to it again at once (operator)."""
    reset = call_mesh(mesh_settings(ctx), lambda client: client.reset_breaker(backend))
    out.print(f"breaker of {reset.name} is {_breaker(reset.breaker.state)}")


def _list(ctx: typer.Context, as_json: bool) -> None:
    response = call_mesh(mesh_settings(ctx), lambda client: client.list_models())
    if as_json:
        typer.echo(_json(response))
        return
    out.print(render_models(response))


def _json(message: Message) -> str:
    # Plain stdout, not rich: scripts parse this, so no wrapping or markup.
    return json_format.MessageToJson(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


_KINDS = {
    BackendKind.BACKEND_KIND_EMBEDDED: "embedded",
    BackendKind.BACKEND_KIND_OLLAMA: "ollama",
    BackendKind.BACKEND_KIND_OPENAI_COMPATIBLE: "openai-compatible",
}


def render_models(response: ListModelsResponse) -> Table:
    """One row per model; the default model is marked."""
    table = Table(
        title="models",
        caption=Text(f"default: {response.default_model}"),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("model", no_wrap=True)
    table.add_column("backend", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("loaded", no_wrap=True)
    table.add_column("context", justify="right", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("embeddings", no_wrap=True)
    for model in response.models:
        table.add_row(
            Text(f"{model.name}{' *' if model.name == response.default_model else ''}"),
            Text(model.backend),
            _KINDS.get(model.backend_kind, "?"),
            "[green]yes[/]" if model.loaded else "no",
            str(model.context_tokens) if model.context_tokens else "-",
            _size(model),
            "yes" if model.embeddings else "no",
        )
    return table


def _size(model: Model) -> str:
    if not model.size_bytes:
        return "-"
    return f"{model.size_bytes / 1e6:.0f} MB"


def _breaker(state: BreakerState.ValueType) -> str:
    """``BREAKER_STATE_HALF_OPEN`` -> ``half-open``."""
    return BreakerState.Name(state).removeprefix("BREAKER_STATE_").lower().replace("_", "-")


def render_backends(found: list[Backend]) -> Table:
    """One row per backend: kind, breaker, concurrency and queue, last tokens/s."""
    table = Table(title="backends", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("backend", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("breaker", no_wrap=True)
    table.add_column("failures", justify="right", no_wrap=True)
    table.add_column("in flight", justify="right", no_wrap=True)
    table.add_column("queued", justify="right", no_wrap=True)
    table.add_column("tokens/s", justify="right", no_wrap=True)
    table.add_column("url", overflow="fold")
    table.add_column("last error", overflow="fold")
    for backend in found:
        state = _breaker(backend.breaker.state)
        color = {"closed": "green", "open": "red", "half-open": "yellow"}.get(state, "")
        # Names, URLs and errors are data, never markup.
        table.add_row(
            Text(backend.name),
            _KINDS.get(backend.kind, "?"),
            Text(state, style=color),
            f"{backend.breaker.consecutive_failures}/{backend.breaker.failure_threshold}",
            f"{backend.in_flight}/{backend.max_concurrency}",
            f"{backend.queued}/{backend.max_queue}",
            f"{backend.last_tokens_per_second:.1f}" if backend.last_tokens_per_second else "-",
            Text(backend.url or "-"),
            Text(backend.breaker.last_error or "-"),
        )
    return table
