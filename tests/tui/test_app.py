"""Pilot tests of the dashboard on the fake mesh: roles, actions, filters, banner, session end."""

from __future__ import annotations

import grpc
from rich.text import Text
from textual.widgets import Input, RichLog, Select, Static

from sutazai.auth.v1 import access_pb2
from sutazai.system.v1 import system_service_pb2 as system_pb
from sutazai.tui.app import SutazaiApp
from sutazai.tui.screens.confirm import ConfirmScreen, RoleScreen
from sutazai.tui.screens.identity import IdentityScreen
from sutazai.tui.screens.logs import LogsScreen
from sutazai.tui.screens.overview import OverviewScreen
from sutazai.tui.screens.services import ServicesScreen
from sutazai.tui.screens.sign_in import SignInScreen
from sutazai.tui.source import CallFailed, ConnectionState, SessionEnded
from sutazai.tui.widgets.banner import ConnectionBanner
from sutazai.tui.widgets.tables import KeyedTable
from tests.harness.waiting import wait_for
from tests.tui.conftest import make_app
from tests.tui.fake import OPERATOR, USER, FakeMesh, figures, status, traffic

WAIT = 5.0


def cell(app: SutazaiApp, table: str, row: str, column: str) -> str:
    value = app.screen.query_one(table, KeyedTable).get_cell(row, column)
    return value.plain if isinstance(value, Text) else str(value)


async def on_screen(app: SutazaiApp, kind: type) -> None:
    await wait_for(lambda: isinstance(app.screen, kind), WAIT, message=kind.__name__)


async def rows(app: SutazaiApp, table: str, count: int) -> None:
    await wait_for(
        lambda: (
            app.screen.query(table) and app.screen.query_one(table, KeyedTable).row_count == count
        ),
        WAIT,
        message=f"{count} rows in {table}",
    )


async def test_a_saved_session_opens_the_overview_with_every_component(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)):
        await on_screen(app, OverviewScreen)
        await rows(app, "#components", 6)
        assert cell(app, "#components", "postgres", "state") == "healthy"
        assert cell(app, "#components", "auth/4c1e9a02b7d3", "latency") == "4.2"
        assert app.installed == [
            "overview",
            "services",
            "identity",
            "logs",
            "chat",
            "models",
            "agents",
            "tasks",
            "hardware",
        ]


async def test_a_component_turning_unhealthy_updates_its_row_in_place_and_raises_an_alert(
    fake: FakeMesh,
) -> None:
    app = make_app(fake, error_rate_alert=0.5, p99_alert_ms=5000)
    async with app.run_test(size=(80, 24)):
        await on_screen(app, OverviewScreen)
        await rows(app, "#components", 6)
        table = app.screen.query_one("#components", KeyedTable)
        await wait_for(lambda: app.screen.query_one("#traffic", KeyedTable).row_count == 3, WAIT)
        alerts = app.screen.query_one("#alerts", KeyedTable)
        assert alerts.row_count == 0  # the fake's traffic is under these thresholds
        key_before = table.keys
        fake.push("status", status(auth_healthy=False))
        await wait_for(
            lambda: cell(app, "#components", "auth/4c1e9a02b7d3", "state") == "unhealthy", WAIT
        )
        assert table.keys == key_before
        await wait_for(lambda: alerts.row_count == 1, WAIT)
        assert "connection refused" in cell(
            app, "#alerts", "component:auth/4c1e9a02b7d3", "message"
        )
        fake.push("status", status())
        await wait_for(lambda: alerts.row_count == 0, WAIT)


async def test_traffic_over_the_thresholds_of_the_settings_raises_alerts(fake: FakeMesh) -> None:
    app = make_app(fake)  # defaults: 5 % errors, 1000 ms p99; the fake's system has 12 %, 1250 ms
    async with app.run_test(size=(80, 24)):
        await on_screen(app, OverviewScreen)
        await rows(app, "#alerts", 2)
        assert cell(app, "#traffic", "sutazai.system.v1.SystemService", "errors") == "12.0%"
        assert len(app.screen.query_one("#traffic").history("edge")) == 12  # type: ignore[attr-defined]


