"""Models: the inference backends (breaker, concurrency, tokens/s), the models, the reply cache.

The inference and chat services offer no stream of these figures, so this is the one screen
that polls: a worker asks ``ListBackends``, ``ListModels`` and (operators) ``GetCacheStats``
every ``SUTAZAI_TUI_MODELS_POLL_SECONDS`` (2 s by default) while the session lasts. Operators
get the actions (load, unload, reset a breaker, clear the cache), each confirmed first; other
roles see no action at all, and no cache figures (the calls need ``operator``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Static

from sutazai.chat.v1 import chat_service_pb2 as chat_pb
from sutazai.inference.v1 import inference_service_pb2 as inference_pb
from sutazai.tui.access import may_operate
from sutazai.tui.format import (
    MISSING,
    backend_kind_name,
    breaker_name,
    clock_time,
    count,
    duration,
    percent,
    size,
)
from sutazai.tui.screens.base import MeshScreen
from sutazai.tui.screens.confirm import ConfirmScreen
from sutazai.tui.source import ClientError, SessionEnded
from sutazai.tui.widgets.tables import Cell, KeyedTable

BREAKER_STYLE = {"closed": "green", "open": "bold red", "half-open": "yellow", "unknown": ""}

Command = tuple[str, str, Callable[[], object]]
"""A palette entry: title, help, and what it does."""

OPERATOR_ACTIONS = frozenset({"load", "unload", "reset_breaker", "clear_cache"})


class ModelsScreen(MeshScreen):
    """Backends and models, polled; operator actions on the highlighted row."""

    SCREEN_NAME = "models"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "load", "Load"),
        Binding("u", "unload", "Unload"),
        Binding("b", "reset_breaker", "Reset breaker"),
        Binding("c", "clear_cache", "Clear cache"),
        Binding("ctrl+r", "refresh", "Refresh", show=False),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As :class:`MeshScreen`; nothing fetched yet."""
        super().__init__(*args, **kwargs)
        self._backends: dict[str, inference_pb.Backend] = {}
        self._models: dict[str, inference_pb.Model] = {}
        self._cache: chat_pb.GetCacheStatsResponse | None = None
        self.polls = 0
        """Completed polls (tests wait on it)."""

    @property
    def operator(self) -> bool:
        """Whether the signed-in role may take the actions (the server checks again)."""
        return may_operate(self.role)

    def compose_body(self) -> ComposeResult:
        """The screen's widgets."""
        yield Static(Text("Asking the inference service…"), id="models-summary")
        with Vertical(id="models-body"):
            backends = KeyedTable(
                [
                    ("backend", "Backend", None),
                    ("kind", "Kind", 8),
                    ("breaker", "Breaker", 9),
                    ("failures", "Fails", 5),
                    ("busy", "Busy", 5),
                    ("queue", "Queue", 5),
                    ("tps", "Tok/s", 6),
                    ("error", "Last error", None),
                ],
                id="backends",
            )
            backends.border_title = "Backends"
            yield backends
            models = KeyedTable(
                [
                    ("model", "Model", None),
                    ("backend", "Backend", None),
                    ("loaded", "Loaded", 6),
                    ("context", "Context", 7),
                    ("size", "Size", 10),
                    ("embed", "Embed", 5),
                ],
                id="models",
            )
            models.border_title = "Models"
            yield models
        yield Static(Text(""), id="cache")

    def on_mount(self) -> None:
        """Start polling."""
        self.poll()

    # --- polling ---------------------------------------------------------------------------

    @work(exclusive=True, group="models-poll")
    async def poll(self) -> None:
        """Fetch the figures every ``models_poll_seconds`` while the screen exists.

        A failure is shown once (an unreachable mesh also shows the banner); polling goes on
        and the next success clears it. An ended session goes back to sign-in.
        """
        failing = False
        while True:
            try:
                await self.fetch()
                failing = False
            except SessionEnded as error:
                self.report(error, "Reading the models")
                return
            except ClientError as error:
                if not failing:
                    self.report(error, "Reading the models")
                failing = True
            self.polls += 1
            await asyncio.sleep(self.settings.models_poll_seconds)

    async def fetch(self) -> None:
        """One round: backends, models and (operators) the cache; then draw it."""
        backends = await self.api.list_backends()
        models = await self.api.list_models()
        cache = await self.api.cache_stats() if self.operator else None
        self.show(backends, models, cache)

    def show(
        self,
        backends: list[inference_pb.Backend],
        models: inference_pb.ListModelsResponse,
        cache: chat_pb.GetCacheStatsResponse | None,
    ) -> None:
        """Draw one round of figures."""
        self._backends = {backend.name: backend for backend in backends}
        self._models = {model.name: model for model in models.models}
        self._cache = cache
        loaded = sum(1 for model in models.models if model.loaded)
        open_breakers = [
            b.name for b in backends if b.breaker.state != inference_pb.BREAKER_STATE_CLOSED
        ]
        summary = Text(
            f"{len(backends)} backends, {len(models.models)} models ({loaded} loaded), "
            f"default {models.default_model or MISSING}"
        )
        if open_breakers:
            summary.append(f", breaker not closed: {', '.join(open_breakers)}", style="bold red")
        summary.append(
            f"  polled {self.now().strftime('%H:%M:%S')} every "
            f"{self.settings.models_poll_seconds:g} s",
            style="dim",
        )
        self.query_one("#models-summary", Static).update(summary)
        self._draw_backends(backends)
        self._draw_models(models)
        self._draw_cache(cache)
        self.refresh_bindings()

    def _draw_backends(self, backends: list[inference_pb.Backend]) -> None:
        zone = self.now().tzinfo
        rows: dict[str, list[Cell]] = {}
        for backend in backends:
            state = breaker_name(backend.breaker.state)
            breaker = backend.breaker
            error = breaker.last_error or MISSING
            if backend.breaker.state == inference_pb.BREAKER_STATE_OPEN:
                error = f"{error} (opened {clock_time(breaker.opened_at, zone)})"
            rows[backend.name] = [
                Text(backend.name),
                Text(backend_kind_name(backend.kind)),
                Text(state, style=BREAKER_STYLE[state]),
                Text(
                    f"{breaker.consecutive_failures}/{breaker.failure_threshold}",
                    justify="right",
                ),
                Text(f"{backend.in_flight}/{backend.max_concurrency}", justify="right"),
                Text(f"{backend.queued}/{backend.max_queue}", justify="right"),
                Text(
                    f"{backend.last_tokens_per_second:.1f}"
                    if backend.last_tokens_per_second
                    else MISSING,
                    justify="right",
                ),
                Text(error, style="red" if breaker.last_error else ""),
            ]
        self.query_one("#backends", KeyedTable).sync(rows)

    def _draw_models(self, models: inference_pb.ListModelsResponse) -> None:
        rows: dict[str, list[Cell]] = {}
        for model in models.models:
            default = model.name == models.default_model
            rows[model.name] = [
                Text(f"{model.name}{' *' if default else ''}", style="bold" if default else ""),
                Text(model.backend),
                Text("yes", style="green") if model.loaded else Text("no", style="dim"),
                Text(count(model.context_tokens) if model.context_tokens else MISSING),
                Text(size(model.size_bytes), justify="right"),
                Text("yes" if model.embeddings else "no"),
            ]
        self.query_one("#models", KeyedTable).sync(rows)

    def _draw_cache(self, cache: chat_pb.GetCacheStatsResponse | None) -> None:
        text = Text("Reply cache  ", style="bold")
        if cache is None:
            text.append("figures and actions need the operator role", style="dim")
        else:
            text.append(
                f"{count(cache.hits)} hits, {count(cache.misses)} misses "
                f"({percent(cache.hit_rate)} hits), {count(cache.keys)} replies, "
                f"{size(cache.memory_bytes)}, kept {duration(cache.ttl_seconds)}"
            )
        self.query_one("#cache", Static).update(text)

    def action_refresh(self) -> None:
        """Poll now (and go on polling)."""
        self.poll()

    # --- operator actions ------------------------------------------------------------------

    def selected_model(self) -> inference_pb.Model | None:
        """The model under the models table's cursor."""
        return self._models.get(self.query_one("#models", KeyedTable).highlighted_key() or "")

    def selected_backend(self) -> inference_pb.Backend | None:
        """The backend under the backends table's cursor."""
        key = self.query_one("#backends", KeyedTable).highlighted_key()
        return self._backends.get(key or "")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Actions exist only for operators; greyed out while nothing fits them."""
        if action not in OPERATOR_ACTIONS:
            return True
        if not self.operator:
            return False
        if action in {"load", "unload"}:
            return True if self.selected_model() is not None else None
        if action == "reset_breaker":
            return True if self.selected_backend() is not None else None
        return True if self._cache is not None else None

    def action_load(self) -> None:
        """Confirm, then load and warm up the highlighted model."""
        model = self.selected_model()
        if model is not None and self.operator:
            self._confirm(
                f"Load {model.name} on {model.backend}? It takes memory until unloaded.",
                "Load",
                partial(self.apply, "load", model.name),
            )

    def action_unload(self) -> None:
        """Confirm, then unload the highlighted model."""
        model = self.selected_model()
        if model is not None and self.operator:
            self._confirm(
                f"Unload {model.name} from {model.backend}? Calls in flight finish first; the "
                "next call loads it again.",
                "Unload",
                partial(self.apply, "unload", model.name),
            )

    def action_reset_breaker(self) -> None:
        """Confirm, then close the highlighted backend's breaker."""
        backend = self.selected_backend()
        if backend is not None and self.operator:
            self._confirm(
                f"Reset the breaker of {backend.name} "
                f"(now {breaker_name(backend.breaker.state)})? Calls go to it again at once.",
                "Reset",
                partial(self.apply, "reset_breaker", backend.name),
            )

    def action_clear_cache(self) -> None:
        """Confirm, then delete every cached reply."""
        if self._cache is not None and self.operator:
            self._confirm(
                f"Clear the reply cache ({count(self._cache.keys)} replies)? The next identical "
                "requests are generated again.",
                "Clear",
                partial(self.apply, "clear_cache", ""),
            )

    def _confirm(self, question: str, label: str, then: Callable[[], object]) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmScreen(question, action=label), answered)

    @work(group="model-actions")
    async def apply(self, kind: str, name: str) -> None:
        """Make the call of one confirmed action, say how it went, and poll at once."""
        try:
            if kind == "load":
                loaded = await self.api.load_model(name)
                took = f" in {loaded.load_ms:.0f} ms" if loaded.load_ms else " (already loaded)"
                done = f"{name} loaded{took}"
            elif kind == "unload":
                await self.api.unload_model(name)
                done = f"{name} unloaded"
            elif kind == "reset_breaker":
                backend = await self.api.reset_breaker(name)
                done = f"breaker of {name} {breaker_name(backend.breaker.state)}"
            else:
                deleted = await self.api.clear_cache()
                done = f"{deleted} cached replies deleted"
        except ClientError as error:
            self.report(error, f"{kind.replace('_', ' ').capitalize()} {name}".strip())
            return
        self.notify(done, title="Done")
        self.poll()

    def commands(self) -> list[Command]:
        """The palette entries of the models screen (actions for operators only)."""
        found: list[Command] = [("Models: refresh now", "ctrl+r", self.action_refresh)]
        if self.operator:
            found += [
                ("Models: load the selected model", "Confirm first", self.action_load),
                ("Models: unload the selected model", "Confirm first", self.action_unload),
                (
                    "Models: reset the selected backend's breaker",
                    "Confirm first",
                    self.action_reset_breaker,
                ),
                ("Models: clear the reply cache", "Confirm first", self.action_clear_cache),
            ]
        return found

    @on(KeyedTable.RowHighlighted)
    def _highlighted(self) -> None:
        self.refresh_bindings()
