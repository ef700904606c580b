"""Pilot tests of the Agents and Tasks screens on the fake mesh.

A task created from the form appears in the live list (the fake sends it on the open
``WatchTasks`` stream as the service does); cancel and re-queue are confirmed first; filters
open a new stream; the registry's changes redraw the agents; operators change the strategy;
users see none of the operator views or keys.
"""

from __future__ import annotations

from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Checkbox, Select, Static, TextArea

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.coordinator.v1 import coordinator_service_pb2 as coord_pb
from sutazai.tasks.v1 import task_service_pb2 as tasks_pb
from sutazai.tui.app import SutazaiApp
from sutazai.tui.errors import OptionsError
from sutazai.tui.screens.agents import AgentsScreen, StrategyScreen
from sutazai.tui.screens.confirm import ConfirmScreen
from sutazai.tui.screens.task_form import TaskFormScreen, task_draft
from sutazai.tui.screens.tasks import TasksScreen, filter_states
from sutazai.tui.widgets.tables import KeyedTable
from tests.harness.waiting import wait_for
from tests.tui.conftest import make_app
from tests.tui.fake import DEAD_LETTERS, USER, FakeMesh, agent, task_id

WAIT = 5.0


def cell(app: SutazaiApp, table: str, row: str, column: str) -> str:
    value = app.screen.query_one(table, KeyedTable).get_cell(row, column)
    return value.plain if isinstance(value, Text) else str(value)


def rendered(app: SutazaiApp, selector: str) -> str:
    shown = app.screen.query_one(selector, Static).render()
    return shown.plain if isinstance(shown, Text) else str(shown)


async def open_tasks(app: SutazaiApp, pilot: Pilot[None]) -> TasksScreen:
    await wait_for(lambda: "tasks" in app.installed, WAIT, message="signed in")
    await pilot.press("8")
    await wait_for(lambda: isinstance(app.screen, TasksScreen), WAIT, message="tasks screen")
    screen = app.screen
    assert isinstance(screen, TasksScreen)
    table = screen.query_one("#tasks", KeyedTable)
    await wait_for(lambda: table.row_count == 5, WAIT, message="the snapshot drawn")
    table.focus()
    return screen


async def open_agents(app: SutazaiApp, pilot: Pilot[None]) -> AgentsScreen:
    await wait_for(lambda: "agents" in app.installed, WAIT, message="signed in")
    await pilot.press("7")
    await wait_for(lambda: isinstance(app.screen, AgentsScreen), WAIT, message="agents screen")
    screen = app.screen
    assert isinstance(screen, AgentsScreen)
    table = screen.query_one("#agents", KeyedTable)
    await wait_for(lambda: table.row_count == 4, WAIT, message="the agents drawn")
    return screen


async def test_a_task_created_from_the_form_appears_highlighted(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_tasks(app, pilot)
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, TaskFormScreen), WAIT, message="form")
        await pilot.press(*"text.summarize", "enter")  # enter moves on to the payload
        app.screen.query_one("#payload", TextArea).text = '{"text": "Envoy fronts the mesh."}'
        app.screen.query_one("#priority", Select).value = 2
        await pilot.press("ctrl+s")
        await wait_for(lambda: isinstance(app.screen, TasksScreen), WAIT, message="form closed")
        created = task_id(0xB1)
        table = screen.query_one("#tasks", KeyedTable)
        await wait_for(lambda: created in table.keys, WAIT, message="the new task listed")
        assert ("create_task", ("text.summarize", {"text": "Envoy fronts the mesh."}, 2)) in (
            fake.calls
        )
        assert table.keys[0] == created  # newest first
        assert table.highlighted_key() == created
        assert cell(app, "#tasks", created, "state") == "queued"
        await wait_for(lambda: "reading the attempts" not in rendered(app, "#detail"), WAIT)
        assert created in rendered(app, "#detail")


async def test_the_form_refuses_a_payload_that_is_not_a_json_object(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_tasks(app, pilot)
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, TaskFormScreen), WAIT)
        await pilot.press(*"text.summarize")
        app.screen.query_one("#payload", TextArea).text = "[1, 2]"
        await pilot.press("ctrl+s")
        await wait_for(lambda: "JSON object" in rendered(app, "#form-error"), WAIT)
        assert isinstance(app.screen, TaskFormScreen)
        assert not [call for call in fake.calls if call[0] == "create_task"]
        await pilot.press("escape")
        await wait_for(lambda: isinstance(app.screen, TasksScreen), WAIT)


def test_task_draft_checks_what_the_service_checks() -> None:
    draft = task_draft(" text.summarize ", '{"a": 1}', 3)
    assert (draft.task_type, draft.payload, draft.priority) == ("text.summarize", {"a": 1}, 3)
    assert task_draft("x", "", 0).payload == {}
    bad = [
        ("", "{}", 0),
        ("Text", "{}", 0),
        ("x", "{", 0),
        ("x", '"s"', 0),
        ("x", '{"t": "' + "y" * 70_000 + '"}', 0),
        ("x", "{}", 4),
        ("x", "{}", None),
    ]
    for values in bad:
        try:
            task_draft(*values)
        except OptionsError:
            continue
        raise AssertionError(f"accepted {values!r}")


