"""Snapshot tests of every screen, with the fake mesh's fixed data, at 80x24 and 160x48.

Update them with ``pytest tests/tui/test_snapshots.py --snapshot-update`` after checking the
report (``snapshot_report.html``) shows the change you meant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, RichLog, Select, TextArea

from sutazai.tui.screens.agents import AgentsScreen
from sutazai.tui.screens.chat import ChatScreen
from sutazai.tui.screens.confirm import ConfirmScreen
from sutazai.tui.screens.hardware import HardwareScreen
from sutazai.tui.screens.identity import IdentityScreen
from sutazai.tui.screens.logs import LogsScreen
from sutazai.tui.screens.models import ModelsScreen
from sutazai.tui.screens.overview import OverviewScreen
from sutazai.tui.screens.services import ServicesScreen
from sutazai.tui.screens.sign_in import SignInScreen
from sutazai.tui.screens.task_form import TaskFormScreen
from sutazai.tui.screens.tasks import TasksScreen
from sutazai.tui.widgets.tables import KeyedTable
from tests.harness.waiting import wait_for
from tests.tui.conftest import make_app
from tests.tui.fake import CLEANABLE, EMBEDDED, QUARANTINE, USER, FakeMesh, delta, done

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]
WAIT = 10.0

SnapCompare = Callable[..., bool]


async def _settle(pilot: Pilot[None], ready: Callable[[], bool], what: str) -> None:
    await wait_for(ready, WAIT, message=what)
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause()


def _table_rows(pilot: Pilot[None], selector: str) -> int:
    found = pilot.app.screen.query(selector)
    return found.first(KeyedTable).row_count if found else 0


async def _overview(pilot: Pilot[None]) -> None:
    await _settle(
        pilot,
        lambda: (
            isinstance(pilot.app.screen, OverviewScreen)
            and _table_rows(pilot, "#components") == 6
            and _table_rows(pilot, "#traffic") == 3
            and _table_rows(pilot, "#alerts") == 2
        ),
        "overview drawn",
    )


async def _services(pilot: Pilot[None]) -> None:
    await _overview(pilot)
    await pilot.press("2")
    await _settle(
        pilot,
        lambda: (
            isinstance(pilot.app.screen, ServicesScreen)
            and _table_rows(pilot, "#instances") == 2
            and _table_rows(pilot, "#endpoints") == 1
        ),
        "services drawn",
    )


async def _identity(pilot: Pilot[None]) -> None:
    await _overview(pilot)
    await pilot.press("3")
    await _settle(
        pilot,
        lambda: (
            isinstance(pilot.app.screen, IdentityScreen)
            and _table_rows(pilot, "#users") == 4
            and _table_rows(pilot, "#audit") == 4
        ),
        "identity drawn",
    )
    pilot.app.screen.query_one("#users", KeyedTable).focus()
    await pilot.pause()


async def _confirm(pilot: Pilot[None]) -> None:
    await _identity(pilot)
    await pilot.press("down", "d")
    await _settle(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "dialog open")


async def _logs(pilot: Pilot[None]) -> None:
    await _overview(pilot)
    await pilot.press("4")
    await _settle(
        pilot,
        lambda: (
            isinstance(pilot.app.screen, LogsScreen)
            and len(pilot.app.screen.query_one("#log", RichLog).lines) == 3
        ),
        "log drawn",
    )


async def _chat(pilot: Pilot[None]) -> None:
    """A reply that streamed in (the fake pushes it), under the conversation list."""
    await _overview(pilot)
    await pilot.press("5")
    await _settle(
        pilot,
        lambda: (
            isinstance(pilot.app.screen, ChatScreen)
            and _table_rows(pilot, "#conversations") == 3
            and pilot.app.screen.query_one("#model", Select).value == EMBEDDED
        ),
        "chat drawn",
    )
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    await pilot.press(*"What is a circuit breaker?", "enter")
    fake = pilot.app.api
    assert isinstance(fake, FakeMesh)
    await wait_for(lambda: len(fake.open("chat")) == 1, WAIT, message="stream opened")
    for piece in ("It stops calls ", "to a failing backend ", "for a while."):
        fake.push("chat", delta(piece))
    fake.push("chat", done(12))
    await _settle(
        pilot,
        lambda: not screen.streaming and "tokens" in str(screen.query_one("#chat-status").render()),
        "reply streamed",
    )


async def _models(pilot: Pilot[None]) -> None:
    await _overview(pilot)
    await pilot.press("6")
    await _settle(
        pilot,
        lambda: (
            isinstance(pilot.app.screen, ModelsScreen)
            and pilot.app.screen.polls >= 1
            and _table_rows(pilot, "#backends") == 3
            and _table_rows(pilot, "#models") == 3
        ),
        "models drawn",
    )


async def _user_presses_identity(pilot: Pilot[None]) -> None:
    await _overview(pilot)
    await pilot.press("3", "4")
    await pilot.pause()


async def _sign_in(pilot: Pilot[None]) -> None:
    await _settle(
        pilot,
        lambda: (
            isinstance(pilot.app.screen, SignInScreen)
            and not pilot.app.screen.query_one("#username", Input).disabled
        ),
        "sign-in form",
    )


SCREENS: dict[str, tuple[FakeMesh | None, Callable[[Pilot[None]], Awaitable[None]]]] = {
    "overview": (None, _overview),
    "services": (None, _services),
    "identity": (None, _identity),
    "confirm": (None, _confirm),
    "logs": (None, _logs),
    "chat": (None, _chat),
    "models": (None, _models),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", list(SCREENS))
def test_admin_screens(snap_compare: SnapCompare, screen: str, size: tuple[int, int]) -> None:
    _, run_before = SCREENS[screen]
    assert snap_compare(make_app(FakeMesh()), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_sign_in(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(FakeMesh(saved=None)), terminal_size=size, run_before=_sign_in)


@pytest.mark.parametrize("size", SIZES)
def test_models_as_a_user_has_no_actions(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    """A user's Models screen: the figures, no action keys, no cache figures."""
    assert snap_compare(make_app(FakeMesh(saved=USER)), terminal_size=size, run_before=_models)


