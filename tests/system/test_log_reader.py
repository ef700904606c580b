"""Reading component logs from files: listing, tailing and following, without a server."""

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sutazai.runtime.logfiles import log_path, logs_dir
from sutazai.services.system.log_reader import LogReader, follow, tail
from sutazai.services.system.logs import Level, LineFilter, LogLine

FAST = 0.01


@pytest.fixture
def state(tmp_path: Path) -> Path:
    logs_dir(tmp_path).mkdir()
    return tmp_path


def write(state: Path, component: str, text: str, mode: str = "a") -> None:
    with log_path(state, component).open(mode) as sink:
        sink.write(text)


def test_lists_regular_logs_only(state: Path, tmp_path: Path) -> None:
    write(state, "postgres", "a\n")
    write(state, "auth-2", "bb\n")
    secret = tmp_path / "secrets.json"
    secret.write_text("{}")
    (logs_dir(state) / "planted.log").symlink_to(secret)
    (logs_dir(state) / "dir.log").mkdir()
    os.mkfifo(logs_dir(state) / "fifo.log")
    (logs_dir(state) / ".hidden.log").write_text("x")
    (logs_dir(state) / "notes.txt").write_text("x")
    listed = LogReader(state).list()
    assert [(f.component, f.size_bytes) for f in listed] == [("auth-2", 3), ("postgres", 2)]


def test_a_symlink_fifo_or_bad_name_opens_as_missing(state: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secrets.json"
    secret.write_text("{}")
    (logs_dir(state) / "planted.log").symlink_to(secret)
    os.mkfifo(logs_dir(state) / "fifo.log")
    reader = LogReader(state)
    assert reader.open("planted") is None
    assert reader.open("fifo") is None
    assert reader.open("absent") is None
    assert reader.open("../secrets") is None
    assert LogReader(tmp_path / "nowhere").list() == []


def test_tail_returns_the_last_matching_lines_oldest_first(state: Path) -> None:
    lines = [f"[1] 2026/11/30 1 [{'ERR' if i % 3 == 0 else 'INF'}] line {i}" for i in range(3000)]
    write(state, "nats", "\n".join(lines) + "\n")
    handle = LogReader(state).open("nats")
    assert handle is not None
    with handle:
        last, end = tail(handle, 3, LineFilter())
        assert [line.text for line in last] == lines[-3:]
        assert end == log_path(state, "nats").stat().st_size
        errors, _ = tail(handle, 2, LineFilter(min_level=Level.ERROR))
        assert [line.text for line in errors] == [lines[2997], lines[2994]][::-1]
        found, _ = tail(handle, 5, LineFilter(contains="LINE 299"))
        assert [line.text for line in found] == lines[2995:]
        assert tail(handle, 5, LineFilter(contains="absent"))[0] == []
        assert tail(handle, 0, LineFilter())[0] == []


async def next_lines(stream: AsyncIterator[list[LogLine]]) -> list[str]:
    """The texts of the next non-empty batch (within 5 s)."""
    async with asyncio.timeout(5):
        while not (batch := await anext(stream)):
            pass
    return [line.text for line in batch]


async def test_follow_delivers_appended_lines_and_survives_truncation_and_replacement(
    state: Path,
) -> None:
    write(state, "auth", "old\n")
    reader = LogReader(state)
    handle = reader.open("auth")
    assert handle is not None
    _, end = tail(handle, 1, LineFilter())
    stream = follow(reader.path("auth"), handle, end, LineFilter(), poll_seconds=FAST)
    try:
        write(state, "auth", "new one\npartial")
        assert await next_lines(stream) == ["new one"]
        write(state, "auth", " line\n")
        assert await next_lines(stream) == ["partial line"]
        write(state, "auth", "x\n", mode="w")  # truncated in place
        assert await next_lines(stream) == ["x"]
        log_path(state, "auth").unlink()  # replaced, as after a rotation
        write(state, "auth", "fresh\n")
        assert await next_lines(stream) == ["fresh"]
    finally:
        await stream.aclose()


async def test_follow_filters_and_sends_keepalives(state: Path) -> None:
    write(state, "nats", "")
    reader = LogReader(state)
    handle = reader.open("nats")
    assert handle is not None
    stream = follow(
        reader.path("nats"),
        handle,
        0,
        LineFilter(min_level=Level.WARNING),
        poll_seconds=FAST,
        keepalive_seconds=0.05,
    )
    try:
        assert await asyncio.wait_for(anext(stream), 5) == []
        write(state, "nats", "[1] 2026/11/30 1 [INF] quiet\n[1] 2026/11/30 1 [WRN] loud\n")
        assert await next_lines(stream) == ["[1] 2026/11/30 1 [WRN] loud"]
    finally:
        await stream.aclose()


async def test_follow_bounds_a_line_that_never_ends(state: Path) -> None:
    write(state, "auth", "")
    reader = LogReader(state)
    handle = reader.open("auth")
    assert handle is not None
    stream = follow(reader.path("auth"), handle, 0, LineFilter(), poll_seconds=FAST)
    try:
        write(state, "auth", "y" * 300_000 + "\n")
        (text,) = await next_lines(stream)
        assert len(text) < 9000
        assert text.endswith(f"…[{300_000 - 8192} more bytes]")
    finally:
        await stream.aclose()
