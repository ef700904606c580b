"""The dashboard against the real mesh of the suite (``mesh_services``), through the client.

What issue 8 asks to see: the overview lists the running services healthy; a SIGKILLed
instance turns unhealthy within 5 s and its row is healthy again once the supervisor restarts it;
an admin deactivates a user from the Identity screen and the audit log shows it; a ``user``
sees no admin actions. Issue 9: a chat message typed in the dashboard streams a reply from the
real (embedded) model, and the Models screen shows the embedded backend. Issue 10: a
``text.summarize`` task created from the Tasks screen's form appears in the live list and
reaches SUCCEEDED with a result (the task service, the coordinator and the built-in text agent,
all through the edge). Issue 11: the Hardware screen draws live samples of this host, and an
operator cleans a file of a tree under the allowed root from the screen (dry run, then the
confirmed run moves it into the quarantine) and restores it from the quarantine pane, byte for
byte.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input, Select, TextArea

from sutazai.chat.v1 import chat_service_pb2 as chat_pb
from sutazai.client import MemoryTokenStore, MeshClient
from sutazai.ops.supervisor.environment import settings_environment
from sutazai.runtime.deployment import load_catalog
from sutazai.runtime.settings import MeshSettings
from sutazai.tasks.v1 import task_service_pb2 as tasks_pb
from sutazai.tui.app import SutazaiApp
from sutazai.tui.screens.chat import ChatScreen
from sutazai.tui.screens.confirm import ConfirmScreen
from sutazai.tui.screens.hardware import HardwareScreen
from sutazai.tui.screens.identity import IdentityScreen
from sutazai.tui.screens.models import ModelsScreen
from sutazai.tui.screens.optimise_form import OptimiseFormScreen
from sutazai.tui.screens.overview import OverviewScreen
from sutazai.tui.screens.task_form import TaskFormScreen
from sutazai.tui.screens.tasks import TasksScreen
from sutazai.tui.settings import DashboardSettings
from sutazai.tui.source import opened
from sutazai.tui.widgets.tables import KeyedTable
from sutazai.tui.widgets.trend import Trend
from tests.harness.cli import run_cli
from tests.harness.mesh import hardware_root
from tests.harness.waiting import wait_for

STARTUP = 30.0
"""Seconds for a screen's first data through the real mesh (loaded CI machines)."""


async def account(settings: MeshSettings, role: str) -> tuple[str, str]:
    """A new ``role`` account made with ``sutazai users create``: its name and password."""
    username = f"tui{role[:2]}{secrets.token_hex(4)}"
    password = f"{secrets.token_urlsafe(12)}-Aa1"
    created = await run_cli(
        "users",
        "create",
        "--username",
        username,
        "--email",
        f"{username}@example.org",
        "--role",
        role,
        "--password-stdin",
        env=settings_environment(settings),
        stdin=f"{password}\n",
    )
    assert created.code == 0, created.stderr
    return username, password


async def signed_in_client(settings: MeshSettings, role: str) -> MeshClient:
    """A client of the mesh signed in as a new ``role`` account (tokens kept in memory)."""
    username, password = await account(settings, role)
    client = MeshClient(settings, tokens=MemoryTokenStore())
    await client.sign_in(username, password)
    return client


@pytest.fixture
async def admin_client(mesh_services: MeshSettings) -> AsyncIterator[MeshClient]:
    client = await signed_in_client(mesh_services, "admin")
    yield client
    await client.aclose()


def plain(table: KeyedTable, row: str, column: str) -> str:
    value = table.get_cell(row, column)
    return value.plain if isinstance(value, Text) else str(value)


def instance_rows(table: KeyedTable, service: str) -> dict[str, str]:
    """The state of each ``service/<instance>`` row of the components table."""
    return {key: plain(table, key, "state") for key in table.keys if key.startswith(f"{service}/")}


async def test_the_overview_lists_every_running_service_healthy(
    mesh_services: MeshSettings, admin_client: MeshClient
) -> None:
    app = SutazaiApp(admin_client, DashboardSettings())
    async with app.run_test(size=(160, 48)):
        # The screen is current as soon as it is pushed; its tables come with its compose.
        await wait_for(
            lambda: isinstance(app.screen, OverviewScreen) and app.screen.query("#components"),
            STARTUP,
        )
        table = app.screen.query_one("#components", KeyedTable)
        names = [entry.name for entry in load_catalog()]

        def all_healthy() -> bool:
            return all(
                (rows := instance_rows(table, name)) and set(rows.values()) == {"healthy"}
                for name in names
            )

        await wait_for(all_healthy, STARTUP, message="every service healthy on the overview")
        for infra in ("postgres", "redis", "nats", "envoy"):
            assert plain(table, infra, "state") == "healthy"


