"""``sutazai hardware``: the host's numbers, its storage, safe optimisations and the quarantine.

Every command calls :class:`sutazai.client.MeshClient` with the saved session. Changes
(``clean``, ``dedupe``, ``compress-logs``, ``rotate-logs``, ``renice``, ``reclaim-memory``,
``quarantine purge``) are **dry runs unless ``--apply``** is given: the dry run prints exactly
what would change. A refusal ends with exit status 1 and the status's name
(``PERMISSION_DENIED`` for a path outside the allowed roots or a caller without the role,
``INVALID_ARGUMENT`` with each field's violation); a bad option with 2; Ctrl-C with 130.
Tables for people by default; ``--json`` prints proto JSON with the proto's field names.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

import typer
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich import box
from rich.table import Table
from rich.text import Text

from sutazai.client import MeshClient
from sutazai.client.mesh import scan_limits
from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.ops.cli.console import out
from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.mesh_calls import call_mesh
from sutazai.ops.cli.tasks import json_list, proto_json, streaming

hardware = typer.Typer(
    name="hardware",
    help="Host status and metrics, storage analysis, safe optimisations, the quarantine.",
    no_args_is_help=True,
)
quarantine = typer.Typer(
    name="quarantine",
    help="Files moved aside by changes: list, restore, purge (after retention).",
    no_args_is_help=True,
)
hardware.add_typer(quarantine)

JsonOption = Annotated[bool, typer.Option("--json", help="Print proto JSON.")]
ApplyOption = Annotated[
    bool, typer.Option("--apply", help="Make the changes (without it: a dry run that only lists).")
]
PathArgument = Annotated[
    str,
    typer.Argument(
        metavar="[PATH]", help="A directory under an allowed root (default: the first root)."
    ),
]
DepthOption = Annotated[
    int, typer.Option("--max-depth", min=0, help="Directory levels walked (0: the default).")
]
FilesOption = Annotated[
    int, typer.Option("--max-files", min=0, help="Files looked at (0: the default).")
]
SecondsOption = Annotated[
    float, typer.Option("--max-seconds", min=0.0, help="Walk time (0: the default).")
]
HiddenOption = Annotated[
    bool, typer.Option("--hidden", help="Also walk hidden directories (names starting with .).")
]
SEVERITY = {
    pb.SEVERITY_INFO: ("info", "cyan"),
    pb.SEVERITY_WARNING: ("warning", "yellow"),
    pb.SEVERITY_CRITICAL: ("critical", "bold red"),
}


def _limits(depth: int, files: int, seconds: float, hidden: bool) -> pb.ScanLimits:
    return scan_limits(max_depth=depth, max_files=files, max_seconds=seconds, include_hidden=hidden)


def _emit(message: Message, as_json: bool) -> bool:
    if as_json:
        typer.echo(proto_json(message))
    return as_json


# --- measurements -------------------------------------------------------------------------


@hardware.command()
def status(
    ctx: typer.Context,
    top: Annotated[
        int, typer.Option("--top", "-n", min=0, max=100, help="Busiest processes shown.")
    ] = 10,
    as_json: JsonOption = False,
) -> None:
    """The host now: CPU, memory, disks, network, busiest processes, sensors, GPUs."""
    sample = call_mesh(
        mesh_settings(ctx), lambda client: client.get_hardware_status(top_processes=top or 10)
    )
    if _emit(sample, as_json):
        return
    out.print(render_sample(sample, processes=top > 0))


@hardware.command()
def watch(
    ctx: typer.Context,
    interval: Annotated[
        float, typer.Option("--interval", "-i", min=0.25, max=60.0, help="Seconds per sample.")
    ] = 1.0,
    count: Annotated[
        int, typer.Option("--count", "-c", min=0, help="Stop after N (0: never).")
    ] = 0,
    as_json: JsonOption = False,
) -> None:
    """One line per sample (CPU, memory, disk and network rates) until Ctrl-C."""

    async def run(client: MeshClient) -> None:
        seen = 0
        async for sample in client.watch_hardware_metrics(interval_seconds=interval):
            if as_json:
                typer.echo(proto_json(sample, indent=None))
            else:
                out.print(sample_line(sample))
            seen += 1
            if count and seen >= count:
                return

    streaming(mesh_settings(ctx), run)


@hardware.command()
def recommendations(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The threshold rules that fire on a fresh sample, with their reasons and numbers."""
    reply = call_mesh(mesh_settings(ctx), lambda client: client.hardware_recommendations())
    if _emit(reply, as_json):
        return
    out.print(render_recommendations(reply.recommendations))


