"""Screen switches: what the user sees (a whole screen, its styles, its keys) and how soon."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual._compositor import CompositorUpdate, LayoutUpdate
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets._footer import FooterKey

from sutazai.tui.app import SutazaiApp
from sutazai.tui.keytimer import KeyTimer, whole_screen
from sutazai.tui.screens.identity import IdentityScreen
from sutazai.tui.screens.overview import OverviewScreen
from sutazai.tui.screens.services import ServicesScreen
from sutazai.tui.widgets.footer import SteadyFooter
from sutazai.tui.widgets.tables import KeyedTable
from tests.harness.waiting import wait_for
from tests.tui.conftest import make_app
from tests.tui.fake import FakeMesh

WAIT = 5.0
SIZE = (160, 48)
HOLD_MS = 50
"""Textual holds frames back this long when it switches modes (``App.delay_update``)."""


def resumed(app: SutazaiApp, kind: type[Screen[Any]]) -> Callable[[Message], bool]:
    return lambda message: type(message).__name__ == "ScreenResume" and isinstance(app.screen, kind)


async def ready(app: SutazaiApp, kind: type[Screen[Any]], table: str) -> None:
    await wait_for(
        lambda: (
            isinstance(app.screen, kind)
            and bool(app.screen.query(table))
            and app.screen.query_one(table, KeyedTable).row_count > 0
        ),
        WAIT,
        message=f"{kind.__name__} with rows in {table}",
    )


def frames_of(app: SutazaiApp) -> list[tuple[Screen[Any], CompositorUpdate]]:
    """Record every frame the app writes from now on (over the timer's own wrapper)."""
    seen: list[tuple[Screen[Any], CompositorUpdate]] = []
    display = app._display

    def displayed(screen: Screen[Any], renderable: object) -> None:
        display(screen, renderable)  # type: ignore[arg-type]
        if isinstance(renderable, CompositorUpdate) and not app._batch_count:
            seen.append((screen, renderable))

    setattr(app, "_display", displayed)  # noqa: B010
    return seen


async def test_the_key_timer_waits_for_the_frame_that_paints_the_new_screen(
    fake: FakeMesh,
) -> None:
    app = make_app(fake)
    timer = KeyTimer(app)
    async with app.run_test(size=SIZE, message_hook=timer):
        await ready(app, OverviewScreen, "#components")
        frames = frames_of(app)
        latency = await timer.press(
            "2", resumed(app, ServicesScreen), "bring up services", shown=whole_screen
        )
        # The screen has been written whole when the key counts as answered; Textual holds
        # frames back for 50 ms when it composes a new screen, so it cannot have been sooner.
        assert any(
            isinstance(screen, ServicesScreen) and whole_screen(screen, update)
            for screen, update in frames
        )
        assert latency >= HOLD_MS


def releases_by_timer(app: SutazaiApp) -> list[bool]:
    """For each of Textual's 50 ms holds from now on: did its timer end it (not the screen)?"""
    released: list[bool] = []
    set_timer = app.set_timer

    def timed(
        delay: float,
        callback: Callable[[], object] | None = None,
        *,
        name: str | None = None,
        pause: bool = False,
    ) -> Timer:
        if name == "delay_update" and callback is not None:
            end = callback

            def fired() -> None:
                holds = app._batch_count
                end()
                released.append(app._batch_count != holds)

            callback = fired
        return set_timer(delay, callback, name=name, pause=pause)

    setattr(app, "set_timer", timed)  # noqa: B010
    return released


async def test_a_screen_shown_before_comes_back_without_textuals_hold(fake: FakeMesh) -> None:
    app = make_app(fake)
    timer = KeyTimer(app)
    async with app.run_test(size=SIZE, message_hook=timer):
        await ready(app, OverviewScreen, "#components")
        await timer.press("2", resumed(app, ServicesScreen), "bring up services")
        await ready(app, ServicesScreen, "#instances")
        await timer.press("1", resumed(app, OverviewScreen), "bring up the overview")
        released = releases_by_timer(app)
        frames = frames_of(app)
        for switch in range(5):
            start = len(frames)
            await timer.press(
                "2", resumed(app, ServicesScreen), "bring up services", shown=whole_screen
            )
            # Only Services is painted from the key on, and it is painted whole.
            assert all(isinstance(screen, ServicesScreen) for screen, _ in frames[start:])
            assert isinstance(frames[-1][1], LayoutUpdate)

            def held(switches: int = switch + 1) -> bool:
                return len(released) >= switches

            await wait_for(held, WAIT, message="the hold's timer")
            await timer.press(
                "1", resumed(app, OverviewScreen), "bring up the overview", shown=whole_screen
            )
        # The screen ends the hold once it has resumed; Textual's timer (50 ms on) only when
        # the screen could not run first (a starved CPU), which five switches in a row are not.
        assert not all(released[:5])


async def test_a_screen_that_comes_back_looks_as_it_did_and_follows_a_new_theme(
    fake: FakeMesh,
) -> None:
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, OverviewScreen, "#components")
        app.screen.query_one("#components", KeyedTable).focus()
        await pilot.pause()
        before = app.export_screenshot()
        await pilot.press("2")
        await ready(app, ServicesScreen, "#instances")
        await pilot.press("1")
        await ready(app, OverviewScreen, "#components")
        await pilot.pause()
        assert app.export_screenshot() == before  # focus border and all

        await pilot.press("2")
        await ready(app, ServicesScreen, "#instances")
        await pilot.press("ctrl+t")  # the theme changes while the overview is hidden
        await pilot.press("1")
        await ready(app, OverviewScreen, "#components")
        await pilot.pause()
        came_back = app.export_screenshot()
        assert came_back != before
        await pilot.press("ctrl+t", "ctrl+t")  # the overview styled in place, in that theme
        await pilot.pause()
        assert app.export_screenshot() == came_back


async def test_the_footer_is_rebuilt_only_when_its_keys_change(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, OverviewScreen, "#components")
        await pilot.pause()
        keys = list(app.screen.query_one(SteadyFooter).query(FooterKey))
        assert keys
        await pilot.press("2")
        await ready(app, ServicesScreen, "#instances")
        await pilot.press("1")
        await ready(app, OverviewScreen, "#components")
        await pilot.pause()
        assert list(app.screen.query_one(SteadyFooter).query(FooterKey)) == keys

        fake.users = []  # the identity screen opens with no account to act on
        await pilot.press("3")
        await wait_for(lambda: isinstance(app.screen, IdentityScreen), WAIT)

        def deactivate_enabled() -> bool | None:
            footer = app.screen.query_one(SteadyFooter)
            found = [key for key in footer.query(FooterKey) if key.key == "d"]
            return not found[0].has_class("-disabled") if found else None

        await wait_for(lambda: deactivate_enabled() is False, WAIT, message="greyed out")
        fake.users = FakeMesh().users
        await pilot.press("ctrl+r")  # reload: now an account is selected
        await wait_for(lambda: deactivate_enabled() is True, WAIT, message="enabled")