async def test_a_first_traffic_sample_shows_no_rates(fake: FakeMesh) -> None:
    first = traffic(0)
    first.window_seconds = 0
    fake.initial["traffic"] = [first]
    app = make_app(fake)
    async with app.run_test(size=(80, 24)):
        await on_screen(app, OverviewScreen)
        await rows(app, "#traffic", 3)
        assert cell(app, "#traffic", "edge", "rps") == "—"


async def test_a_window_without_requests_shows_no_latency_or_error_rate(fake: FakeMesh) -> None:
    idle = traffic(0)
    for service in idle.services:
        service.figures.Clear()
    fake.initial["traffic"] = [idle]
    app = make_app(fake)
    async with app.run_test(size=(80, 24)):
        await on_screen(app, OverviewScreen)
        await rows(app, "#traffic", 3)
        auth = "sutazai.auth.v1.AuthService"
        assert cell(app, "#traffic", auth, "rps") == "0.0"
        assert [cell(app, "#traffic", auth, c) for c in ("errors", "p50", "p99")] == ["—"] * 3


async def test_a_service_serving_grpc_and_http_gets_a_row_for_each(fake: FakeMesh) -> None:
    sample = traffic(0)
    sample.services.add(
        service="inference",
        grpc_service="sutazai.inference.v1.InferenceService",
        figures=figures(2.0, 0.0, 40.0, 90.0, 120),
    )
    sample.services.add(
        service="inference", http_prefixes=["/openai/"], figures=figures(3.0, 0.5, 30.0, 80.0, 99)
    )
    fake.initial["traffic"] = [sample]
    app = make_app(fake)
    async with app.run_test(size=(100, 24)):
        await on_screen(app, OverviewScreen)
        await rows(app, "#traffic", 5)
        grpc, http = "sutazai.inference.v1.InferenceService", "http:inference"
        assert cell(app, "#traffic", grpc, "service") == "inference InferenceService"
        assert cell(app, "#traffic", http, "service") == "inference /openai/"
        assert cell(app, "#traffic", http, "rps") == "3.0"
        assert cell(app, "#traffic", http, "errors") == "50.0%"
        # Its error rate (over the default 5 %) is an alert of its own.
        await wait_for(
            lambda: "error_rate:http:inference" in app.screen.query_one("#alerts", KeyedTable).keys,
            WAIT,
        )


async def test_without_a_saved_session_the_sign_in_screen_asks_and_refuses_a_wrong_password(
    fake: FakeMesh,
) -> None:
    fake.saved = None
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await on_screen(app, SignInScreen)
        await wait_for(lambda: not app.screen.query_one("#username", Input).disabled, WAIT)
        await pilot.click("#username")
        await pilot.press(*"ursula", "enter", *"wrong", "enter")
        await wait_for(
            lambda: "refused" in str(app.screen.query_one("#message", Static).content), WAIT
        )
        assert isinstance(app.screen, SignInScreen)
        assert app.screen.query_one("#password", Input).value == ""
        await pilot.click("#password")
        await pilot.press(*"pw-ursula", "enter")
        await on_screen(app, OverviewScreen)


async def test_a_user_sees_no_identity_or_logs_screen_nor_their_keys_or_commands(
    fake: FakeMesh,
) -> None:
    fake.saved = USER
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await on_screen(app, OverviewScreen)
        assert app.installed == [
            "overview",
            "services",
            "chat",
            "models",
            "agents",
            "tasks",
            "hardware",
        ]
        await pilot.press("3")
        await pilot.press("4")
        await pilot.pause()
        assert isinstance(app.screen, OverviewScreen)
        enabled = {b.binding.action for b in app.active_bindings.values() if b.enabled}
        assert "show('services')" in enabled
        assert not enabled & {"show('identity')", "show('logs')"}
        titles = [title for title, _, _ in app.commands()]
        assert not any("Identity" in t or "Logs" in t for t in titles)
        await pilot.press("2")
        await on_screen(app, ServicesScreen)
        assert ("list_users", ()) not in fake.calls


async def test_an_operator_sees_logs_but_not_identity(fake: FakeMesh) -> None:
    fake.saved = OPERATOR
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await on_screen(app, OverviewScreen)
        assert app.installed == [
            "overview",
            "services",
            "logs",
            "chat",
            "models",
            "agents",
            "tasks",
            "hardware",
        ]
        await pilot.press("3")
        await pilot.pause()
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("4")
        await on_screen(app, LogsScreen)