@hardware.command()
def advice(
    ctx: typer.Context,
    question: Annotated[
        str, typer.Argument(metavar="[QUESTION]", help="What to focus on (500 characters).")
    ] = "",
    model: Annotated[str, typer.Option("--model", "-m", help="Inference model.")] = "",
    as_json: JsonOption = False,
) -> None:
    """A model's plain-words explanation of a sample and its recommendations (model output)."""
    reply = call_mesh(
        mesh_settings(ctx), lambda client: client.hardware_advice(model=model, question=question)
    )
    if _emit(reply, as_json):
        return
    out.print(Text(f"[{reply.label}, {reply.model}]", style="dim"))
    out.print(Text(reply.advice))


# --- storage ------------------------------------------------------------------------------


@hardware.command()
def analyze(
    ctx: typer.Context,
    path: PathArgument = "",
    max_depth: DepthOption = 0,
    max_files: FilesOption = 0,
    max_seconds: SecondsOption = 0.0,
    hidden: HiddenOption = False,
    as_json: JsonOption = False,
) -> None:
    """Totals, bytes by extension, size and age buckets of a directory."""
    limits = _limits(max_depth, max_files, max_seconds, hidden)
    reply = call_mesh(mesh_settings(ctx), lambda c: c.analyze_storage(path, limits=limits))
    if _emit(reply, as_json):
        return
    out.print(scan_line(reply.scan))
    out.print(Text(f"{reply.total_files:,} files, {size(reply.total_bytes)}"))
    table = Table("extension", "files", "bytes", box=box.SIMPLE, title="by extension")
    for usage in list(reply.by_extension)[:20]:
        table.add_row(usage.extension or "(none)", f"{usage.files:,}", size(usage.bytes))
    out.print(table)
    buckets = Table("size", "files", "bytes", "age", "files", "bytes", box=box.SIMPLE)
    for by_size, by_age in zip(reply.by_size, reply.by_age, strict=False):
        buckets.add_row(
            by_size.label,
            f"{by_size.files:,}",
            size(by_size.bytes),
            by_age.label,
            f"{by_age.files:,}",
            size(by_age.bytes),
        )
    out.print(buckets)


@hardware.command()
def duplicates(
    ctx: typer.Context,
    path: PathArgument = "",
    min_size: Annotated[int, typer.Option("--min-size", min=0, help="Smallest file, bytes.")] = 0,
    groups: Annotated[
        int, typer.Option("--groups", min=0, max=1000, help="Groups shown (0: 100).")
    ] = 0,
    max_depth: DepthOption = 0,
    max_files: FilesOption = 0,
    max_seconds: SecondsOption = 0.0,
    hidden: HiddenOption = False,
    as_json: JsonOption = False,
) -> None:
    """Groups of identical files (SHA-256), largest waste first; the first of each is kept."""
    limits = _limits(max_depth, max_files, max_seconds, hidden)
    reply = call_mesh(
        mesh_settings(ctx),
        lambda c: c.find_duplicates(
            path, min_size_bytes=min_size, max_groups=groups, limits=limits
        ),
    )
    if _emit(reply, as_json):
        return
    out.print(scan_line(reply.scan))
    out.print(
        Text(
            f"{reply.total_groups:,} groups, {size(reply.total_wasted_bytes)} wasted "
            f"({reply.files_hashed:,} hashed, {reply.cache_hits:,} from the cache)"
        )
    )
    for group in reply.groups:
        out.print(Text(f"{group.sha256[:16]}  {size(group.size_bytes)} x {len(group.files)}"))
        for index, entry in enumerate(group.files):
            mark = "keep" if index == 0 else "copy"
            out.print(Text(f"  {mark}  {entry.path}", style="green" if index == 0 else ""))


@hardware.command(name="large-files")
def large_files(
    ctx: typer.Context,
    path: PathArgument = "",
    min_size: Annotated[
        int, typer.Option("--min-size", min=0, help="Smallest file, bytes (0: 100 MiB).")
    ] = 0,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, max=1000, help="Shown.")] = 0,
    max_depth: DepthOption = 0,
    max_files: FilesOption = 0,
    max_seconds: SecondsOption = 0.0,
    hidden: HiddenOption = False,
    as_json: JsonOption = False,
) -> None:
    """The largest files at or above a size, largest first."""
    limits = _limits(max_depth, max_files, max_seconds, hidden)
    reply = call_mesh(
        mesh_settings(ctx),
        lambda c: c.find_large_files(path, min_size_bytes=min_size, max_files=limit, limits=limits),
    )
    if _emit(reply, as_json):
        return
    out.print(scan_line(reply.scan))
    out.print(render_files(reply.files, title=f"{reply.total_files:,} files"))


