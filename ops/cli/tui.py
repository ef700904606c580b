"""``sutazai tui``: the operator dashboard, a client of the mesh through Envoy like any other.

It resumes the session ``sutazai login`` saved (the same token file, refreshed through the
client's lock so the CLI and the dashboard never both spend one refresh token), or asks to
sign in. Dashboard settings come from ``SUTAZAI_TUI_...`` variables (see docs/dashboard.md).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from pydantic import ValidationError

from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError
from sutazai.runtime.settings import MeshSettings
from sutazai.tui.settings import DashboardSettings


def tui(
    ctx: typer.Context,
    light: Annotated[bool, typer.Option("--light", help="Start with the light theme.")] = False,
) -> None:
    """Open the operator dashboard (Textual) on the running mesh."""
    settings = mesh_settings(ctx)
    try:
        dashboard = DashboardSettings()
    except ValidationError as exc:
        raise CliError(f"invalid dashboard configuration:\n{exc}") from exc
    if light:
        dashboard = dashboard.model_copy(update={"dark": False})
    asyncio.run(_run(settings, dashboard))


async def _run(settings: MeshSettings, dashboard: DashboardSettings) -> None:
    # Imported here so the other commands do not pay for loading Textual and the client.
    from sutazai.client import MeshClient
    from sutazai.tui.app import SutazaiApp, steady_collector

    steady_collector()
    async with MeshClient(settings) as client:
        await SutazaiApp(client, dashboard).run_async()
