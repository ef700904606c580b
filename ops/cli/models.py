"""``sutazai models``: the inference service's models, through the edge with the saved token.

``sutazai models`` (or ``models list``) lists every model of every backend; ``models load
MODEL`` and ``models unload MODEL`` are operator calls (the service refuses users).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import grpc
import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from rich import box
from rich.table import Table

from sutazai.client.channel import edge_channel, edge_target
from sutazai.client.errors import TokenFileError
from sutazai.client.tokens import FileTokenStore
from sutazai.inference.v1.inference_service_pb2 import (
    BackendKind,
    ListModelsRequest,
    ListModelsResponse,
    LoadModelRequest,
    Model,
    UnloadModelRequest,
)
from sutazai.inference.v1.inference_service_pb2_grpc import InferenceServiceStub
from sutazai.ops.cli.console import out
from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError
from sutazai.runtime.settings import MeshSettings

_LIST_TIMEOUT = 10.0
_LOAD_TIMEOUT = 120.0
"""Loading a large model on a remote backend takes a while; the edge caps unary calls anyway."""

models = typer.Typer(
    name="models",
    help="List the models of every backend; load or unload one (operators).",
    invoke_without_command=True,
)

R = TypeVar("R", bound=Message)


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
def load(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model to load and warm up.")],
) -> None:
    """Load and warm up a model, so the first request does not wait for it (operator)."""
    settings = mesh_settings(ctx)
    response = _call(
        settings,
        lambda stub, md: stub.LoadModel(
            LoadModelRequest(model=model), timeout=_LOAD_TIMEOUT, metadata=md
        ),
    )
    took = f" in {response.load_ms:.0f} ms" if response.load_ms else " (already loaded)"
    out.print(f"{response.model.name} loaded on {response.model.backend}{took}")


@models.command()
def unload(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model to unload.")],
) -> None:
    """Free a loaded model's memory once its calls in flight finish (operator)."""
    settings = mesh_settings(ctx)
    response = _call(
        settings,
        lambda stub, md: stub.UnloadModel(
            UnloadModelRequest(model=model), timeout=_LOAD_TIMEOUT, metadata=md
        ),
    )
    out.print(f"{response.model.name} unloaded from {response.model.backend}")


def _list(ctx: typer.Context, as_json: bool) -> None:
    settings = mesh_settings(ctx)
    response: ListModelsResponse = _call(
        settings,
        lambda stub, md: stub.ListModels(ListModelsRequest(), timeout=_LIST_TIMEOUT, metadata=md),
    )
    if as_json:
        typer.echo(
            json_format.MessageToJson(
                response,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
        )
        return
    out.print(render_models(response))


def _call(
    settings: MeshSettings,
    call: Callable[[InferenceServiceStub, tuple[tuple[str, str], ...]], Awaitable[R]],
) -> R:
    """Run one call through the edge with the saved token; failures become one-line errors."""
    try:
        token = FileTokenStore(settings.state_dir).load()
    except TokenFileError as exc:
        raise CliError(str(exc)) from exc
    if token is None or token.expires_at <= datetime.now(UTC):
        raise CliError("not signed in (or the session expired): run 'sutazai login' first")
    metadata = (("authorization", f"Bearer {token.access_token}"),)

    async def run() -> R:
        async with edge_channel(settings) as channel:
            return await call(InferenceServiceStub(channel), metadata)

    try:
        return asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE and "backend" not in (exc.details() or ""):
            raise CliError(
                f"the inference service is unreachable through {edge_target(settings)}: "
                f"{exc.details()}"
            ) from exc
        raise CliError(f"{exc.code().name}: {exc.details()}") from exc


_KINDS = {
    BackendKind.BACKEND_KIND_EMBEDDED: "embedded",
    BackendKind.BACKEND_KIND_OLLAMA: "ollama",
    BackendKind.BACKEND_KIND_OPENAI_COMPATIBLE: "openai-compatible",
}


def render_models(response: ListModelsResponse) -> Table:
    """One row per model; the default model is marked."""
    table = Table(
        title="models",
        caption=f"default: {response.default_model}",
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
            f"{model.name}{' *' if model.name == response.default_model else ''}",
            model.backend,
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
