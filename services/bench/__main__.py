"""``python -m sutazai.services.bench``: benchmark the running mesh's edge and print JSON.

Start the mesh first (``sutazai up --detach``). The direct target is a system-service instance
found in the registry; the edge target is Envoy's listener.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from sutazai.services.bench.edge import compare
from sutazai.services.runtime.messaging import connect_nats
from sutazai.services.runtime.registry import Registry
from sutazai.services.runtime.settings import MeshSettings

app = typer.Typer(add_completion=False)


async def _system_instance(mesh: MeshSettings) -> str:
    nc = await connect_nats(mesh, name="sutazai-bench")
    try:
        registry = await Registry.open(nc.jetstream(), mesh.registry)
        instances = [i for i in await registry.list() if i.service == "system"]
    finally:
        await nc.close()
    if not instances:
        raise typer.BadParameter("no system-service instance is registered: is the mesh up?")
    return f"{instances[0].host}:{instances[0].port}"


@app.command()
def edge(
    requests: Annotated[int, typer.Option(min=100, help="Calls per run.")] = 5000,
    concurrency: Annotated[list[int] | None, typer.Option(help="Concurrent callers.")] = None,
) -> None:
    """Call GetStatus directly and through Envoy at each concurrency; print JSON."""
    mesh = MeshSettings()
    levels = concurrency or [1, 64]

    async def run() -> dict[str, object]:
        direct = await _system_instance(mesh)
        return await compare(direct, f"{mesh.host}:{mesh.envoy.port}", levels, requests)

    typer.echo(json.dumps(asyncio.run(run()), indent=2))


if __name__ == "__main__":
    app()