async def test_a_killed_instance_turns_unhealthy_within_5_s_and_comes_back(
    mesh_services: MeshSettings, admin_client: MeshClient
) -> None:
    app = SutazaiApp(admin_client, DashboardSettings())
    async with app.run_test(size=(160, 48)):
        # The screen is current as soon as it is pushed; its tables come with its compose.
        await wait_for(
            lambda: isinstance(app.screen, OverviewScreen) and app.screen.query("#components"),
            STARTUP,
        )
        table = app.screen.query_one("#components", KeyedTable)
        await wait_for(
            lambda: "healthy" in instance_rows(table, "auth").values(), STARTUP, message="auth"
        )
        # The pid comes from the registry, as the Services screen shows it.
        async with opened(admin_client.watch_services()) as views:
            async for view in views:
                [auth] = [service for service in view.services if service.name == "auth"]
                if auth.instances:
                    victim = auth.instances[0]
                    break
        key = f"auth/{victim.instance_id}"
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        await wait_for(
            lambda: instance_rows(table, "auth").get(key) == "unhealthy",
            5.0,
            interval=0.05,
            message=f"{key} unhealthy on the overview",
        )
        assert time.monotonic() - killed_at <= 5.0
        # The supervisor restarts the slot under the same instance id: the same row comes back.
        await wait_for(
            lambda: instance_rows(table, "auth").get(key) == "healthy",
            60.0,
            message=f"{key} healthy again on the overview after the restart",
        )


async def test_an_admin_deactivates_a_user_and_the_audit_log_shows_it(
    mesh_services: MeshSettings, admin_client: MeshClient
) -> None:
    victim, _ = await account(mesh_services, "user")
    app = SutazaiApp(admin_client, DashboardSettings())
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(lambda: isinstance(app.screen, OverviewScreen), STARTUP)
        await pilot.press("3")
        await wait_for(lambda: isinstance(app.screen, IdentityScreen), STARTUP)
        users = app.screen.query_one("#users", KeyedTable)
        await wait_for(lambda: victim in users.keys, STARTUP, message=f"{victim} listed")
        users.focus()
        users.move_cursor(row=users.keys.index(victim))
        await pilot.press("d")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), STARTUP)
        await pilot.press("y")
        await wait_for(
            lambda: plain(users, victim, "active") == "no", STARTUP, message="shown inactive"
        )
        audit = app.screen.query_one("#audit", KeyedTable)

        def audited() -> bool:
            return any(
                plain(audit, key, "target") == victim
                and plain(audit, key, "action") == "auth.user_deactivated"
                and plain(audit, key, "outcome") == "ok"
                for key in audit.keys
            )

        await wait_for(audited, STARTUP, message="the deactivation in the live audit log")


async def test_a_user_sees_no_admin_actions(mesh_services: MeshSettings) -> None:
    client = await signed_in_client(mesh_services, "user")
    try:
        app = SutazaiApp(client, DashboardSettings())
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(lambda: isinstance(app.screen, OverviewScreen), STARTUP)
            assert app.installed == [
                "overview",
                "services",
                "chat",
                "models",
                "agents",
                "tasks",
                "hardware",
            ]
            await pilot.press("3", "4")
            await pilot.pause()
            assert isinstance(app.screen, OverviewScreen)
            titles = " ".join(title for title, _, _ in app.commands())
            assert "Identity" not in titles
            assert "Logs" not in titles
            enabled = {b.binding.action for b in app.active_bindings.values() if b.enabled}
            assert not enabled & {"show('identity')", "show('logs')"}
    finally:
        await client.aclose()


