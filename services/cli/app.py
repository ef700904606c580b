"""The ``sutazai`` command: its global options and its commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sutazai.services.cli.certs import certs
from sutazai.services.cli.context import GlobalOptions
from sutazai.services.cli.down import down
from sutazai.services.cli.envoy_admin import envoy_admin
from sutazai.services.cli.keys import keys
from sutazai.services.cli.login import login
from sutazai.services.cli.logs import logs
from sutazai.services.cli.serve import serve
from sutazai.services.cli.status import status
from sutazai.services.cli.up import up
from sutazai.services.cli.users import users

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
app.command()(certs)
app.add_typer(users)
app.add_typer(keys)
