"""``python -m sutazai.ops.bench``: benchmarks, each printing JSON.

``signatures`` needs nothing running; for the others start the mesh first (``sutazai up
--detach``, plaintext on loopback). Raise the edge's per-caller limits for the run
(``SUTAZAI_EDGE__USER_RATE_LIMIT_*`` for signed-in calls, ``SUTAZAI_EDGE__ADDRESS_RATE_LIMIT_*``
for anonymous ones; one client is one caller), or the limiter, not the path, is what gets
measured.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from sutazai.ops.bench import auth as auth_bench
from sutazai.ops.bench import edge as edge_bench
from sutazai.ops.bench import hardware as hardware_bench
from sutazai.ops.bench import inference as inference_bench
from sutazai.ops.bench import load as load_bench
from sutazai.ops.bench import signatures as signatures_bench
from sutazai.ops.bench.accounts import sign_in
from sutazai.ops.bench.errors import BenchError
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import MeshSettings
from sutazai.services.hardware.errors import HardwareError

app = typer.Typer(add_completion=False, no_args_is_help=True)

Requests = Annotated[int, typer.Option(min=100, help="Calls per run.")]
Concurrency = Annotated[list[int] | None, typer.Option(help="Concurrent callers (repeatable).")]


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
def edge(requests: Requests = 5000, concurrency: Concurrency = None) -> None:
    """GetStatus called directly and through Envoy (anonymous)."""
    mesh = MeshSettings()

    async def run() -> dict[str, object]:
        direct = await _system_instance(mesh)
        return await edge_bench.compare(
            direct, f"{mesh.host}:{mesh.envoy.port}", concurrency or [1, 64], requests
        )

    typer.echo(json.dumps(asyncio.run(run()), indent=2))


@app.command()
def auth(
    requests: Requests = 5000,
    concurrency: Concurrency = None,
    logins: Annotated[int, typer.Option(min=10, help="Sequential logins timed.")] = 100,
) -> None:
    """Login latency, and token-verified against anonymous GetStatus through Envoy."""
    mesh = MeshSettings()
    result = asyncio.run(
        auth_bench.compare(
            f"{mesh.host}:{mesh.envoy.port}", concurrency or [1, 64], requests, logins
        )
    )
    typer.echo(json.dumps(result, indent=2))


@app.command()
def signatures(
    calls: Annotated[int, typer.Option(min=100, help="Calls per measurement.")] = 2000,
) -> None:
    """Sign and verify cost of EdDSA and ES256 tokens in-process (no mesh needed)."""
    typer.echo(json.dumps(signatures_bench.compare(calls), indent=2))


@app.command()
def load(
    rate: Annotated[float, typer.Option(min=1, help="Calls started per second.")] = 1000,
    seconds: Annotated[float, typer.Option(min=1, help="How long to keep it up.")] = 30,
    nice: Annotated[
        int, typer.Option(min=0, max=19, help="Lower this process's CPU priority by this much.")
    ] = 0,
) -> None:
    """Open-loop background load on the edge: anonymous GetStatus at a fixed rate."""
    if nice:
        os.nice(nice)
    mesh = MeshSettings()
    result = asyncio.run(load_bench.paced(f"{mesh.host}:{mesh.envoy.port}", rate, seconds))
    typer.echo(json.dumps(load_bench.as_json(result), indent=2))


@app.command()
def dashboard(
    rate: Annotated[float, typer.Option(min=1, help="Background calls per second.")] = 1000,
    presses: Annotated[int, typer.Option(min=10, help="Keys measured per phase.")] = 200,
    width: Annotated[int, typer.Option(min=80)] = 160,
    height: Annotated[int, typer.Option(min=24)] = 48,
    load_nice: Annotated[
        int,
        typer.Option(
            min=0,
            max=19,
            help="Niceness of the load generator: the clients of a real edge are not on the "
            "operator's host, so their CPU need not compete with the dashboard's.",
        ),
    ] = 0,
) -> None:
    """Dashboard key latency, idle and while the edge takes ``rate`` requests/s."""
    # Imported here: the other benchmarks do not need Textual loaded.
    from sutazai.ops.bench import dashboard as dashboard_bench

    try:
        result = asyncio.run(
            dashboard_bench.measure(
                MeshSettings(),
                rate=rate,
                presses=presses,
                size=(width, height),
                load_nice=load_nice,
            )
        )
    except BenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2))


@app.command()
def inference(
    runs: Annotated[
        int, typer.Option(min=1, help="Rounds of the four sides (after a warm-up).")
    ] = 5,
    max_tokens: Annotated[int, typer.Option(min=2, max=4096, help="Tokens per generation.")] = 128,
    model: Annotated[str, typer.Option(help="The mesh's embedded model name.")] = "",
    cached_calls: Annotated[int, typer.Option(min=10, help="Cached chat replies timed.")] = 200,
    concurrency: Concurrency = None,
    chat_replies: Annotated[
        int, typer.Option(min=1, help="Streamed chats per concurrency (at least 2 per caller).")
    ] = 16,
    chat_max_tokens: Annotated[int, typer.Option(min=1, max=4096, help="Tokens per chat.")] = 32,
) -> None:
    """Inference and chat through the mesh against raw llama-cpp-python and llama_cpp.server.

    Tokens/s and time to first token of raw llama-cpp-python, a ``llama_cpp.server`` process
    (started here on a free port), the mesh over gRPC and over ``/openai/v1``, all on the
    embedded model's GGUF with the mesh's embedded settings (threads, context, batch); then the
    cached chat reply's latency and chat throughput at each concurrency (default 1, 8 and 32).
    Every generation and chat is a rate-limited call of one user: raise
    ``SUTAZAI_AUTH__USER_RATE_BURST`` and the edge's per-user limits (docs/benchmarks.md).
    """
    mesh = MeshSettings()
    embedded = mesh.inference.embedded
    try:
        result = asyncio.run(
            inference_bench.compare(
                f"{mesh.host}:{mesh.envoy.port}",
                embedded,
                model=model or embedded.model_name,
                model_path=embedded.model_path,
                runs=runs,
                max_tokens=max_tokens,
                cached_calls=cached_calls,
                concurrencies=concurrency or [1, 8, 32],
                chat_replies=chat_replies,
                chat_max_tokens=chat_max_tokens,
            )
        )
    except BenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2))


@app.command("chat-cache")
def chat_cache(
    calls: Annotated[int, typer.Option(min=10, help="Calls of each kind timed.")] = 500,
    model: Annotated[str, typer.Option(help="The mesh's embedded model name.")] = "",
    max_tokens: Annotated[int, typer.Option(min=1, max=4096, help="Tokens of the reply.")] = 32,
) -> None:
    """Only the cached chat reply of ``inference``: REST and gRPC beside the floors.

    One generation fills the cache, then ``calls`` of each kind run round-robin: the cached
    reply over REST and gRPC, a signed-in GetStatus over both, a health check through Envoy.
    """
    mesh = MeshSettings()
    edge = f"{mesh.host}:{mesh.envoy.port}"

    async def run() -> dict[str, object]:
        token = await sign_in(edge)
        return await inference_bench.cached_latency(
            edge,
            token,
            model=model or mesh.inference.embedded.model_name,
            calls=calls,
            max_tokens=max_tokens,
        )

    try:
        result = asyncio.run(run())
    except BenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2))


@app.command("hardware-storage")
def hardware_storage(
    files: Annotated[int, typer.Option(min=100, max=2_000_000, help="Files generated.")] = 100_000,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per contender.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the generated tree.")] = 11,
    duplicate_share: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share of files that copy an earlier one.")
    ] = 0.1,
    directory: Annotated[
        Path | None,
        typer.Option(help="Where the tree goes (default: /dev/shm if there, else the temp dir)."),
    ] = None,
) -> None:
    """Storage analysis and duplicates over a generated tree, beside du, find and fdupes.

    No mesh needed: the hardware service's domain code runs in-process on the same tree as
    the baselines (docs/benchmarks.md).
    """
    try:
        result = hardware_bench.measure(
            files=files,
            runs=runs,
            seed=seed,
            duplicate_share=duplicate_share,
            parent=directory or hardware_bench.default_parent(),
        )
    except (BenchError, HardwareError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2))


@app.command()
def tasks(
    tasks: Annotated[int, typer.Option(min=10, help="Tasks per side and round.")] = 2000,
    concurrency: Annotated[
        int, typer.Option(min=1, max=1024, help="Tasks in flight (each side).")
    ] = 64,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds of every side, alternating.")] = 1,
    celery_fsync: Annotated[
        list[str] | None,
        typer.Option(help="Celery side(s): its Redis's appendfsync, always or everysec."),
    ] = None,
    mesh_only: Annotated[
        bool, typer.Option(help="The mesh side alone (no Celery), e.g. to compare two builds.")
    ] = False,
) -> None:
    """No-op tasks end to end: the mesh (gRPC create to SUCCEEDED stored) against Celery 5.

    The mesh side creates ``bench.noop`` tasks through Envoy as a throw-away user; the
    benchmark's agent (``[agents.bench]``, run here in a process of its own) completes them.
    The Celery side runs the same round trip on Redis (broker and results) with a worker
    process, each started here in a temporary directory. Each round also reports the CPU time
    every process spent per task. Every task is one rate-limited
    ``CreateTask`` of one user: raise ``SUTAZAI_AUTH__USER_RATE_*`` and the edge's per-user
    limits (docs/benchmarks.md).
    """
    # Imported here: Celery is a development dependency the other benchmarks do not need.
    from sutazai.ops.bench import tasks as tasks_bench

    try:
        result = asyncio.run(
            tasks_bench.compare(
                MeshSettings(),
                tasks=tasks,
                concurrency=concurrency,
                rounds=rounds,
                fsyncs=[] if mesh_only else celery_fsync or ["always", "everysec"],
            )
        )
    except BenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2))


if __name__ == "__main__":
    app()
