"""Pilot tests of the Chat and Models screens on the fake mesh.

A reply streams into the pane delta by delta as the test pushes them; the stop key closes the
stream (which cancels the call); the Models screen polls and its actions exist for operators
only.
"""

from __future__ import annotations

import grpc
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from sutazai.inference.v1 import inference_service_pb2 as inf_pb
from sutazai.tui.app import SutazaiApp
from sutazai.tui.commands import DashboardCommands
from sutazai.tui.errors import OptionsError
from sutazai.tui.screens.chat import ChatScreen, sampling_options
from sutazai.tui.screens.confirm import ConfirmScreen
from sutazai.tui.screens.models import ModelsScreen
from sutazai.tui.source import CallFailed
from sutazai.tui.widgets.tables import KeyedTable
from tests.harness.waiting import wait_for
from tests.tui.conftest import make_app
from tests.tui.fake import EMBEDDED, OPERATOR, USER, FakeMesh, delta, done

WAIT = 5.0
ACTIONS = {"load", "unload", "reset_breaker", "clear_cache"}


def chat_screen(app: SutazaiApp) -> ChatScreen:
    assert isinstance(app.screen, ChatScreen)
    return app.screen


def models_screen(app: SutazaiApp) -> ModelsScreen:
    assert isinstance(app.screen, ModelsScreen)
    return app.screen


def cell(app: SutazaiApp, table: str, row: str, column: str) -> str:
    value = app.screen.query_one(table, KeyedTable).get_cell(row, column)
    return value.plain if isinstance(value, Text) else str(value)


def status_text(app: SutazaiApp, selector: str) -> str:
    rendered = app.screen.query_one(selector, Static).render()
    return rendered.plain if isinstance(rendered, Text) else str(rendered)


async def open_chat(app: SutazaiApp, pilot: Pilot[None]) -> ChatScreen:
    await wait_for(lambda: "chat" in app.installed, WAIT, message="signed in")
    await pilot.press("5")
    await wait_for(lambda: isinstance(app.screen, ChatScreen), WAIT, message="chat screen")
    screen = chat_screen(app)
    await wait_for(
        lambda: (
            screen.query_one("#conversations", KeyedTable).row_count == 3
            and screen.query_one("#model", Select).value == EMBEDDED
        ),
        WAIT,
        message="conversations and models loaded",
    )
    return screen


async def send(pilot: Pilot[None], screen: ChatScreen, message: str) -> None:
    screen.query_one("#message", Input).focus()
    await pilot.press(*message, "enter")