async def test_services_show_each_instance_with_uptime_and_envoys_view(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await on_screen(app, ServicesScreen)
        await rows(app, "#instances", 2)
        assert cell(app, "#instances", "auth/4c1e9a02b7d3", "uptime") == "1h02m"
        assert cell(app, "#instances", "auth/4c1e9a02b7d3", "health") == "healthy"
        await rows(app, "#endpoints", 1)
        assert cell(app, "#endpoints", "sutazai.auth.v1.AuthService", "health") == "healthy"


async def test_an_instance_serving_http_routes_shows_their_endpoint(fake: FakeMesh) -> None:
    view = fake.initial["services"][0]
    instance = view.services[0].instances[0]
    instance.endpoints.add(
        health=system_pb.ENDPOINT_HEALTH_FAILING_HEALTH_CHECK,
        health_flags="/failed_active_hc",
        http_prefixes=["/openai/"],
        requests_total=43,
    )
    app = make_app(fake)
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.press("2")
        await on_screen(app, ServicesScreen)
        await rows(app, "#endpoints", 2)
        assert cell(app, "#endpoints", "http", "health") == "failing hc"
        assert cell(app, "#endpoints", "http", "flags") == "/failed_active_hc"
        assert cell(app, "#endpoints", "sutazai.auth.v1.AuthService", "health") == "healthy"
        keys = app.screen.query_one("#endpoints", KeyedTable).keys
        assert [cell(app, "#endpoints", k, "cluster") for k in keys] == ["AuthService", "/openai/"]


async def identity(app: SutazaiApp, pilot: object) -> None:
    await on_screen(app, OverviewScreen)
    await pilot.press("3")  # type: ignore[attr-defined]
    await on_screen(app, IdentityScreen)
    await rows(app, "#users", 4)
    app.screen.query_one("#users", KeyedTable).focus()


async def test_deactivating_a_user_asks_first_then_calls_and_reloads(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await identity(app, pilot)
        await pilot.press("down", "down")  # alice, mallory, oscar
        await pilot.press("d")
        await on_screen(app, ConfirmScreen)
        await pilot.press("n")
        await on_screen(app, IdentityScreen)
        assert not [c for c in fake.calls if c[0] == "deactivate_user"]
        await pilot.press("d")
        await on_screen(app, ConfirmScreen)
        await pilot.press("y")
        await wait_for(lambda: ("deactivate_user", ("oscar",)) in fake.calls, WAIT)
        await wait_for(lambda: cell(app, "#users", "oscar", "active") == "no", WAIT)
        assert [c for c in fake.calls if c[0] == "list_users"].__len__() == 2


async def test_unlock_and_revoke_each_call_the_api_after_confirmation(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await identity(app, pilot)
        await pilot.press("down")  # mallory
        await pilot.press("u")
        await on_screen(app, ConfirmScreen)
        await pilot.press("y")
        await wait_for(lambda: ("unlock_user", ("mallory",)) in fake.calls, WAIT)
        await on_screen(app, IdentityScreen)
        await pilot.press("x")
        await on_screen(app, ConfirmScreen)
        await pilot.click("#yes")
        await wait_for(lambda: ("revoke_user_sessions", ("mallory",)) in fake.calls, WAIT)


async def test_changing_a_role_picks_it_confirms_and_calls(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await identity(app, pilot)
        await pilot.press("down", "down", "down")  # ursula, a user
        await pilot.press("r")
        await on_screen(app, RoleScreen)
        app.screen.query_one("#role", Select).value = access_pb2.ROLE_OPERATOR
        await pilot.click("#apply")
        await on_screen(app, ConfirmScreen)
        await pilot.press("y")
        await wait_for(
            lambda: ("set_user_role", ("ursula", access_pb2.ROLE_OPERATOR)) in fake.calls, WAIT
        )
        await wait_for(lambda: cell(app, "#users", "ursula", "role") == "operator", WAIT)


async def test_a_refused_action_is_shown_not_raised(fake: FakeMesh) -> None:
    async def refuse(username: str) -> int:
        raise CallFailed(grpc.StatusCode.PERMISSION_DENIED, "not yourself")

    fake.revoke_user_sessions = refuse  # type: ignore[method-assign]
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await identity(app, pilot)
        await pilot.press("x", "y")
        await wait_for(
            lambda: any("not yourself" in str(n.message) for n in app._notifications), WAIT
        )
        assert isinstance(app.screen, IdentityScreen)


async def test_the_audit_log_is_loaded_then_followed_and_filtered(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await identity(app, pilot)
        await rows(app, "#audit", 4)
        assert fake.open("audit")[-1] is not None
        assert ("watch_audit", ("", "", 4)) in fake.calls  # resumes after the newest listed
        from tests.tui.fake import audit_event

        fake.push("audit", [audit_event(5, "alice", "auth.logout", "alice")])
        await rows(app, "#audit", 5)
        await pilot.click("#actor")
        await pilot.press(*"mallory", "enter")
        await wait_for(lambda: ("list_audit_events", ("mallory", "", 100)) in fake.calls, WAIT)
        await rows(app, "#audit", 1)
        assert fake.open("audit")[0].closed  # the unfiltered stream ended with its worker
        assert ("watch_audit", ("mallory", "", 2)) in fake.calls


async def test_logs_follow_a_component_with_level_and_search_filters(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await on_screen(app, LogsScreen)
        await wait_for(lambda: ("watch_logs", ("auth", 200, True, 0, "")) in fake.calls, WAIT)
        log = app.screen.query_one("#log", RichLog)
        await wait_for(lambda: len(log.lines) == 3, WAIT)
        app.screen.query_one("#level", Select).value = system_pb.LOG_LEVEL_WARNING
        await wait_for(
            lambda: (
                ("watch_logs", ("auth", 200, True, system_pb.LOG_LEVEL_WARNING, "")) in fake.calls
            ),
            WAIT,
        )
        await pilot.click("#search")
        await pilot.press(*"redis", "enter")
        await wait_for(
            lambda: (
                ("watch_logs", ("auth", 200, True, system_pb.LOG_LEVEL_WARNING, "redis"))
                in fake.calls
            ),
            WAIT,
        )
        app.screen.query_one("#component", Select).value = "envoy"
        await wait_for(
            lambda: any(c[1][:1] == ("envoy",) for c in fake.calls if c[0] == "watch_logs"), WAIT
        )
        assert all(stream.closed for stream in fake.open("logs")[:-1])


async def test_the_banner_shows_while_disconnected(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)):
        await on_screen(app, OverviewScreen)
        banner = app.screen.query_one(ConnectionBanner)
        assert not banner.display
        fake.set_connection(
            ConnectionState(
                connected=False, detail="Envoy unreachable at 127.0.0.1:10005", retry_in=2.0
            )
        )
        await wait_for(lambda: banner.display, WAIT)
        assert "Envoy unreachable" in str(banner.render())
        fake.set_connection(ConnectionState(connected=True))
        await wait_for(lambda: not banner.display, WAIT)


async def test_a_session_ending_in_a_stream_returns_to_sign_in_and_ends_every_stream(
    fake: FakeMesh,
) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await on_screen(app, OverviewScreen)
        await pilot.press("2")
        await on_screen(app, ServicesScreen)
        await wait_for(lambda: bool(fake.open("services")), WAIT)
        fake.push("status", SessionEnded("refresh refused"))
        await on_screen(app, SignInScreen)
        await wait_for(lambda: app.installed == [], WAIT)
        assert "session ended" in str(app.screen.query_one("#message", Static).content)
        await wait_for(
            lambda: all(s.closed for streams in fake.streams.values() for s in streams), WAIT
        )
        await pilot.press("1")
        assert isinstance(app.screen, SignInScreen)


async def test_sign_out_and_the_theme_toggle(fake: FakeMesh) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await on_screen(app, OverviewScreen)
        theme = app.theme
        await pilot.press("ctrl+t")
        assert app.theme != theme
        await pilot.press("ctrl+o")
        await on_screen(app, SignInScreen)
        await wait_for(lambda: app.installed == [], WAIT)
        assert ("sign_out", ()) in fake.calls


async def test_the_palette_offers_the_identity_actions_on_the_identity_screen(
    fake: FakeMesh,
) -> None:
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await identity(app, pilot)
        from sutazai.tui.commands import DashboardCommands

        provider = DashboardCommands(app.screen)
        titles = [hit.text async for hit in provider.discover()]
        assert "Identity: deactivate the selected user" in titles
        assert "Go to Logs" in titles
        hits = [hit.text async for hit in provider.search("revoke")]
        assert hits == ["Identity: revoke the selected user's sessions"]