@hardware.command()
def report(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every allowed root: disk use, analysis, top duplicates and largest files."""
    reply = call_mesh(mesh_settings(ctx), lambda client: client.storage_report())
    if _emit(reply, as_json):
        return
    for root in reply.roots:
        disk = root.disk
        out.print(
            Text(
                f"{root.root}: {root.analysis.total_files:,} files, "
                f"{size(root.analysis.total_bytes)}; disk {disk.mountpoint} "
                f"{disk.percent:.0f}% used, {size(disk.free_bytes)} free",
                style="bold",
            )
        )
        wasted = sum(group.wasted_bytes for group in root.top_duplicates)
        out.print(Text(f"  top duplicates waste {size(wasted)}"))
        out.print(render_files(root.largest_files, title="largest files"))


# --- changes ------------------------------------------------------------------------------


@hardware.command()
def clean(
    ctx: typer.Context,
    path: PathArgument = "",
    older_than_days: Annotated[
        int, typer.Option("--older-than-days", min=0, max=3650, help="Age (0: 3 days).")
    ] = 0,
    pattern: Annotated[
        list[str] | None,
        typer.Option("--pattern", "-p", help="Glob on the file name (repeatable), e.g. '*.tmp'."),
    ] = None,
    apply: ApplyOption = False,
    as_json: JsonOption = False,
) -> None:
    """Move old temporary and cache files into the quarantine (operators)."""
    change = call_mesh(
        mesh_settings(ctx),
        lambda c: c.clean_files(
            path, older_than_days=older_than_days, patterns=pattern or (), dry_run=not apply
        ),
    )
    print_change(change, as_json)


@hardware.command()
def dedupe(
    ctx: typer.Context,
    path: PathArgument = "",
    min_size: Annotated[int, typer.Option("--min-size", min=0, help="Smallest file, bytes.")] = 0,
    apply: ApplyOption = False,
    as_json: JsonOption = False,
) -> None:
    """Keep the newest file of each duplicate group; quarantine the others (operators)."""
    change = call_mesh(
        mesh_settings(ctx),
        lambda c: c.deduplicate(path, dry_run=not apply, min_size_bytes=min_size),
    )
    print_change(change, as_json)


@hardware.command(name="compress-logs")
def compress_logs(
    ctx: typer.Context,
    path: PathArgument = "",
    older_than_days: Annotated[
        int, typer.Option("--older-than-days", min=0, max=3650, help="Age (0: 7 days).")
    ] = 0,
    apply: ApplyOption = False,
    as_json: JsonOption = False,
) -> None:
    """Gzip old logs when smaller; the originals go into the quarantine (operators)."""
    change = call_mesh(
        mesh_settings(ctx),
        lambda c: c.compress_logs(path, older_than_days=older_than_days, dry_run=not apply),
    )
    print_change(change, as_json)


@hardware.command(name="rotate-logs")
def rotate_logs(
    ctx: typer.Context,
    path: PathArgument = "",
    min_size: Annotated[
        int, typer.Option("--min-size", min=0, help="Rotate logs of at least this (0: 10 MiB).")
    ] = 0,
    keep: Annotated[
        int, typer.Option("--keep", min=0, max=50, help="Generations kept (0: 5).")
    ] = 0,
    apply: ApplyOption = False,
    as_json: JsonOption = False,
) -> None:
    """Rotate large logs; generations beyond --keep go into the quarantine (operators)."""
    change = call_mesh(
        mesh_settings(ctx),
        lambda c: c.rotate_logs(path, min_size_bytes=min_size, keep=keep, dry_run=not apply),
    )
    print_change(change, as_json)


@hardware.command()
def renice(
    ctx: typer.Context,
    min_cpu: Annotated[
        float, typer.Option("--min-cpu", min=0.0, help="CPU share of a hog, % (0: 25).")
    ] = 0.0,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, max=20, help="Most processes (0: 5).")
    ] = 0,
    nice: Annotated[int, typer.Option("--nice", min=0, max=19, help="New niceness (0: 10).")] = 0,
    apply: ApplyOption = False,
    as_json: JsonOption = False,
) -> None:
    """Lower the priority of your CPU hogs; never system or mesh processes (operators)."""
    change = call_mesh(
        mesh_settings(ctx),
        lambda c: c.renice_processes(
            dry_run=not apply, min_cpu_percent=min_cpu, max_processes=limit, nice=nice
        ),
    )
    print_change(change, as_json)


@hardware.command(name="reclaim-memory")
def reclaim_memory(
    ctx: typer.Context, apply: ApplyOption = False, as_json: JsonOption = False
) -> None:
    """Garbage collection and heap trimming in the mesh's service processes (operators)."""
    reply = call_mesh(mesh_settings(ctx), lambda c: c.reclaim_memory(dry_run=not apply))
    if _emit(reply, as_json):
        return
    print_change(reply.report, False)
    out.print(Text(f"resident: {size(reply.rss_before_bytes)} -> {size(reply.rss_after_bytes)}"))


# --- quarantine ---------------------------------------------------------------------------


@quarantine.command(name="list")
def list_quarantine(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100_000)] = 1000,
    as_json: JsonOption = False,
) -> None:
    """Quarantined files, newest first (operators)."""
    found = call_mesh(mesh_settings(ctx), lambda c: c.list_quarantine(limit=limit))
    if as_json:
        typer.echo(json_list(found))
        return
    out.print(render_quarantine(found))