async def test_a_typed_message_streams_its_reply_into_the_pane(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        await send(pilot, screen, "Hello")
        await wait_for(lambda: len(fake.open("chat")) == 1, WAIT, message="stream opened")
        assert fake.calls[-1][0] == "watch_chat"
        message, model, conversation_id, options, no_cache = fake.calls[-1][1]
        assert (message, model, conversation_id, no_cache) == ("Hello", EMBEDDED, "", False)
        assert options == inf_pb.SamplingOptions()
        assert screen.query_one("#message", Input).value == ""
        await wait_for(lambda: screen.conversation_id == "conv-9", WAIT, message="started")
        assert screen.streaming
        fake.push("chat", delta("Hi"))
        await wait_for(lambda: screen.transcript().endswith("Hi"), WAIT, message="first delta")
        fake.push("chat", delta(" there!"))
        await wait_for(lambda: screen.transcript().endswith("Hi there!"), WAIT, message="more")
        assert screen.streaming  # still going: each delta was drawn as it came
        listed_before = fake.calls.count(("list_conversations", (200,)))
        fake.push("chat", done())
        await wait_for(lambda: not screen.streaming, WAIT, message="reply done")
        await wait_for(lambda: "5 tokens" in status_text(app, "#chat-status"), WAIT)
        assert "you\nHello" in screen.transcript()
        await wait_for(
            lambda: fake.calls.count(("list_conversations", (200,))) > listed_before,
            WAIT,
            message="conversations fetched again after the reply",
        )
        # The next message continues the conversation the reply started.
        await send(pilot, screen, "More")
        await wait_for(lambda: len(fake.open("chat")) == 2, WAIT)
        assert fake.calls[-1][1][2] == "conv-9"


async def test_the_stop_key_cancels_the_reply(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        await send(pilot, screen, "Tell me a long story")
        await wait_for(lambda: len(fake.open("chat")) == 1, WAIT)
        fake.push("chat", delta("Once upon"))
        await wait_for(lambda: screen.transcript().endswith("Once upon"), WAIT)
        stream = fake.open("chat")[-1]
        assert not stream.closed
        await pilot.press("escape")
        await wait_for(lambda: stream.closed, WAIT, message="the stream closed (call cancelled)")
        assert not screen.streaming
        assert screen.transcript().endswith("Once upon [stopped]")
        assert "Stopped" in status_text(app, "#chat-status")
        # Nothing more is drawn from the stopped stream, and a new message can be sent.
        await send(pilot, screen, "Shorter please")
        await wait_for(lambda: len(fake.open("chat")) == 2, WAIT)


async def test_options_are_sent_and_out_of_range_ones_refused(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        screen.query_one("#temperature", Input).value = "3"
        await send(pilot, screen, "Hi")
        await wait_for(lambda: "temperature" in status_text(app, "#chat-status"), WAIT)
        assert fake.open("chat") == []
        assert screen.query_one("#message", Input).value == "Hi"  # kept, to fix and resend
        screen.query_one("#temperature", Input).value = "0.7"
        screen.query_one("#max-tokens", Input).value = "64"
        screen.query_one("#message", Input).focus()
        await pilot.press("enter")
        await wait_for(lambda: len(fake.open("chat")) == 1, WAIT)
        assert fake.calls[-1][1][3] == inf_pb.SamplingOptions(temperature=0.7, max_tokens=64)


def test_sampling_options_bounds() -> None:
    assert sampling_options("", "") == inf_pb.SamplingOptions()
    assert sampling_options("2", "4096") == inf_pb.SamplingOptions(temperature=2, max_tokens=4096)
    for temperature, max_tokens in [("2.1", ""), ("x", ""), ("", "0"), ("", "4097")]:
        try:
            sampling_options(temperature, max_tokens)
        except OptionsError:
            continue
        raise AssertionError(f"accepted {temperature!r}, {max_tokens!r}")


async def test_a_failed_reply_is_marked_and_shown(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        await send(pilot, screen, "Hi")
        await wait_for(lambda: len(fake.open("chat")) == 1, WAIT)
        fake.push("chat", delta("Hel"))
        fake.push("chat", CallFailed(grpc.StatusCode.NOT_FOUND, "model gone"))
        await wait_for(lambda: not screen.streaming, WAIT)
        assert screen.transcript().endswith("Hel [failed]")
        assert "model gone" in status_text(app, "#chat-status")


async def test_a_conversation_opens_and_is_continued(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        screen.query_one("#conversations", KeyedTable).focus()
        await pilot.press("enter")  # the first (most recent) conversation
        await wait_for(lambda: screen.conversation_id == "conv-1", WAIT)
        assert "fail fast" in screen.transcript()
        await send(pilot, screen, "And then?")
        await wait_for(lambda: len(fake.open("chat")) == 1, WAIT)
        assert fake.calls[-1][1][2] == "conv-1"
        fake.push("chat", done())
        await wait_for(lambda: not screen.streaming, WAIT)
        await pilot.press("ctrl+n")
        assert screen.conversation_id == ""
        assert "A new conversation" in screen.transcript()


async def test_deleting_a_conversation_asks_first(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        table = screen.query_one("#conversations", KeyedTable)
        table.focus()
        await pilot.press("down", "delete")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), WAIT)
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, ChatScreen), WAIT)
        assert not [c for c in fake.calls if c[0] == "delete_conversation"]
        await pilot.press("delete")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), WAIT)
        await pilot.press("y")
        await wait_for(lambda: table.row_count == 2, WAIT, message="deleted and listed again")
        assert ("delete_conversation", ("conv-2",)) in fake.calls
        assert "conv-2" not in table.keys


