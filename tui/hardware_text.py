"""How the Hardware screen's figures read: pure functions of ``sutazai.hardware.v1`` messages.

No Textual here (the screen draws what these return), so the tests check the wording alone.
Every figure comes from the message given; one the message does not carry is a dash, and
paths, names and model output are data, always plain text, never markup.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from sutazai.hardware.v1 import hardware_service_pb2 as hardware_pb
from sutazai.tui.format import (
    MISSING,
    byte_rate,
    celsius,
    clock_time,
    count,
    data_size,
    date_time,
    decimal,
    duration,
    severity_name,
)

HOT_PERCENT = 90.0
"""A use at or above this share is drawn in the error colour (a core, a disk, memory)."""
WARM_PERCENT = 75.0
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan", "unknown": ""}
MODEL_OUTPUT = "model output"
"""What ``GetAdvice`` labels its text; the screen shows it whatever the service says."""


def grid() -> Table:
    """Two columns, a bold label and its value, the value wrapping under itself."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    return table


def files(number: int) -> str:
    """``1 file``, ``3 files``."""
    return f"{count(number)} file" if number == 1 else f"{count(number)} files"


def share(value: float) -> str:
    """A 0-100 share with one decimal (``23.4%``)."""
    return f"{value:.1f}%"


def share_style(value: float) -> str:
    """The colour of a 0-100 use: red when hot, yellow when warm."""
    if value >= HOT_PERCENT:
        return "bold red"
    if value >= WARM_PERCENT:
        return "yellow"
    return ""


def disk_rates(sample: hardware_pb.HostSample) -> tuple[float, float]:
    """Bytes read and written per second over every device (a device mounted twice once)."""
    seen: set[str] = set()
    read = written = 0.0
    for disk in sample.disks:
        device = disk.device or disk.mountpoint
        if device in seen:
            continue
        seen.add(device)
        read += disk.read_bytes_per_second
        written += disk.write_bytes_per_second
    return read, written


def network_rates(sample: hardware_pb.HostSample) -> tuple[float, float]:
    """Bytes sent and received per second over every interface (loopback included)."""
    sent = sum(n.sent_bytes_per_second for n in sample.networks)
    received = sum(n.received_bytes_per_second for n in sample.networks)
    return sent, received


def summary_line(sample: hardware_pb.HostSample, zone: tzinfo | None) -> Text:
    """``host  up 3d04h  load 1.20 0.80 0.50  8 cores  sampled 12:00:00``."""
    cpu = sample.cpu
    line = Text()
    line.append(sample.hostname or MISSING, style="bold")
    uptime = sample.uptime.seconds if sample.HasField("uptime") else None
    line.append(f"  up {duration(uptime) if uptime is not None else MISSING}")
    line.append(f"  load {decimal(cpu.load_1m)} {decimal(cpu.load_5m)} {decimal(cpu.load_15m)}")
    line.append(f"  {cpu.logical_cores} cores")
    line.append(f"  sampled {clock_time(sample.sampled_at, zone)}", style="dim")
    return line


def cpu_figure(sample: hardware_pb.HostSample) -> Text:
    """The CPU trend's figure."""
    return Text(share(sample.cpu.percent), style=share_style(sample.cpu.percent))


def memory_figure(sample: hardware_pb.HostSample) -> Text:
    """The memory trend's figure: share, and of how much."""
    memory = sample.memory
    text = Text(share(memory.percent), style=share_style(memory.percent))
    text.append(f" of {data_size(memory.total_bytes)}")
    return text


def disk_figure(sample: hardware_pb.HostSample) -> Text:
    """The disk trend's figure: read and write rates."""
    read, written = disk_rates(sample)
    return Text(f"r {byte_rate(read)} w {byte_rate(written)}")


def network_figure(sample: hardware_pb.HostSample) -> Text:
    """The network trend's figure: received and sent rates."""
    sent, received = network_rates(sample)
    return Text(f"in {byte_rate(received)} out {byte_rate(sent)}")


