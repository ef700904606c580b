"""``sutazai keys``: the token signing keys (list, rotate, retire).

Rotation adds a key that signs from then on while the old ones keep verifying, so nobody is
signed out; retire an old key once the tokens it signed have expired. The current signing key
cannot be retired (rotate first). Every edit runs under the ring's lock and rewrites the private
ring and the public JWKS atomically; the gateway and every service follow the public file, the
auth service the private one: no restart is needed.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from sutazai.ops.cli.console import out
from sutazai.ops.cli.context import mesh_settings
from sutazai.runtime.key_files import edit_key_ring, load_key_ring

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
    settings = mesh_settings(ctx)
    ring = edit_key_ring(settings.keys_file, settings.jwks_file, lambda ring: ring.rotated())
    out.print(f"new signing key {ring.signing.kid}; {len(ring.keys)} keys verify")


@keys.command()
def retire(
    ctx: typer.Context,
    kid: Annotated[str, typer.Argument(help="The key to remove (see 'sutazai keys list').")],
) -> None:
    """Remove a key that no longer signs: tokens it signed stop working at once."""
    settings = mesh_settings(ctx)
    ring = edit_key_ring(settings.keys_file, settings.jwks_file, lambda ring: ring.retired(kid))
    out.print(f"retired {kid}; {len(ring.keys)} keys verify, {ring.signing.kid} signs")
