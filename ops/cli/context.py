"""What every command shares: the global options and the settings built from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer
from pydantic import ValidationError

from sutazai.ops.cli.errors import CliError
from sutazai.runtime.settings import MeshSettings


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    """Options given before the command name."""

    state_dir: Path | None = None


def mesh_settings(ctx: typer.Context) -> MeshSettings:
    """The mesh settings from the environment, with ``--state-dir`` taking precedence."""
    options = ctx.find_object(GlobalOptions) or GlobalOptions()
    try:
        if options.state_dir is not None:
            return MeshSettings(state_dir=options.state_dir.expanduser().resolve())
        return MeshSettings()
    except ValidationError as exc:
        raise CliError(f"invalid configuration:\n{exc}") from exc
