"""``sutazai serve``: one more instance of a service, in the foreground, in this process."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, cast

import typer
from pydantic import ValidationError

from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError
from sutazai.runtime.deployment import find_service
from sutazai.runtime.logging import configure_logging
from sutazai.runtime.settings import MeshSettings, ServiceSettings

ServeFunction = Callable[[MeshSettings, ServiceSettings], Coroutine[Any, Any, None]]


def serve(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name from deploy/mesh.toml.")],
) -> None:
    """Run one instance of SERVICE; it joins the running mesh through the registry."""
    # Every service is a principal of its own, named after it (NATS user, role, Redis user).
    mesh = mesh_settings(ctx).as_principal(service)
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
