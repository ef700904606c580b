"""Pilot tests of the Hardware screen on the fake mesh, and its pure parts alone.

The trends and tables follow ``WatchMetrics``' samples; the storage report and the advice are
asked for only on demand; every optimisation is a dry run first, run only after a
confirmation and with the dry run's parameters; a quarantined file is restored after a
confirmation; only admins purge; a user sees none of the actions.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input, Static

from sutazai.auth.v1 import access_pb2
from sutazai.tui.app import SutazaiApp
from sutazai.tui.errors import OptionsError
from sutazai.tui.optimise import BY_KEY, MIB, Params, describe, parse_params
from sutazai.tui.screens.confirm import ConfirmScreen
from sutazai.tui.screens.hardware import HardwareScreen
from sutazai.tui.screens.optimise_form import OptimiseFormScreen
from sutazai.tui.widgets.tables import KeyedTable
from sutazai.tui.widgets.trend import Trend, bars
from tests.harness.waiting import wait_for
from tests.tui.conftest import make_app
from tests.tui.fake import (
    CLEANABLE,
    OPERATOR,
    QUARANTINE,
    USER,
    FakeMesh,
    host_sample,
)

WAIT = 5.0
SAMPLES = 12
"""Samples the fake's stream starts with."""


def plain(renderable: object, width: int = 200) -> str:
    """What ``renderable`` (a Rich renderable) reads as, at ``width`` columns."""
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    output = console.file
    assert isinstance(output, io.StringIO)
    return output.getvalue()


def shown(app: SutazaiApp, selector: str) -> str:
    return plain(app.screen.query_one(selector, Static).content)


def cell(app: SutazaiApp, table: str, row: str, column: str) -> str:
    value = app.screen.query_one(table, KeyedTable).get_cell(row, column)
    return value.plain if isinstance(value, Text) else str(value)


def calls(fake: FakeMesh, name: str) -> list[tuple[Any, ...]]:
    return [args for called, args in fake.calls if called == name]


async def open_hardware(
    app: SutazaiApp, pilot: Pilot[None], samples: int = SAMPLES
) -> HardwareScreen:
    await wait_for(lambda: "hardware" in app.installed, WAIT, message="signed in")
    await pilot.press("9")
    await wait_for(lambda: isinstance(app.screen, HardwareScreen), WAIT, message="hardware screen")
    screen = app.screen
    assert isinstance(screen, HardwareScreen)
    await wait_for(lambda: screen.samples >= samples, WAIT, message="the first samples drawn")
    return screen


async def confirm(app: SutazaiApp, pilot: Pilot[None], answer: str) -> None:
    await wait_for(lambda: isinstance(app.screen, ConfirmScreen), WAIT, message="asked first")
    await pilot.press(answer)
    await wait_for(lambda: isinstance(app.screen, HardwareScreen), WAIT, message="answered")


def enabled(app: SutazaiApp) -> set[str]:
    return {b.binding.action for b in app.active_bindings.values() if b.enabled}


# --- the live sample -------------------------------------------------------------------------