@pytest.mark.parametrize("size", SIZES)
def test_identity_as_a_user_is_not_there(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    """A user pressing the Identity and Logs keys stays on the overview; no tab for them."""
    assert snap_compare(
        make_app(FakeMesh(saved=USER)), terminal_size=size, run_before=_user_presses_identity
    )


def _agents_drawn(pilot: Pilot[None]) -> bool:
    screen = pilot.app.screen
    if not isinstance(screen, AgentsScreen) or _table_rows(pilot, "#agents") != 4:
        return False
    return not screen.operator or (screen.polls >= 1 and _table_rows(pilot, "#streams") == 4)


def _tasks_drawn(pilot: Pilot[None], *, dead: bool = False) -> bool:
    screen = pilot.app.screen
    return (
        isinstance(screen, TasksScreen)
        and screen.showing_dead == dead
        and _table_rows(pilot, "#tasks") == (1 if dead else 5)
        and screen.detail is not None
    )


async def _agents(pilot: Pilot[None]) -> None:
    await _overview(pilot)
    await pilot.press("7")
    await _settle(pilot, lambda: _agents_drawn(pilot), "agents drawn")


async def _tasks(pilot: Pilot[None]) -> None:
    await _overview(pilot)
    await pilot.press("8")
    await _settle(pilot, lambda: _tasks_drawn(pilot), "tasks drawn")


async def _task_form(pilot: Pilot[None]) -> None:
    await _tasks(pilot)
    await pilot.press("n")
    await _settle(pilot, lambda: isinstance(pilot.app.screen, TaskFormScreen), "form open")
    await pilot.press(*"text.summarize")
    pilot.app.screen.query_one("#payload", TextArea).cursor_blink = False
    await pilot.pause()


async def _dead_letters(pilot: Pilot[None]) -> None:
    await _tasks(pilot)
    await pilot.press("d")
    await _settle(pilot, lambda: _tasks_drawn(pilot, dead=True), "dead letters drawn")


WORK_SCREENS: dict[str, Callable[[Pilot[None]], Awaitable[None]]] = {
    "agents": _agents,
    "tasks": _tasks,
    "task-form": _task_form,
    "dead-letters": _dead_letters,
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", list(WORK_SCREENS))
def test_agents_and_tasks(snap_compare: SnapCompare, screen: str, size: tuple[int, int]) -> None:
    """The Agents and Tasks screens of an admin (operator views), the form, the dead letters."""
    assert snap_compare(make_app(FakeMesh()), terminal_size=size, run_before=WORK_SCREENS[screen])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", ["agents", "tasks"])
def test_agents_and_tasks_as_a_user(
    snap_compare: SnapCompare, screen: str, size: tuple[int, int]
) -> None:
    """A user's Agents and Tasks screens: no coordinator, no dead letters, no all-users box."""
    assert snap_compare(
        make_app(FakeMesh(saved=USER)), terminal_size=size, run_before=WORK_SCREENS[screen]
    )


def _hardware_screen(pilot: Pilot[None]) -> HardwareScreen | None:
    screen = pilot.app.screen
    return screen if isinstance(screen, HardwareScreen) else None


async def _hardware(pilot: Pilot[None]) -> None:
    """The Host pane with the fake's twelve samples in the trends."""
    await _overview(pilot)
    await pilot.press("9")
    await _settle(
        pilot,
        lambda: (
            (screen := _hardware_screen(pilot)) is not None
            and screen.samples == 12
            and _table_rows(pilot, "#disks") == 2
        ),
        "hardware drawn",
    )


async def _hardware_storage(pilot: Pilot[None]) -> None:
    await _hardware(pilot)
    await pilot.press("s", "g")
    await _settle(
        pilot,
        lambda: (
            (screen := _hardware_screen(pilot)) is not None
            and screen.storage is not None
            and not screen.storage_loading
        ),
        "storage report drawn",
    )


async def _hardware_advice(pilot: Pilot[None]) -> None:
    await _hardware(pilot)
    await pilot.press("a")
    fake = pilot.app.api
    assert isinstance(fake, FakeMesh)
    await wait_for(lambda: ("hardware_recommendations", ()) in fake.calls, WAIT)
    await pilot.press("m")
    await _settle(
        pilot,
        lambda: (
            (screen := _hardware_screen(pilot)) is not None
            and not screen.advising
            and ("hardware_advice", ("", "")) in fake.calls
        ),
        "advice drawn",
    )


async def _hardware_dry_run(pilot: Pilot[None]) -> None:
    await _hardware(pilot)
    await pilot.press("o", "d")
    await _settle(
        pilot,
        lambda: (
            _table_rows(pilot, "#changes") == len(CLEANABLE)
            and (screen := _hardware_screen(pilot)) is not None
            and screen.busy is None
        ),
        "dry run drawn",
    )


async def _hardware_quarantine(pilot: Pilot[None]) -> None:
    await _hardware(pilot)
    await pilot.press("q")
    await _settle(pilot, lambda: _table_rows(pilot, "#quarantine") == len(QUARANTINE), "listed")


HARDWARE_SCREENS: dict[str, Callable[[Pilot[None]], Awaitable[None]]] = {
    "host": _hardware,
    "storage": _hardware_storage,
    "advice": _hardware_advice,
    "dry-run": _hardware_dry_run,
    "quarantine": _hardware_quarantine,
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", list(HARDWARE_SCREENS))
def test_hardware(snap_compare: SnapCompare, screen: str, size: tuple[int, int]) -> None:
    """The Hardware screen of an admin: each pane, a dry run's report, the quarantine."""
    assert snap_compare(
        make_app(FakeMesh()), terminal_size=size, run_before=HARDWARE_SCREENS[screen]
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", ["host", "dry-run"])
def test_hardware_light(snap_compare: SnapCompare, screen: str, size: tuple[int, int]) -> None:
    """The Hardware screen in the light theme."""
    assert snap_compare(
        make_app(FakeMesh(), dark=False),
        terminal_size=size,
        run_before=HARDWARE_SCREENS[screen],
    )


@pytest.mark.parametrize("size", SIZES)
def test_hardware_as_a_user(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    """A user's Hardware screen: the host, storage and advice panes; no action, no quarantine."""
    assert snap_compare(make_app(FakeMesh(saved=USER)), terminal_size=size, run_before=_hardware)