async def open_models(app: SutazaiApp, pilot: Pilot[None]) -> ModelsScreen:
    await wait_for(lambda: "models" in app.installed, WAIT, message="signed in")
    await pilot.press("6")
    await wait_for(lambda: isinstance(app.screen, ModelsScreen), WAIT, message="models screen")
    screen = models_screen(app)
    await wait_for(lambda: screen.polls >= 1, WAIT, message="first poll")
    return screen


async def test_models_show_backends_breakers_and_cache_and_keep_polling(fake: FakeMesh) -> None:
    app = make_app(fake, models_poll_seconds=0.5)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_models(app, pilot)
        assert cell(app, "#backends", "embedded", "breaker") == "closed"
        assert cell(app, "#backends", "ollama", "breaker") == "open"
        assert cell(app, "#backends", "embedded", "tps") == "48.7"
        assert cell(app, "#backends", "embedded", "busy") == "1/1"
        assert cell(app, "#backends", "embedded", "queue") == "2/8"
        assert cell(app, "#models", EMBEDDED, "loaded") == "yes"
        assert cell(app, "#models", "qwen2.5-0.5b", "loaded") == "no"
        assert "75.0% hits" in status_text(app, "#cache")
        # The breaker recovers on the mesh: the next poll shows it.
        reset = await fake.reset_breaker("ollama")
        assert reset.breaker.state == inf_pb.BREAKER_STATE_CLOSED
        await wait_for(
            lambda: cell(app, "#backends", "ollama", "breaker") == "closed",
            WAIT,
            message="polled again",
        )
        assert screen.polls >= 2


async def test_an_operator_loads_resets_and_clears_after_confirming(fake: FakeMesh) -> None:
    fake.saved = OPERATOR
    app = make_app(fake)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_models(app, pilot)
        enabled = {b.binding.action for b in app.active_bindings.values() if b.enabled}
        assert enabled >= {"clear_cache"}
        screen.query_one("#models", KeyedTable).focus()
        await pilot.press("down", "down", "l")  # qwen2.5-0.5b
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), WAIT)
        await pilot.press("y")
        await wait_for(lambda: ("load_model", ("qwen2.5-0.5b",)) in fake.calls, WAIT)
        await wait_for(lambda: isinstance(app.screen, ModelsScreen), WAIT)
        await pilot.press("u")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), WAIT)
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, ModelsScreen), WAIT)
        assert not [c for c in fake.calls if c[0] == "unload_model"]
        screen.query_one("#backends", KeyedTable).focus()
        await pilot.press("down", "b")  # ollama, open
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), WAIT)
        await pilot.press("y")
        await wait_for(lambda: ("reset_breaker", ("ollama",)) in fake.calls, WAIT)
        await wait_for(lambda: cell(app, "#backends", "ollama", "breaker") == "closed", WAIT)
        await pilot.press("c")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), WAIT)
        await pilot.press("y")
        await wait_for(lambda: ("clear_cache", ()) in fake.calls, WAIT)
        await wait_for(lambda: "0 replies" in status_text(app, "#cache"), WAIT)
        titles = [hit.text async for hit in DashboardCommands(app.screen).discover()]
        assert "Models: clear the reply cache" in titles


async def test_a_user_sees_no_model_actions_and_no_cache_figures(fake: FakeMesh) -> None:
    fake.saved = USER
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_models(app, pilot)
        assert cell(app, "#backends", "ollama", "breaker") == "open"
        screen.query_one("#models", KeyedTable).focus()
        await pilot.press("l", "u", "c")
        screen.query_one("#backends", KeyedTable).focus()
        await pilot.press("b")
        await pilot.pause()
        assert isinstance(app.screen, ModelsScreen)
        enabled = {b.binding.action for b in app.active_bindings.values() if b.enabled}
        assert not enabled & ACTIONS
        shown = {b.binding.action for b in app.active_bindings.values()}
        assert not shown & {a for a in ACTIONS if screen.check_action(a, ()) is not False}
        titles = [hit.text async for hit in DashboardCommands(app.screen).discover()]
        assert not [t for t in titles if t.startswith("Models:") and "refresh" not in t]
        assert "need the operator role" in status_text(app, "#cache")
        assert ("cache_stats", ()) not in fake.calls
        assert not {c[0] for c in fake.calls} & {
            "load_model",
            "unload_model",
            "reset_breaker",
            "clear_cache",
        }
