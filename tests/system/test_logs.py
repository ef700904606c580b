"""Log lines: levels in every component's format, component names, filters, long lines."""

import pytest

from sutazai.services.system.logs import (
    MAX_LINE_BYTES,
    Level,
    LineFilter,
    bounded_text,
    component_problem,
    level_of,
)
from tests.system.log_samples import SAMPLES


@pytest.mark.parametrize(
    ("line", "level"), [(line, level) for _, line, level in SAMPLES], ids=lambda v: str(v)[:40]
)
def test_every_format_states_its_level(line: str, level: Level) -> None:
    assert level_of(line) is level


def test_samples_cover_every_component_format() -> None:
    components = {component for component, _, _ in SAMPLES}
    assert {"auth", "envoy", "nats", "postgres", "redis", "supervisor"} <= components


@pytest.mark.parametrize("name", ["postgres", "auth-2", "a", "x" * 64, "my_service.v2"])
def test_component_names_that_stay_in_the_logs_dir(name: str) -> None:
    assert component_problem(name) is None


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", ".hidden", "../secrets", "a/b", "a\\b", "a\x00b", "x" * 65, "a b", "é"],
)
def test_component_names_that_are_refused(name: str) -> None:
    assert component_problem(name) is not None


def test_level_filter_keeps_lines_at_or_above_and_drops_lines_without_a_level() -> None:
    warn = b"[1] 2026/11/30 15:44:42.6 [WRN] slow"
    info = b"[1] 2026/11/30 15:44:42.6 [INF] fine"
    bare = b"Traceback (most recent call last):"
    at_warning = LineFilter(min_level=Level.WARNING)
    assert at_warning.accept(warn) is not None
    assert at_warning.accept(info) is None
    assert at_warning.accept(bare) is None
    everything = LineFilter()
    assert everything.accept(bare) is not None
    accepted = everything.accept(warn)
    assert accepted is not None
    assert accepted.level is Level.WARNING


def test_search_is_case_insensitive() -> None:
    line = LineFilter(contains="PASSWORDS").accept(b"[1] 2026/11/30 1 [WRN] Plaintext passwords")
    assert line is not None
    assert LineFilter(contains="absent").accept(b"[1] 2026/11/30 1 [WRN] passwords") is None


def test_long_lines_are_cut_with_a_marker_and_bad_utf8_is_replaced() -> None:
    text = bounded_text(b"x" * (MAX_LINE_BYTES + 10))
    assert text.startswith("x" * MAX_LINE_BYTES)
    assert text.endswith("…[10 more bytes]")
    assert bounded_text(b"abc", dropped=5).endswith("…[5 more bytes]")
    assert bounded_text(b"a\xffb") == "a\ufffdb"