@quarantine.command()
def restore(
    ctx: typer.Context,
    entry_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Entries to restore.")],
    as_json: JsonOption = False,
) -> None:
    """Move quarantined files back where they were, byte for byte (operators)."""
    results = call_mesh(mesh_settings(ctx), lambda c: c.restore_quarantined(entry_ids))
    if as_json:
        typer.echo(json_list(results))
    else:
        for result in results:
            if result.restored:
                out.print(Text(f"restored {result.entry_id} -> {result.original_path}"))
            else:
                out.print(Text(f"not restored {result.entry_id}: {result.error}", style="red"))
    if not all(result.restored for result in results):
        raise typer.Exit(1)


@quarantine.command()
def purge(
    ctx: typer.Context,
    entry_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="[ID...]", help="Entries (default: every one past retention)."),
    ] = None,
    apply: ApplyOption = False,
    as_json: JsonOption = False,
) -> None:
    """Delete for good the entries past their retention (admins)."""
    reply = call_mesh(
        mesh_settings(ctx), lambda c: c.purge_quarantine(entry_ids or (), dry_run=not apply)
    )
    if _emit(reply, as_json):
        return
    verb = "would purge" if reply.dry_run else "purged"
    out.print(Text(f"{verb} {len(reply.purged)} entries, {size(reply.bytes_freed)}"))
    out.print(render_quarantine(reply.purged))


# --- rendering ----------------------------------------------------------------------------


def size(count: float) -> str:
    """Bytes for people: ``1.5 MiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def when(stamp: Timestamp) -> str:
    """A timestamp in UTC to the second, or ``-`` when unset."""
    if not stamp.seconds and not stamp.nanos:
        return "-"
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")


def sample_line(sample: pb.HostSample) -> Text:
    """One line per sample, for ``watch``."""
    read = sum(d.read_bytes_per_second for d in sample.disks)
    written = sum(d.write_bytes_per_second for d in sample.disks)
    sent = sum(n.sent_bytes_per_second for n in sample.networks)
    received = sum(n.received_bytes_per_second for n in sample.networks)
    at = sample.sampled_at.ToDatetime(tzinfo=UTC).strftime("%H:%M:%S")
    return Text(
        f"{at}  cpu {sample.cpu.percent:5.1f}%  load {sample.cpu.load_1m:5.2f}  "
        f"mem {sample.memory.percent:5.1f}%  disk r {size(read)}/s w {size(written)}/s  "
        f"net tx {size(sent)}/s rx {size(received)}/s"
    )


def render_sample(sample: pb.HostSample, *, processes: bool) -> Table:
    """The host's numbers as one table (and the processes beneath)."""
    cpu, memory = sample.cpu, sample.memory
    table = Table("what", "value", box=box.SIMPLE, title=f"{sample.hostname}")
    table.add_row("uptime", f"{sample.uptime.ToTimedelta()}")
    table.add_row(
        "cpu",
        f"{cpu.percent:.1f}% of {cpu.logical_cores} cores "
        f"(each: {', '.join(f'{p:.0f}' for p in cpu.per_core_percent)}), "
        f"load {cpu.load_1m:.2f} {cpu.load_5m:.2f} {cpu.load_15m:.2f}",
    )
    table.add_row(
        "memory",
        f"{memory.percent:.1f}% of {size(memory.total_bytes)}, "
        f"{size(memory.available_bytes)} available; swap {memory.swap_percent:.1f}%",
    )
    for disk in sample.disks:
        table.add_row(
            f"disk {disk.mountpoint}",
            f"{disk.percent:.1f}% of {size(disk.total_bytes)}, {size(disk.free_bytes)} free; "
            f"r {size(disk.read_bytes_per_second)}/s w {size(disk.write_bytes_per_second)}/s",
        )
    for net in sample.networks:
        state = "up" if net.is_up else "down"
        table.add_row(
            f"net {net.interface}",
            f"{state}; tx {size(net.sent_bytes_per_second)}/s "
            f"rx {size(net.received_bytes_per_second)}/s",
        )
    for reading in sample.temperatures:
        table.add_row(f"temp {reading.sensor} {reading.label}".strip(), f"{reading.celsius:.0f} °C")
    for gpu in sample.gpus:
        table.add_row(
            f"gpu {gpu.index}",
            f"{gpu.name}: {gpu.utilization_percent:.0f}%, {size(gpu.memory_used_bytes)} of "
            f"{size(gpu.memory_total_bytes)}",
        )
    if processes and sample.top_processes:
        for process in sample.top_processes:
            mesh = " (mesh)" if process.mesh else ""
            table.add_row(
                f"pid {process.pid}",
                f"{process.name}{mesh} [{process.username}]: {process.cpu_percent:.1f}% cpu, "
                f"{size(process.memory_bytes)}, nice {process.nice}",
            )
    return table