def host_figures(sample: hardware_pb.HostSample) -> Table:
    """CPU, load, each core, memory and swap: the Host pane's first lines."""
    cpu, memory = sample.cpu, sample.memory
    rows = grid()
    line = Text(share(cpu.percent), style=share_style(cpu.percent))
    physical = f" ({cpu.physical_cores} physical)" if cpu.physical_cores else ""
    line.append(f" of {cpu.logical_cores} logical cores{physical}")
    if cpu.frequency_mhz:
        line.append(f", {cpu.frequency_mhz:,.0f} MHz")
    rows.add_row("CPU", line)
    rows.add_row(
        "Load",
        Text(
            f"{decimal(cpu.load_1m)} {decimal(cpu.load_5m)} {decimal(cpu.load_15m)} (1, 5, 15 min)"
        ),
    )
    cores = Text()
    digits = len(str(max(0, len(cpu.per_core_percent) - 1)))
    for index, value in enumerate(cpu.per_core_percent):
        if index:
            cores.append("  ")
        # No-break spaces inside an entry: a line wraps between cores, never within one.
        cores.append(f"#{index:<{digits}}\u00a0")
        cores.append(f"{value:.0f}%".rjust(4).replace(" ", "\u00a0"), style=share_style(value))
    rows.add_row("Cores", cores if cpu.per_core_percent else Text(MISSING))
    used = Text(share(memory.percent), style=share_style(memory.percent))
    used.append(
        f" used: {data_size(memory.used_bytes)} of {data_size(memory.total_bytes)},"
        f" {data_size(memory.available_bytes)} available"
    )
    rows.add_row("Memory", used)
    if memory.swap_total_bytes:
        swap = Text(share(memory.swap_percent), style=share_style(memory.swap_percent))
        swap.append(
            f" used: {data_size(memory.swap_used_bytes)} of {data_size(memory.swap_total_bytes)}"
        )
    else:
        swap = Text("none configured", style="dim")
    rows.add_row("Swap", swap)
    return rows


def _scan(scan: hardware_pb.ScanSummary) -> str:
    elapsed = scan.elapsed.seconds + scan.elapsed.nanos / 1e9
    text = (
        f"{count(scan.files_scanned)} files, {count(scan.directories_scanned)} directories"
        f" scanned in {elapsed:.1f} s"
    )
    if scan.entries_skipped:
        text += f", {count(scan.entries_skipped)} skipped"
    if scan.truncated:
        text += f"; stopped at {scan.truncated_by or 'a limit'}"
    return text


def _buckets(buckets: Iterable[hardware_pb.Bucket]) -> Text:
    return Text(
        "  ".join(f"{b.label} {count(b.files)} ({data_size(b.bytes)})" for b in buckets) or MISSING
    )


def _root(root: hardware_pb.RootReport, zone: tzinfo | None) -> Table:
    disk, analysis = root.disk, root.analysis
    rows = grid()
    if root.HasField("disk"):
        line = Text(f"{disk.mountpoint or MISSING} ({disk.fstype or MISSING}): ")
        line.append(share(disk.percent), style=share_style(disk.percent))
        line.append(
            f" used, {data_size(disk.used_bytes)} of {data_size(disk.total_bytes)},"
            f" {data_size(disk.free_bytes)} free"
        )
        rows.add_row("Disk", line)
    rows.add_row(
        "Files",
        Text(
            f"{count(analysis.total_files)}, {data_size(analysis.total_bytes)}"
            f" ({_scan(analysis.scan)})"
        ),
    )
    kinds = [
        f"{e.extension or '(none)'} {data_size(e.bytes)} ({count(e.files)})"
        for e in list(analysis.by_extension)[:8]
    ]
    rows.add_row("By type", Text("  ".join(kinds) or MISSING))
    rows.add_row("By size", _buckets(analysis.by_size))
    rows.add_row("By age", _buckets(analysis.by_age))
    if root.top_duplicates:
        wasted = sum(g.wasted_bytes for g in root.top_duplicates)
        shown = len(root.top_duplicates)
        groups = Text(
            f"{'1 group wastes' if shown == 1 else f'the {shown} largest groups waste'}"
            f" {data_size(wasted)}"
        )
        for group in root.top_duplicates:
            groups.append(
                f"\n{group.sha256[:12]} {data_size(group.size_bytes)} x{len(group.files)},"
                f" {data_size(group.wasted_bytes)} wasted: "
            )
            groups.append(", ".join(f.path for f in group.files))
        rows.add_row("Duplicates", groups)
    else:
        rows.add_row("Duplicates", Text("none found"))
    largest = Text()
    for index, found in enumerate(root.largest_files):
        if index:
            largest.append("\n")
        largest.append(f"{data_size(found.size_bytes):>10}  {date_time(found.modified_at, zone)}  ")
        largest.append(found.path)
    rows.add_row("Largest", largest if root.largest_files else Text(MISSING))
    return rows


def storage_text(
    report: hardware_pb.GetStorageReportResponse, zone: tzinfo | None
) -> RenderableType:
    """The storage report: per root, its disk, make-up, duplicates and largest files."""
    parts: list[RenderableType] = [
        Text(f"Storage report generated {clock_time(report.generated_at, zone)}", style="bold")
    ]
    if not report.roots:
        parts.append(Text("No allowed root exists on this host.", style="dim"))
    for root in report.roots:
        parts.append(Text(f"\n{root.root}", style="bold underline"))
        parts.append(_root(root, zone))
    return Group(*parts)


