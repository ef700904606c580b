"""``sutazai keys``: the token signing keys (list, rotate, retire).

Rotation adds a key that signs from then on while the old ones keep verifying, so nobody is
signed out; retire an old key once the tokens it signed have expired (30 minutes). The gateway
and every service re-read the key file when it changes: no restart is needed.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from sutazai.services.cli.console import out
from sutazai.services.cli.context import mesh_settings
from sutazai.services.runtime.keys import load_key_ring, save_key_ring

keys = typer.Typer(name="keys", help="Manage the token signing keys.", no_args_is_help=True)


@keys.command("list")
def list_keys(ctx: typer.Context) -> None:
    """Show the keys; the newest signs, all verify."""
    ring = load_key_ring(mesh_settings(ctx).keys_file)
    table = Table("kid", "created", "use")
    for key in ring.keys:
        use = "signs and verifies" if key is ring.signing else "verifies"
        table.add_row(key.kid, key.created_at.isoformat(timespec="seconds"), use)
    out.print(table)


@keys.command()
def rotate(ctx: typer.Context) -> None:
    """Add a new signing key; tokens signed with the old keys stay valid."""
    path = mesh_settings(ctx).keys_file
    ring = load_key_ring(path).rotated()
    save_key_ring(path, ring)
    out.print(f"new signing key {ring.signing.kid}; {len(ring.keys)} keys verify")


@keys.command()
def retire(
    ctx: typer.Context,
    kid: Annotated[str, typer.Argument(help="The key to remove (see 'sutazai keys list').")],
) -> None:
    """Remove a key: tokens it signed stop working at once."""
    path = mesh_settings(ctx).keys_file
    ring = load_key_ring(path).retired(kid)
    save_key_ring(path, ring)
    out.print(f"retired {kid}; {len(ring.keys)} keys verify, {ring.signing.kid} signs")
