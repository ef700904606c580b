"""``sutazai serve``: one more instance of a service (or an agent), in the foreground."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, cast

import typer
from pydantic import ValidationError

from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError
from sutazai.runtime.deployment import (
    AGENT_INSTANCE_VARIABLE,
    AgentEntry,
    find_agent,
    find_service,
)
from sutazai.runtime.logging import configure_logging
from sutazai.runtime.settings import MeshSettings, ServiceSettings

ServeFunction = Callable[[MeshSettings, ServiceSettings], Coroutine[Any, Any, None]]
AgentFunction = Callable[[MeshSettings, str], Coroutine[Any, Any, None]]


def serve(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service or agent name from deploy/mesh.toml.")],
    instance: Annotated[
        str | None,
        typer.Option(
            envvar=AGENT_INSTANCE_VARIABLE,
            help="An agent's instance id (1 .. its declared instances).",
        ),
    ] = None,
) -> None:
    """Run one instance of SERVICE (or of an agent); it joins the running mesh."""
    # Every service (and agent) is a principal of its own, named after it.
    mesh = mesh_settings(ctx).as_principal(service)
    agent = find_agent(service)
    if agent is not None:
        _run_agent(mesh, agent, instance)
        return
    try:
        service_settings = ServiceSettings()
    except ValidationError as exc:
        raise CliError(f"invalid service configuration:\n{exc}") from exc
    run = load_serve(service)
    configure_logging(service)
    # The runtime handles SIGTERM and SIGINT itself (drain, deregister); a Ctrl-C that still
    # reaches Python here only means the instance is already gone.
    try:
        asyncio.run(run(mesh, service_settings))
    except KeyboardInterrupt:
        return


def _run_agent(mesh: MeshSettings, agent: AgentEntry, instance: str | None) -> None:
    if agent.external:
        raise CliError(f"agent {agent.name!r} is external: it runs outside the mesh's supervisor")
    if instance not in agent.instance_ids:
        raise CliError(
            f"agent {agent.name!r} needs --instance (or {AGENT_INSTANCE_VARIABLE}), one of "
            f"{', '.join(agent.instance_ids) or 'none (instances = 0)'}"
        )
    try:
        module = importlib.import_module(agent.module)
    except ImportError as exc:
        raise CliError(f"cannot load agent {agent.name!r} from {agent.module}: {exc}") from exc
    function = getattr(module, "run_agent", None)
    if not callable(function):
        raise CliError(f"{agent.module} has no run_agent(mesh, instance_id) function")
    configure_logging(f"{agent.name}.{instance}")
    try:
        asyncio.run(cast(AgentFunction, function)(mesh, instance))
    except KeyboardInterrupt:
        return


def load_serve(service: str) -> ServeFunction:
    """The ``serve`` coroutine function of a catalog service's module."""
    entry = find_service(service)
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise CliError(f"cannot load service {service!r} from {entry.module}: {exc}") from exc
    function = getattr(module, "serve", None)
    if not callable(function):
        raise CliError(f"{entry.module} has no serve(mesh, service) function")
    return cast(ServeFunction, function)