class RecordingClient(MeshClient):
    """The real client, noting when each reply delta arrived (to show the reply streamed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deltas: list[tuple[float, str]] = []

    def chat_stream(
        self, message: str, **options: Any
    ) -> AsyncIterator[chat_pb.ChatStreamResponse]:
        events = super().chat_stream(message, **options)

        async def recorded() -> AsyncIterator[chat_pb.ChatStreamResponse]:
            async with opened(events) as inner:
                async for event in inner:
                    if event.WhichOneof("event") == "delta":
                        self.deltas.append((time.monotonic(), event.delta.text))
                    yield event

        return recorded()


async def test_a_chat_message_typed_in_the_dashboard_streams_a_reply(
    mesh_services: MeshSettings,
) -> None:
    username, password = await account(mesh_services, "user")
    client = RecordingClient(mesh_services, tokens=MemoryTokenStore())
    await client.sign_in(username, password)
    try:
        app = SutazaiApp(client, DashboardSettings())
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_for(lambda: isinstance(app.screen, OverviewScreen), STARTUP)
            await pilot.press("5")
            await wait_for(lambda: isinstance(app.screen, ChatScreen), STARTUP)
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            await wait_for(
                lambda: screen.query_one("#model", Select).value != Select.BLANK,
                STARTUP,
                message="the models listed",
            )
            # Enough tokens to arrive in several deltas; unseeded, so no cached reply either.
            screen.query_one("#max-tokens", Input).value = "24"
            box = screen.query_one("#message", Input)
            box.focus()
            await pilot.press(*f"Say hello to {secrets.token_hex(3)}.", "enter")
            await wait_for(
                lambda: not screen.streaming and bool(client.deltas),
                120.0,
                message="the reply streamed in",
            )
            reply = "".join(text for _, text in client.deltas)
            assert reply.strip()
            assert screen.transcript().endswith(reply)
            assert len(client.deltas) >= 2, "the reply came in one piece, not streamed"
            assert screen.conversation_id
            assert "tokens" in str(screen.query_one("#chat-status").render())
            # The conversation is stored and listed for its user.
            conversations = screen.query_one("#conversations", KeyedTable)
            await wait_for(
                lambda: screen.conversation_id in conversations.keys,
                STARTUP,
                message="the new conversation listed",
            )
    finally:
        await client.aclose()


async def test_the_models_screen_shows_the_embedded_backend(
    mesh_services: MeshSettings, admin_client: MeshClient
) -> None:
    app = SutazaiApp(admin_client, DashboardSettings())
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(lambda: isinstance(app.screen, OverviewScreen), STARTUP)
        await pilot.press("6")
        await wait_for(lambda: isinstance(app.screen, ModelsScreen), STARTUP)
        backends = app.screen.query_one("#backends", KeyedTable)
        await wait_for(lambda: "embedded" in backends.keys, STARTUP, message="embedded listed")
        assert plain(backends, "embedded", "breaker") == "closed"
        models = app.screen.query_one("#models", KeyedTable)
        await wait_for(lambda: bool(models.keys), STARTUP, message="models listed")


TASK_DEADLINE = 180.0
"""Seconds for a summary by the embedded model on a loaded machine (queue, agent, inference)."""


async def test_a_task_created_from_the_tasks_screen_appears_and_succeeds(
    mesh_services: MeshSettings,
) -> None:
    client = await signed_in_client(mesh_services, "user")
    try:
        app = SutazaiApp(client, DashboardSettings())
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_for(lambda: isinstance(app.screen, OverviewScreen), STARTUP)
            await pilot.press("8")
            await wait_for(lambda: isinstance(app.screen, TasksScreen), STARTUP)
            screen = app.screen
            assert isinstance(screen, TasksScreen)
            table = screen.query_one("#tasks", KeyedTable)
            before = set(table.keys)
            await pilot.press("n")
            await wait_for(lambda: isinstance(app.screen, TaskFormScreen), STARTUP)
            await pilot.press(*"text.summarize")
            text = (
                "Envoy is the edge of the mesh: it terminates TLS, routes gRPC and REST calls "
                f"to the services and checks their health. Run {secrets.token_hex(3)}."
            )
            app.screen.query_one("#payload", TextArea).text = json.dumps(
                {"text": text, "max_words": 12}
            )
            await pilot.press("ctrl+s")
            await wait_for(lambda: isinstance(app.screen, TasksScreen), STARTUP)

            def created() -> list[str]:
                return [
                    key
                    for key in table.keys
                    if key not in before and screen.tasks[key].type == "text.summarize"
                ]

            await wait_for(lambda: len(created()) == 1, STARTUP, message="the task listed")
            [task_id] = created()
            await wait_for(
                lambda: plain(table, task_id, "state") in {"succeeded", "failed", "cancelled"},
                TASK_DEADLINE,
                message="the task finished in the live list",
            )
            assert plain(table, task_id, "state") == "succeeded", screen.tasks[task_id].error
            stored = await client.get_task(task_id)
            assert stored.state == tasks_pb.TASK_STATE_SUCCEEDED
            assert stored.attempt >= 1
            assert stored.agent_id
            assert [a.state for a in stored.attempts][-1] == tasks_pb.TASK_STATE_SUCCEEDED
            values = [v for v in stored.result.fields.values() if v.WhichOneof("kind")]
            assert values, "SUCCEEDED without a result"
            # The detail pane of the highlighted (new) task shows the result.
            await wait_for(
                lambda: "result" in str(screen.query_one("#detail").render()),
                STARTUP,
                message="the result in the detail pane",
            )
    finally:
        await client.aclose()


DAY = 86_400.0


async def answer(app: SutazaiApp, pilot: Pilot[None], key: str) -> None:
    """Answer the confirmation the last key opened."""
    await wait_for(lambda: isinstance(app.screen, ConfirmScreen), STARTUP, message="asked")
    await pilot.press(key)
    await wait_for(lambda: isinstance(app.screen, HardwareScreen), STARTUP, message="answered")


async def test_the_hardware_screen_shows_live_samples_and_restores_a_quarantined_file(
    mesh_services: MeshSettings,
) -> None:
    tree = (hardware_root(mesh_services.state_dir) / f"tui{secrets.token_hex(4)}").resolve()
    old = tree / "cache" / "old.tmp"
    kept = tree / "cache" / "new.tmp"
    old.parent.mkdir(parents=True)
    content = os.urandom(4096) + b"restored byte for byte"
    old.write_bytes(content)
    os.chmod(old, 0o640)
    aged = time.time() - 30 * DAY
    os.utime(old, (aged, aged))
    kept.write_bytes(b"fresh")
    before = old.stat()
    client = await signed_in_client(mesh_services, "operator")
    try:
        app = SutazaiApp(client, DashboardSettings(hardware_interval_seconds=0.5))
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_for(lambda: isinstance(app.screen, OverviewScreen), STARTUP)
            await pilot.press("9")
            await wait_for(lambda: isinstance(app.screen, HardwareScreen), STARTUP)
            screen = app.screen
            assert isinstance(screen, HardwareScreen)
            # Live samples of this host, one after another.
            await wait_for(lambda: screen.samples >= 3, STARTUP, message="three live samples")
            sample = screen.sample
            assert sample is not None
            assert sample.hostname == socket.gethostname()
            assert sample.cpu.logical_cores == os.cpu_count()
            assert len(screen.query_one("#trend-cpu", Trend).values) >= 3
            assert sample.disks, "no disk in the sample"

            # Clean the tree from the Optimise pane: parameters, dry run, confirmed run.
            await pilot.press("o")
            operations = screen.query_one("#operations", KeyedTable)
            await wait_for(lambda: operations.highlighted_key() == "clean", STARTUP)
            await pilot.press("e")
            await wait_for(lambda: isinstance(app.screen, OptimiseFormScreen), STARTUP)
            form = app.screen
            form.query_one("#opt-path", Input).value = str(tree)
            form.query_one("#opt-days", Input).value = "7"
            form.query_one("#opt-patterns", Input).value = "*.tmp"
            await pilot.press("ctrl+s")
            await wait_for(lambda: isinstance(app.screen, HardwareScreen), STARTUP)
            await pilot.press("d")
            await wait_for(lambda: "clean" in screen.dry_runs, STARTUP, message="the dry run")
            dry = screen.dry_runs["clean"].outcome.report
            assert dry.dry_run
            assert [change.target for change in dry.changes] == [str(old)]
            changes = screen.query_one("#changes", KeyedTable)
            assert plain(changes, "0", "target") == str(old)
            assert old.read_bytes() == content  # a dry run changes nothing
            await pilot.press("x")
            await answer(app, pilot, "y")
            await wait_for(lambda: "clean" in screen.runs, STARTUP, message="the run")
            real = screen.runs["clean"].outcome.report
            assert not real.dry_run
            assert real.failed == 0, real
            [moved] = [change.quarantine_id for change in real.changes]
            assert moved
            assert not old.exists()
            assert kept.read_bytes() == b"fresh"

            # Restore it from the Quarantine pane.
            await pilot.press("q")
            table = screen.query_one("#quarantine", KeyedTable)
            await wait_for(lambda: moved in table.keys, STARTUP, message="listed quarantined")
            assert plain(table, moved, "path") == str(old)
            table.move_cursor(row=table.keys.index(moved))
            await pilot.pause()
            await pilot.press("u")
            await answer(app, pilot, "y")
            await wait_for(lambda: moved not in table.keys, STARTUP, message="restored")
            assert old.read_bytes() == content
            after = old.stat()
            assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)
    finally:
        await client.aclose()
        shutil.rmtree(tree, ignore_errors=True)
