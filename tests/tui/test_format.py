"""How log lines read on the Logs screen; the dashboard process's collector settings."""

from __future__ import annotations

import gc

import pytest

from sutazai.tui.app import COLLECTOR_THRESHOLDS, steady_collector
from sutazai.tui.format import log_line


def test_a_structured_line_reads_time_level_event_then_its_fields() -> None:
    line = (
        '{"entries": 0, "event": "revocations.synced", "service": "auth", "level": "info", '
        '"timestamp": "2026-11-30T17:48:00.561014Z", "peer": {"a": 1}}'
    )
    assert log_line(line) == '17:48:00 info revocations.synced entries=0 peer={"a": 1}'


@pytest.mark.parametrize(
    "line",
    [
        "2026-11-30 17:16:16.123 UTC [42] LOG:  database system is ready",
        "[1234] 2026/11/30 17:16:16.000000 [INF] Server is ready",
        '{"no_event": true}',
        "{not json",
        "",
    ],
)
def test_other_lines_are_shown_as_written(line: str) -> None:
    assert log_line(line) == line


def test_the_dashboard_collector_freezes_start_up_objects_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        steady_collector()
        assert gc.get_threshold() == COLLECTOR_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