async def test_cancel_asks_first_then_cancels(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_tasks(app, pilot)
        running = task_id(0xA1)
        await pilot.press("c")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), WAIT)
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, TasksScreen), WAIT)
        assert not [call for call in fake.calls if call[0] == "cancel_task"]
        await pilot.press("c")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), WAIT)
        await pilot.press("y")
        await wait_for(
            lambda: cell(app, "#tasks", running, "state") == "cancelled",
            WAIT,
            message="shown cancelled",
        )
        assert ("cancel_task", (running, "cancelled from the dashboard")) in fake.calls
        # A finished task cannot be cancelled: the key is greyed out and does nothing.
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, TasksScreen)


async def test_an_operator_requeues_a_dead_letter(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_tasks(app, pilot)
        table = screen.query_one("#tasks", KeyedTable)
        dead = DEAD_LETTERS[0].task_id
        await pilot.press("d")
        await wait_for(lambda: table.keys == [dead], WAIT, message="the dead letters listed")
        await wait_for(lambda: "always fails" in rendered(app, "#detail"), WAIT)
        await pilot.press("r")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), WAIT)
        await pilot.press("y")
        await wait_for(lambda: table.keys == [], WAIT, message="no dead letter left")
        assert ("requeue_dead_letter", (dead,)) in fake.calls
        await pilot.press("d")
        await wait_for(lambda: dead in table.keys, WAIT, message="back in the live list")
        assert cell(app, "#tasks", dead, "state") == "queued"


async def test_filters_open_a_new_stream_and_a_task_leaving_them_is_dropped(
    fake: FakeMesh,
) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_tasks(app, pilot)
        screen.query_one("#state-filter", Select).value = "unfinished"
        screen.query_one("#all-users", Checkbox).value = True
        table = screen.query_one("#tasks", KeyedTable)
        wanted = ("watch_tasks", (tuple(filter_states("unfinished")), "", True, 200))
        await wait_for(lambda: wanted in fake.calls, WAIT, message="a stream with the filters")
        await wait_for(lambda: len(table.keys) == 2, WAIT, message="the unfinished ones")
        finished = tasks_pb.Task()
        finished.CopyFrom(fake.tasks[task_id(0xA1)])
        finished.state = tasks_pb.TASK_STATE_SUCCEEDED
        fake.push("tasks", tasks_pb.WatchTasksResponse(task=finished))
        await wait_for(lambda: table.keys == [task_id(0xA2)], WAIT, message="it left the list")


async def test_the_agents_follow_the_registry(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_agents(app, pilot)
        assert cell(app, "#agents", "text.1", "running") == "3/4"
        fake.push(
            "agents",
            agents_pb.WatchAgentsResponse(
                agent=agent("text.1", state=agents_pb.AGENT_STATE_OFFLINE, beat_ago=40)
            ),
        )
        await wait_for(lambda: cell(app, "#agents", "text.1", "state") == "offline", WAIT)
        await wait_for(lambda: "1 online" in rendered(app, "#agents-summary"), WAIT)
        # Offline agents sort after the others.
        assert app.screen.query_one("#agents", KeyedTable).keys[-2:] == ["polyglot.2", "text.1"]


async def test_an_operator_changes_the_strategy_after_confirming(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_agents(app, pilot)
        await wait_for(lambda: screen.polls >= 1, WAIT, message="polled")
        assert "round-robin" in rendered(app, "#agents-summary")
        await pilot.press("s")
        await wait_for(lambda: isinstance(app.screen, StrategyScreen), WAIT)
        app.screen.query_one("#strategy", Select).value = coord_pb.STRATEGY_LEAST_LOADED
        await pilot.click("#apply")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), WAIT)
        await pilot.press("y")
        await wait_for(
            lambda: ("set_strategy", (coord_pb.STRATEGY_LEAST_LOADED,)) in fake.calls, WAIT
        )
        await wait_for(lambda: "least-loaded" in rendered(app, "#agents-summary"), WAIT)


async def test_a_user_sees_no_operator_view_or_key() -> None:
    fake = FakeMesh(saved=USER)
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        agents_screen = await open_agents(app, pilot)
        assert not agents_screen.query("#streams")
        assert not agents_screen.query("#coordinator")
        assert agents_screen.commands() == []
        enabled = {b.binding.action for b in app.active_bindings.values() if b.enabled}
        assert "change_strategy" not in enabled
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, AgentsScreen)
        tasks_screen = await open_tasks(app, pilot)
        assert not tasks_screen.query("#all-users")
        titles = " ".join(title for title, _, _ in tasks_screen.commands())
        assert "dead letter" not in titles
        assert "create" in titles
        enabled = {b.binding.action for b in app.active_bindings.values() if b.enabled}
        assert not enabled & {"dead_letters", "requeue"}
        await pilot.press("d")
        await pilot.pause()
        assert not tasks_screen.showing_dead
    called = {name for name, _ in fake.calls}
    assert not called & {"list_dead_letters", "get_strategy", "coordinator_stats", "list_streams"}