async def test_the_trends_and_tables_follow_each_sample(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_hardware(app, pilot)
        assert ("watch_hardware", (1.0, 10)) in fake.calls
        cpu = screen.query_one("#trend-cpu", Trend)
        disk = screen.query_one("#trend-disk", Trend)
        assert list(cpu.values) == [host_sample(step).cpu.percent for step in range(SAMPLES)]
        assert disk.values[0] == 2 * MIB  # step 0: only /dev/sdb1 reads
        assert len(disk.values) == SAMPLES
        assert "mesh-host" in shown(app, "#hw-summary")
        assert cell(app, "#disks", "/srv/data", "percent") == "94.0%"
        later = host_sample(12)
        later.cpu.percent = 77.7
        later.top_processes[0].cpu_percent = 12.5
        later.disks[0].read_bytes_per_second = 3 * MIB
        later.disks[0].write_bytes_per_second = 0
        later.disks[1].read_bytes_per_second = 0
        fake.push("hardware", later)
        await wait_for(lambda: screen.samples == SAMPLES + 1, WAIT, message="the new sample")
        assert list(cpu.values)[-1] == 77.7
        assert cpu.figure.plain == "77.7%"
        assert list(disk.values)[-1] == 3 * MIB
        assert disk.figure.plain == "r 3.0 MiB/s w 0 B/s"
        # The rows are updated in place, keyed by pid and mount point.
        assert cell(app, "#processes", "31337", "cpu") == "12.5%"
        assert cell(app, "#disks", "/", "read") == "3.0 MiB/s"


async def test_temperatures_and_gpus_show_only_when_present(fake: FakeMesh) -> None:
    bare = host_sample(0)
    del bare.temperatures[:]
    del bare.gpus[:]
    fake.initial["hardware"] = [host_sample(0), bare]
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_hardware(app, pilot, samples=2)
        await pilot.pause()
        assert not screen.query_one("#sensors").display
        assert not screen.query_one("#gpus").display
        assert "no temperature sensors and no GPUs" in shown(app, "#host-absent")


async def test_a_click_on_a_tab_opens_its_pane(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_hardware(app, pilot)
        await pilot.click("#--content-tab-pane-quarantine")
        await wait_for(lambda: screen.pane == "quarantine", WAIT, message="clicked open")
        await wait_for(lambda: screen.quarantine_loads == 1, WAIT, message="listed on opening")
        assert "restore" in enabled(app)
        await pilot.click("#--content-tab-pane-processes")
        await wait_for(lambda: screen.pane == "processes", WAIT)
        assert "restore" not in enabled(app)  # a pane's keys leave with it


# --- on demand -------------------------------------------------------------------------------


async def test_the_storage_report_is_fetched_only_on_demand(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_hardware(app, pilot)
        await pilot.press("s")
        await pilot.pause()
        assert not calls(fake, "storage_report")
        await pilot.press("g")
        await wait_for(lambda: "/srv/data/logs/app.log" in shown(app, "#storage"), WAIT)
        text = shown(app, "#storage")
        assert "94.0% used, 470.0 GiB of 500.0 GiB, 30.0 GiB free" in text
        assert "1 group wastes 40.0 MiB" in text
        assert len(calls(fake, "storage_report")) == 1


async def test_recommendations_then_advice_labelled_as_model_output(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_hardware(app, pilot)
        await pilot.press("a")
        await wait_for(lambda: "disk_full" in shown(app, "#recommendations"), WAIT)
        text = shown(app, "#recommendations")
        assert "disk./srv/data.percent = 94.00% (threshold 90.00%)" in text
        assert "do: Clean temporary files" in text
        assert not calls(fake, "hardware_advice")
        question = screen.query_one("#advice-question", Input)
        question.focus()
        await pilot.press(*"why is it full?", "enter")
        await wait_for(lambda: "model output" in shown(app, "#advice"), WAIT)
        assert calls(fake, "hardware_advice") == [("", "why is it full?")]
        advice = shown(app, "#advice")
        assert "generated, not measured" in advice
        assert "Clean [bold]old[/] temporary files" in advice  # data, not markup


# --- optimisations ---------------------------------------------------------------------------


async def test_an_optimisation_is_dry_run_then_confirmed_then_run(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_hardware(app, pilot)
        await pilot.press("o")
        assert "run" not in enabled(app)  # no dry run yet: greyed out
        await pilot.press("x")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert not calls(fake, "clean_files")
        await pilot.press("d")
        changes = screen.query_one("#changes", KeyedTable)
        await wait_for(lambda: changes.row_count == len(CLEANABLE), WAIT, message="the dry run")
        assert calls(fake, "clean_files") == [("", 0, (), True)]
        assert cell(app, "#changes", "0", "target") == CLEANABLE[0][0]
        assert "would be freed" in shown(app, "#change-summary")
        assert fake.quarantine == QUARANTINE  # nothing changed
        assert "run" in enabled(app)
        await pilot.press("x")
        await confirm(app, pilot, "n")
        assert len(calls(fake, "clean_files")) == 1
        await pilot.press("x")
        await confirm(app, pilot, "y")
        await wait_for(lambda: len(calls(fake, "clean_files")) == 2, WAIT, message="the run")
        assert calls(fake, "clean_files")[1] == ("", 0, (), False)
        await wait_for(lambda: cell(app, "#operations", "clean", "run") != "—", WAIT)
        assert cell(app, "#operations", "clean", "run").startswith("3, 4.5 MiB")
        assert "changed" in screen.query_one("#changes", KeyedTable).border_title
        # The quarantine is listed again with the moved files; the dry run is used up.
        await wait_for(lambda: len(screen.quarantine) == len(QUARANTINE) + 3, WAIT)
        assert "run" not in enabled(app)


async def test_parameters_go_to_both_calls_and_a_change_needs_a_new_dry_run(
    fake: FakeMesh,
) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_hardware(app, pilot)
        await pilot.press("o", "e")
        await wait_for(lambda: isinstance(app.screen, OptimiseFormScreen), WAIT)
        form = app.screen
        form.query_one("#opt-path", Input).value = "/srv/data/tmp"
        form.query_one("#opt-days", Input).value = "14"
        form.query_one("#opt-patterns", Input).value = "*.tmp, *.cache"
        await pilot.press("ctrl+s")
        await wait_for(lambda: isinstance(app.screen, HardwareScreen), WAIT)
        expected = Params("/srv/data/tmp", 14, ("*.tmp", "*.cache"))
        assert screen.params["clean"] == expected
        assert "/srv/data/tmp, older than 14 d, *.tmp *.cache" in shown(app, "#operation-params")
        await pilot.press("d")
        await wait_for(lambda: "run" in enabled(app), WAIT, message="dry-run done")
        assert calls(fake, "clean_files") == [("/srv/data/tmp", 14, ("*.tmp", "*.cache"), True)]
        # New parameters: the dry run no longer says what a run would do.
        await pilot.press("e")
        await wait_for(lambda: isinstance(app.screen, OptimiseFormScreen), WAIT)
        app.screen.query_one("#opt-days", Input).value = "30"
        await pilot.press("ctrl+s")
        await wait_for(lambda: isinstance(app.screen, HardwareScreen), WAIT)
        assert "run" not in enabled(app)
        await pilot.press("d")
        await wait_for(lambda: "run" in enabled(app), WAIT, message="dry-run again")
        await pilot.press("x")
        await confirm(app, pilot, "y")
        await wait_for(lambda: len(calls(fake, "clean_files")) == 3, WAIT)
        assert calls(fake, "clean_files")[2] == ("/srv/data/tmp", 30, ("*.tmp", "*.cache"), False)


async def test_the_form_refuses_bad_values_before_any_call(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_hardware(app, pilot)
        await pilot.press("o", "down", "down", "down", "e")  # rotate logs
        await wait_for(lambda: isinstance(app.screen, OptimiseFormScreen), WAIT)
        app.screen.query_one("#opt-keep", Input).value = "99"
        await pilot.press("ctrl+s")
        await wait_for(lambda: "keep" in shown(app, "#form-error"), WAIT)
        await pilot.press("escape")
        await wait_for(lambda: isinstance(app.screen, HardwareScreen), WAIT)
        assert screen.params["rotate"] == Params()


async def test_every_optimisation_reports_its_changes(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_hardware(app, pilot)
        await pilot.press("o")
        expected = {
            "dedupe": ("deduplicate", ("", True)),
            "compress": ("compress_logs", ("", 0, True)),
            "rotate": ("rotate_logs", ("", 0, 0, True)),
            "renice": ("renice_processes", (True,)),
            "reclaim": ("reclaim_memory", (True,)),
        }
        for key, call in expected.items():
            await pilot.press("down", "d")
            await wait_for(lambda key=key: key in screen.dry_runs, WAIT, message=key)  # type: ignore[misc]
            assert call in fake.calls
        assert cell(app, "#changes", "0", "action") == "reclaim"
        assert "mesh RSS 420.0 MiB -> 420.0 MiB" in shown(app, "#change-summary")
        await pilot.press("up", "up", "up", "d")  # compress: one change failed
        await wait_for(lambda: screen.shown == "compress", WAIT)
        assert cell(app, "#changes", "1", "error") == "compressed file not smaller"
        assert "1 failed" in shown(app, "#change-summary")


# --- quarantine ------------------------------------------------------------------------------


async def open_quarantine(app: SutazaiApp, pilot: Pilot[None]) -> HardwareScreen:
    screen = await open_hardware(app, pilot)
    await pilot.press("q")
    await wait_for(lambda: screen.quarantine_loads >= 1, WAIT, message="quarantine listed")
    return screen


async def test_a_quarantined_file_is_restored_after_confirming(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_quarantine(app, pilot)
        table = screen.query_one("#quarantine", KeyedTable)
        first = QUARANTINE[0]
        assert table.keys == [entry.entry_id for entry in QUARANTINE]
        assert first.original_path in shown(app, "#quarantine-detail")
        await pilot.press("u")
        await confirm(app, pilot, "n")
        assert not calls(fake, "restore_quarantined")
        await pilot.press("u")
        await confirm(app, pilot, "y")
        await wait_for(lambda: first.entry_id not in table.keys, WAIT, message="restored")
        assert calls(fake, "restore_quarantined") == [(first.entry_id,)]


async def test_an_admin_purges_only_what_is_past_its_retention(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_quarantine(app, pilot)
        table = screen.query_one("#quarantine", KeyedTable)
        fresh, old = QUARANTINE
        await pilot.press("delete")  # the fresh one: a dry run finds nothing to purge
        await wait_for(lambda: len(calls(fake, "purge_quarantine")) == 1, WAIT)
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert calls(fake, "purge_quarantine") == [((fresh.entry_id,), True)]
        await pilot.press("down", "delete")
        await confirm(app, pilot, "y")
        await wait_for(lambda: table.keys == [fresh.entry_id], WAIT, message="purged")
        assert calls(fake, "purge_quarantine")[1:] == [
            ((old.entry_id,), True),
            ((old.entry_id,), False),
        ]


async def test_an_operator_restores_but_does_not_purge() -> None:
    fake = FakeMesh(saved=OPERATOR)
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_quarantine(app, pilot)
        assert "restore" in enabled(app)
        assert "purge" not in enabled(app)
        await pilot.press("delete")
        await pilot.pause()
        titles = " ".join(title for title, _, _ in screen.commands())
        assert "restore" in titles
        assert "purge" not in titles
    assert not calls(fake, "purge_quarantine")


async def test_a_user_sees_no_action() -> None:
    fake = FakeMesh(saved=USER)
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_hardware(app, pilot)
        assert [pane.name for pane in screen.panes()] == ["host", "processes", "storage", "advice"]
        assert not screen.query("#operations")
        assert not screen.query("#quarantine")
        for key in ("o", "q", "e", "d", "x", "u", "delete"):
            await pilot.press(key)
        await pilot.pause()
        assert screen.pane == "host"
        assert not enabled(app) & {"dry_run", "run", "edit_params", "restore", "purge"}
        titles = " ".join(title for title, _, _ in screen.commands())
        assert "dry run" not in titles
        assert "quarantine" not in titles
        assert "storage report" in titles
    mutating = {
        "clean_files",
        "deduplicate",
        "compress_logs",
        "rotate_logs",
        "renice_processes",
        "reclaim_memory",
        "list_quarantine",
        "restore_quarantined",
        "purge_quarantine",
    }
    assert not {name for name, _ in fake.calls} & mutating


async def test_the_palette_names_every_action_of_an_admin(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_hardware(app, pilot)
        titles = [title for title, _, _ in screen.commands()]
        for operation in BY_KEY.values():
            assert f"Hardware: dry run {operation.title}" in titles
            assert f"Hardware: run {operation.title}" in titles
        assert "Hardware: purge every quarantined file past its retention" in titles
        # A palette entry does what the key does: the dry run of one optimisation.
        run = {title: action for title, _, action in screen.commands()}
        run["Hardware: dry run Deduplicate"]()
        await wait_for(lambda: "dedupe" in screen.dry_runs, WAIT)
        assert screen.pane == "optimise"


# --- pure parts ------------------------------------------------------------------------------


def test_parameters_are_checked_as_the_service_checks_them() -> None:
    clean = BY_KEY["clean"]
    assert parse_params(clean, path=" /x ", older_than_days="3", patterns="*.tmp,*.log") == Params(
        "/x", 3, ("*.tmp", "*.log")
    )
    rotate = BY_KEY["rotate"]
    assert parse_params(rotate, min_size_mib="10", keep="5") == Params(
        min_size_bytes=10 * MIB, keep=5
    )
    # Fields an operation does not take are ignored.
    assert parse_params(BY_KEY["renice"], path="/x", keep="3") == Params()
    bad: list[tuple[str, dict[str, str]]] = [
        ("clean", {"older_than_days": "0"}),
        ("clean", {"older_than_days": "3651"}),
        ("clean", {"older_than_days": "-1"}),
        ("clean", {"patterns": "a/b"}),
        ("clean", {"patterns": " ".join(["*.x"] * 33)}),
        ("clean", {"path": "a\x00b"}),
        ("clean", {"path": "x" * 4097}),
        ("rotate", {"keep": "51"}),
        ("rotate", {"min_size_mib": "99999999999"}),
    ]
    for key, values in bad:
        with pytest.raises(OptionsError):
            parse_params(BY_KEY[key], **values)


def test_parameters_read_as_the_service_defaults_when_unset() -> None:
    assert describe(BY_KEY["clean"], Params()) == "first allowed root, default age, any name"
    assert describe(BY_KEY["rotate"], Params("/l", min_size_bytes=MIB, keep=2)) == (
        "/l, from 1.0 MiB, keep 2"
    )
    assert describe(BY_KEY["reclaim"], Params()) == "no parameters"


def test_bars_scale_percentages_to_100_and_rates_to_their_largest() -> None:
    assert bars([0.0, 50.0, 100.0], 3, 100.0) == " ▅█"
    assert bars([3.0], 4, 100.0) == "▁"  # 3% is a low bar, not a full one
    assert bars([1.0, 2.0, 4.0], 3, None) == "▃▅█"
    assert bars([5.0, 6.0, 7.0], 2, 100.0) == "▁▁"  # only the newest that fit


def test_io_rates_count_a_device_once_and_every_interface() -> None:
    from sutazai.tui.hardware_text import disk_rates, network_rates

    sample = host_sample(1)
    twice = sample.disks.add()
    twice.CopyFrom(sample.disks[1])
    twice.mountpoint = "/srv/data/bind"  # the same device mounted again
    assert disk_rates(sample) == (1.5 * MIB + 2 * MIB, 300 * 1024)
    assert network_rates(sample) == (41_000.0 + 12_000.0, 41_000.0 + 80_000.0)


def test_roles_see_the_optimisations_as_the_protos_allow() -> None:
    from sutazai.tui.access import may_administer, may_operate

    assert not may_operate(access_pb2.ROLE_USER)
    assert may_operate(access_pb2.ROLE_OPERATOR)
    assert not may_administer(access_pb2.ROLE_OPERATOR)
    assert may_administer(access_pb2.ROLE_ADMIN)


def test_quarantine_detail_names_every_field() -> None:
    from sutazai.tui.hardware_text import quarantine_detail
    from tests.tui.fake import NOW

    text = quarantine_detail(QUARANTINE[1], NOW.tzinfo).plain
    for part in (
        "/srv/data/backup/a.bin",
        "40.0 MiB",
        "mode 644",
        "by alice (Deduplicate)",
        "purgeable from 2026-01-13 12:00",
        QUARANTINE[1].entry_id,
        QUARANTINE[1].sha256,
    ):
        assert part in text


async def test_a_restore_onto_a_taken_place_says_why_and_keeps_the_entry(fake: FakeMesh) -> None:
    first = QUARANTINE[0]
    fake.restore_refusals[first.entry_id] = "the original path exists again; nothing overwritten"
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_quarantine(app, pilot)
        await pilot.press("u")
        await confirm(app, pilot, "y")
        await wait_for(
            lambda: any("nothing overwritten" in str(n.message) for n in app._notifications),
            WAIT,
            message="the refusal shown",
        )
        await wait_for(lambda: screen.quarantine_loads >= 2, WAIT, message="listed again")
        assert first.entry_id in screen.query_one("#quarantine", KeyedTable).keys
