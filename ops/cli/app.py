"""The ``sutazai`` command: its global options and its commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sutazai.ops.cli.agents import agents, coordinator
from sutazai.ops.cli.certs import certs
from sutazai.ops.cli.chat import chat
from sutazai.ops.cli.context import GlobalOptions
from sutazai.ops.cli.down import down
from sutazai.ops.cli.envoy_admin import envoy_admin
from sutazai.ops.cli.hardware import hardware
from sutazai.ops.cli.keys import keys
from sutazai.ops.cli.login import login, logout
from sutazai.ops.cli.logs import logs
from sutazai.ops.cli.models import models
from sutazai.ops.cli.serve import serve
from sutazai.ops.cli.status import status
from sutazai.ops.cli.tasks import tasks
from sutazai.ops.cli.tui import tui
from sutazai.ops.cli.up import up
from sutazai.ops.cli.users import users

app = typer.Typer(
    name="sutazai",
    help="Run and inspect the SutazAI mesh.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="State directory (data, logs, secrets); overrides SUTAZAI_STATE_DIR.",
            file_okay=False,
        ),
    ] = None,
) -> None:
    ctx.obj = GlobalOptions(state_dir=state_dir)


app.command()(up)
app.command()(down)
app.command()(status)
app.command()(logs)
app.command(name="envoy-admin")(envoy_admin)
app.command()(serve)
app.command()(login)
app.command()(logout)
app.command()(certs)
app.command()(tui)
app.command()(chat)
app.add_typer(users)
app.add_typer(models)
app.add_typer(keys)
app.add_typer(tasks)
app.add_typer(agents)
app.add_typer(coordinator)
app.add_typer(hardware)