def recommendations_text(
    reply: hardware_pb.GetRecommendationsResponse, zone: tzinfo | None
) -> RenderableType:
    """Each recommendation with its severity, reason, what to do, and the numbers behind it."""
    head = Text("Recommendations", style="bold")
    head.append(f" on the sample of {clock_time(reply.sample.sampled_at, zone)}", style="dim")
    if not reply.recommendations:
        return Group(head, Text("No rule fired: every measured figure is under its threshold."))
    rows = Table.grid(padding=(0, 1))
    rows.add_column(no_wrap=True)
    rows.add_column(overflow="fold")
    for found in reply.recommendations:
        severity = severity_name(found.severity)
        body = Text()
        body.append(f"{found.rule}: ", style="bold")
        body.append(found.reason)
        if found.action:
            body.append(f"\ndo: {found.action}")
            if found.rpc:
                body.append(f" ({found.rpc})", style="dim")
        for measured in found.measurements:
            unit = measured.unit if measured.unit == "%" else f" {measured.unit}".rstrip()
            body.append(
                f"\n{measured.name} = {decimal(measured.value)}{unit}"
                f" (threshold {decimal(measured.threshold)}{unit})"
            )
        rows.add_row(Text(severity.upper(), style=SEVERITY_STYLE[severity]), body)
    return Group(head, rows)


def advice_text(reply: hardware_pb.GetAdviceResponse, zone: tzinfo | None) -> Text:
    """The model's advice under its label, so nobody takes it for a measurement."""
    text = Text()
    text.append(f"Advice ({reply.label or MODEL_OUTPUT})", style="bold magenta")
    text.append(
        f": written by {reply.model or MISSING} from the sample of"
        f" {clock_time(reply.sample.sampled_at, zone)} and {len(reply.recommendations)}"
        " recommendations; generated, not measured",
        style="dim",
    )
    text.append("\n")
    text.append(reply.advice.strip() or MISSING)
    return text


def change_summary(
    title: str,
    report: hardware_pb.ChangeReport,
    when: str,
    *,
    rss: tuple[int | None, int | None] = (None, None),
) -> Text:
    """One line over the changes: what ran, when, and the totals it reported."""
    text = Text()
    if report.dry_run:
        text.append("Dry run", style="bold yellow")
        text.append(f" of {title} at {when}: ")
        text.append(
            f"{count(report.changed)} changes, {data_size(report.bytes_freed)} would be freed"
        )
    else:
        text.append("Run", style="bold green")
        text.append(f" of {title} at {when}: ")
        text.append(f"{count(report.changed)} changed, {data_size(report.bytes_freed)} freed")
    if report.failed:
        text.append(f", {count(report.failed)} failed", style="bold red")
    if report.HasField("scan"):
        text.append(f"; {_scan(report.scan)}", style="dim")
    before, after = rss
    if before is not None and after is not None and (before or after):
        text.append(f"; mesh RSS {data_size(before)} -> {data_size(after)}")
    return text


def outcome_cell(report: hardware_pb.ChangeReport, when: str) -> Text:
    """A dry run's or run's totals for the operations table (``3, 1.2 MiB at 12:00:03``)."""
    text = Text(f"{count(report.changed)}, {data_size(report.bytes_freed)} at {when}")
    if report.failed:
        text.append(f" {count(report.failed)} failed", style="bold red")
    return text


def quarantine_detail(entry: hardware_pb.QuarantinedFile, zone: tzinfo | None) -> Text:
    """Everything the quarantine knows of one file."""
    text = Text()
    text.append(entry.original_path, style="bold")
    text.append(
        f"\n{data_size(entry.size_bytes)}, mode {entry.mode:o}, modified"
        f" {date_time(entry.modified_at, zone)}; quarantined"
        f" {date_time(entry.quarantined_at, zone)} by {entry.actor or MISSING}"
        f" ({entry.operation or MISSING}), purgeable from {date_time(entry.purgeable_at, zone)}"
    )
    text.append(f"\nentry {entry.entry_id}  sha256 {entry.sha256 or MISSING}", style="dim")
    return text


def temperature_cells(found: hardware_pb.Temperature) -> list[Text]:
    """A sensor's row: sensor, label, now, high, critical."""
    now = Text(celsius(found.celsius), justify="right")
    if found.critical_celsius and found.celsius >= found.critical_celsius:
        now.stylize("bold red")
    elif found.high_celsius and found.celsius >= found.high_celsius:
        now.stylize("yellow")
    return [
        Text(found.sensor),
        Text(found.label or MISSING),
        now,
        Text(celsius(found.high_celsius), justify="right"),
        Text(celsius(found.critical_celsius), justify="right"),
    ]


def gpu_cells(gpu: hardware_pb.Gpu) -> list[Text]:
    """A GPU's row: index, name, use, memory, temperature."""
    memory = (
        f"{data_size(gpu.memory_used_bytes)} of {data_size(gpu.memory_total_bytes)}"
        if gpu.memory_total_bytes
        else MISSING
    )
    return [
        Text(str(gpu.index), justify="right"),
        Text(gpu.name or MISSING),
        Text(
            share(gpu.utilization_percent),
            justify="right",
            style=share_style(gpu.utilization_percent),
        ),
        Text(memory, justify="right"),
        Text(celsius(gpu.temperature_celsius), justify="right"),
    ]