def render_recommendations(found: Sequence[pb.Recommendation]) -> Table | Text:
    """Recommendations with severity, reason, action and the RPC that does it."""
    if not found:
        return Text("no rule fired")
    table = Table("severity", "rule", "reason", "action", box=box.SIMPLE)
    for item in found:
        label, style = SEVERITY.get(item.severity, ("info", "cyan"))
        action = f"{item.action} ({item.rpc})" if item.rpc else item.action
        table.add_row(Text(label, style=style), item.rule, item.reason, action)
    return table


def scan_line(scan: pb.ScanSummary) -> Text:
    """What a walk covered."""
    stopped = f", stopped at {scan.truncated_by}" if scan.truncated else ""
    return Text(
        f"{scan.resolved_path}: {scan.files_scanned:,} files in {scan.directories_scanned:,} "
        f"directories, {scan.entries_skipped:,} skipped{stopped}",
        style="dim",
    )


def render_files(files: Sequence[pb.FileEntry], *, title: str) -> Table:
    """Files with their size and modification time."""
    table = Table("size", "modified (UTC)", "path", box=box.SIMPLE, title=title)
    for entry in files:
        table.add_row(size(entry.size_bytes), when(entry.modified_at), entry.path)
    return table


def print_change(change: pb.ChangeReport, as_json: bool) -> None:
    """A change report: each change (or planned one), then the totals."""
    if _emit(change, as_json):
        return
    if change.HasField("scan"):
        out.print(scan_line(change.scan))
    table = Table("action", "target", "bytes", "reason", "result", box=box.SIMPLE)
    for item in change.changes:
        if item.error:
            result = Text(item.error, style="red")
        elif change.dry_run:
            result = Text("would change", style="yellow")
        else:
            result = Text(f"done {item.quarantine_id}".strip(), style="green")
        table.add_row(item.action, item.target, size(item.bytes), item.reason, result)
    out.print(table)
    verb = "dry run: would change" if change.dry_run else "changed"
    out.print(
        Text(
            f"{verb} {change.changed}, {size(change.bytes_freed)} freed, {change.failed} failed"
            + ("; run again with --apply to make the changes" if change.dry_run else "")
        )
    )


def render_quarantine(files: Sequence[pb.QuarantinedFile]) -> Table:
    """Quarantined files with where they came from and when they may be purged."""
    table = Table(
        "entry", "size", "quarantined", "by", "operation", "purgeable", "path", box=box.SIMPLE
    )
    now = datetime.now(UTC)
    for entry in files:
        purgeable = entry.purgeable_at.ToDatetime(tzinfo=UTC)
        table.add_row(
            entry.entry_id,
            size(entry.size_bytes),
            when(entry.quarantined_at),
            entry.actor,
            entry.operation,
            "now" if purgeable <= now else when(entry.purgeable_at),
            entry.original_path,
        )
    return table
