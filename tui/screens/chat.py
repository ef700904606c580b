"""Chat: the caller's conversations, and a pane that shows the model's reply as it streams.

The reply comes from ``ChatService.ChatStream`` (``started``, ``delta``s, ``done``), one call per
message, drawn token by token as the deltas arrive. ``escape`` stops it: the worker is cancelled,
which closes the stream and cancels the call, so generation stops at once (the service keeps
the partial reply). The conversation list is fetched when the screen opens and after every
reply or deletion (there is no conversation stream to follow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Label, Select, Static

from sutazai.chat.v1 import chat_service_pb2 as chat_pb
from sutazai.inference.v1 import inference_service_pb2 as inference_pb
from sutazai.tui.errors import OptionsError
from sutazai.tui.format import MISSING, date_time, finish_reason_name, millis
from sutazai.tui.screens.base import MeshScreen
from sutazai.tui.screens.confirm import ConfirmScreen
from sutazai.tui.source import ClientError, opened
from sutazai.tui.widgets.tables import Cell, KeyedTable

MESSAGE_MAX = 32_768
"""``ChatStreamRequest.message``: at most 32,768 characters."""
TITLE_MAX = 40
"""Characters of a conversation's title shown in the list."""
TEMPERATURE_RANGE = (0.0, 2.0)
MAX_TOKENS_RANGE = (1, 4096)

Command = tuple[str, str, Callable[[], object]]
"""A palette entry: title, help, and what it does."""

_ROLE_STYLE = {"you": "bold cyan", "system": "dim italic"}
_MODEL_STYLE = "bold green"


@dataclass(slots=True)
class Entry:
    """One message in the pane: who (``you``, ``system`` or the model's name) and the text."""

    who: str
    text: str
    note: str = ""
    """Shown after the text, dimmed: ``cached``, ``stopped``, ``failed``."""


def sampling_options(temperature: str, max_tokens: str) -> inference_pb.SamplingOptions:
    """The options typed in the form; blank ones are left to the model's defaults.

    Raises:
        OptionsError: a value is not a number or out of the range the service accepts.

    """
    options = inference_pb.SamplingOptions()
    if temperature.strip():
        try:
            value = float(temperature)
        except ValueError:
            raise OptionsError("temperature must be a number from 0 to 2") from None
        low, high = TEMPERATURE_RANGE
        if not low <= value <= high:
            raise OptionsError("temperature must be from 0 to 2")
        options.temperature = value
    if max_tokens.strip():
        try:
            tokens = int(max_tokens)
        except ValueError:
            raise OptionsError("max tokens must be a whole number from 1 to 4096") from None
        low_tokens, high_tokens = MAX_TOKENS_RANGE
        if not low_tokens <= tokens <= high_tokens:
            raise OptionsError("max tokens must be from 1 to 4096")
        options.max_tokens = tokens
    return options


def render_entries(entries: list[Entry]) -> Text:
    """The pane's text: each message under its author, as plain text (never markup)."""
    if not entries:
        return Text("A new conversation: type a message below and press Enter.", style="dim")
    text = Text()
    for index, entry in enumerate(entries):
        if index:
            text.append("\n\n")
        text.append(entry.who, style=_ROLE_STYLE.get(entry.who, _MODEL_STYLE))
        text.append("\n")
        text.append(entry.text)
        if entry.note:
            text.append(f" [{entry.note}]", style="dim")
    return text


class ChatScreen(MeshScreen):
    """Conversations on the left; the conversation, the options and the message box on the right."""

    SCREEN_NAME = "chat"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+n", "new_conversation", "New"),
        Binding("delete", "delete_conversation", "Delete"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        """The screen's widgets."""
        with Horizontal(id="chat-body"):
            conversations = KeyedTable(
                [("messages", "Msgs", 4), ("title", "Title", None)], id="conversations"
            )
            conversations.border_title = "Conversations"
            yield conversations
            with Vertical(id="chat-main"):
                with Horizontal(id="chat-options"):
                    yield Select[str]([], prompt="model", id="model", compact=True)
                    yield Label("temp", classes="option-label")
                    yield Input(
                        placeholder="auto",
                        id="temperature",
                        max_length=5,
                        restrict=r"[0-9.]*",
                        compact=True,
                    )
                    yield Label("max", classes="option-label")
                    yield Input(
                        placeholder="auto",
                        id="max-tokens",
                        max_length=4,
                        restrict=r"[0-9]*",
                        compact=True,
                    )
                with VerticalScroll(id="transcript-scroll") as scroll:
                    scroll.border_title = "New conversation"
                    yield Static(render_entries([]), id="transcript")
                yield Static(Text(""), id="chat-status")
                yield Input(
                    placeholder="Message (Enter sends, Esc stops the reply)",
                    id="message",
                    max_length=MESSAGE_MAX,
                )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As :class:`MeshScreen`; a new conversation, nothing streaming."""
        super().__init__(*args, **kwargs)
        self._conversations: dict[str, chat_pb.Conversation] = {}
        self._conversation_id = ""
        self._entries: list[Entry] = []
        self._streaming = False
        self._default_model = ""
        self._model_options: list[tuple[str, str]] = []

    def on_mount(self) -> None:
        """Fetch the conversations and the models; the message box has the focus."""
        self.load_conversations()
        self.load_models()
        self.query_one("#message", Input).focus()

    # --- conversations ---------------------------------------------------------------------

    @work(exclusive=True, group="conversations")
    async def load_conversations(self) -> None:
        """Fetch the caller's conversations and draw the list."""
        try:
            found = await self.api.list_conversations(limit=self.settings.chat_conversations)
        except ClientError as error:
            self.report(error, "Listing conversations")
            return
        self.show_conversations(found)

    def show_conversations(self, found: list[chat_pb.Conversation]) -> None:
        """Draw ``found`` (most recent first), keeping the cursor on the same conversation."""
        self._conversations = {c.conversation_id: c for c in found}
        rows: dict[str, list[Cell]] = {}
        for conversation in found:
            title = conversation.title or MISSING
            if len(title) > TITLE_MAX:
                title = f"{title[: TITLE_MAX - 1]}…"
            current = conversation.conversation_id == self._conversation_id
            rows[conversation.conversation_id] = [
                Text(str(conversation.message_count), justify="right"),
                Text(title, style="bold" if current else ""),
            ]
        table = self.query_one("#conversations", KeyedTable)
        table.sync(rows)
        table.border_title = f"Conversations ({len(found)})"
        self.refresh_bindings()

    def selected_conversation(self) -> chat_pb.Conversation | None:
        """The conversation under the list's cursor."""
        key = self.query_one("#conversations", KeyedTable).highlighted_key()
        return self._conversations.get(key or "")

    @on(DataTable.RowSelected, "#conversations")
    def _conversation_chosen(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if key and not self._streaming:
            self.open_conversation(key)

    @on(DataTable.RowHighlighted, "#conversations")
    def _conversation_highlighted(self) -> None:
        self.refresh_bindings()

    @work(exclusive=True, group="open")
    async def open_conversation(self, conversation_id: str) -> None:
        """Show a conversation's messages; the next message continues it."""
        try:
            found = await self.api.get_conversation(conversation_id)
        except ClientError as error:
            self.report(error, "Opening the conversation")
            return
        self._conversation_id = conversation_id
        entries = []
        for message in found.messages:
            if message.role == inference_pb.MESSAGE_ROLE_USER:
                who = "you"
            elif message.role == inference_pb.MESSAGE_ROLE_SYSTEM:
                who = "system"
            else:
                who = message.model or found.conversation.model or "model"
            entries.append(Entry(who, message.content, "cached" if message.cached else ""))
        self._entries = entries
        self._draw(title=found.conversation.title or conversation_id)
        model = found.conversation.model
        select = self.query_one("#model", Select)
        if model and any(value == model for _, value in self._model_options):
            select.value = model
        updated = date_time(found.conversation.updated_at, self.now().tzinfo)
        self._status(Text(f"{len(entries)} messages, last at {updated}", style="dim"))
        self.show_conversations(list(self._conversations.values()))
        self.query_one("#message", Input).focus()

    def action_new_conversation(self) -> None:
        """Start a new conversation (the current reply, if any, is stopped first)."""
        self.action_stop()
        self._conversation_id = ""
        self._entries = []
        self._draw(title="New conversation")
        self._status(Text(""))
        self.show_conversations(list(self._conversations.values()))
        self.query_one("#message", Input).focus()

    def action_delete_conversation(self) -> None:
        """Confirm, then delete the highlighted conversation."""
        conversation = self.selected_conversation()
        if conversation is None:
            return
        title = conversation.title or conversation.conversation_id

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete(conversation.conversation_id)

        self.app.push_screen(
            ConfirmScreen(
                f"Delete the conversation {title!r} and its {conversation.message_count} "
                "messages? This cannot be undone.",
                action="Delete",
            ),
            answered,
        )

    @work(group="delete")
    async def delete(self, conversation_id: str) -> None:
        """Delete a confirmed conversation, say so, and fetch the list again."""
        try:
            deleted = await self.api.delete_conversation(conversation_id)
        except ClientError as error:
            self.report(error, "Deleting the conversation")
            return
        self.notify(f"Conversation deleted ({deleted} messages)", title="Done")
        if conversation_id == self._conversation_id:
            self.action_new_conversation()
        self.load_conversations()

    def action_reload(self) -> None:
        """Fetch the conversations and the models again."""
        self.load_conversations()
        self.load_models()

    # --- models ----------------------------------------------------------------------------

    @work(exclusive=True, group="models")
    async def load_models(self) -> None:
        """Fill the model select from ``ListModels``, the default model chosen."""
        try:
            listed = await self.api.list_models()
        except ClientError as error:
            self.report(error, "Listing models")
            return
        self._default_model = listed.default_model
        self._model_options = [(model.name, model.name) for model in listed.models]
        select = self.query_one("#model", Select)
        select.set_options(self._model_options)
        if any(value == listed.default_model for _, value in self._model_options):
            select.value = listed.default_model

    # --- the reply -------------------------------------------------------------------------

    @on(Input.Submitted, "#message")
    def _send(self) -> None:
        box = self.query_one("#message", Input)
        message = box.value.strip()
        if not message:
            return
        if self._streaming:
            self.notify("A reply is streaming: wait for it or stop it (Esc).", severity="warning")
            return
        try:
            options = sampling_options(
                self.query_one("#temperature", Input).value,
                self.query_one("#max-tokens", Input).value,
            )
        except OptionsError as error:
            self._status(Text(str(error), style="bold red"))
            return
        chosen = self.query_one("#model", Select).value
        model = chosen if isinstance(chosen, str) else ""
        box.value = ""
        self._entries.append(Entry("you", message))
        self._entries.append(Entry(model or self._default_model or "model", ""))
        new = not self._conversation_id
        self._draw(title=message[:TITLE_MAX] if new else None)
        self._streaming = True
        self.refresh_bindings()
        self._status(Text("Streaming the reply… (Esc stops it)", style="italic"))
        self.reply(message, model, self._conversation_id, options)

    @work(exclusive=True, group="reply")
    async def reply(
        self,
        message: str,
        model: str,
        conversation_id: str,
        options: inference_pb.SamplingOptions,
    ) -> None:
        """Stream the reply to ``message`` into the pane, delta by delta."""
        answer = self._entries[-1]
        try:
            async with opened(
                self.api.chat_stream(
                    message, model=model, conversation_id=conversation_id, options=options
                )
            ) as events:
                async for event in events:
                    kind = event.WhichOneof("event")
                    if kind == "started":
                        self._conversation_id = event.started.conversation_id
                        answer.who = event.started.model or answer.who
                        answer.note = "cached" if event.started.cached else ""
                        self._draw()
                    elif kind == "delta":
                        answer.text += event.delta.text
                        self._draw()
                    elif kind == "done":
                        # The last event by contract: the reply is complete and stored.
                        self._status(self._summary(event.done))
                        break
        except ClientError as error:
            answer.note = "failed"
            self._draw()
            self._status(Text(f"Failed: {error}", style="bold red"))
            self.report(error, "Chat")
        finally:
            self._streaming = False
            self.refresh_bindings()
        self.load_conversations()

    def action_stop(self) -> None:
        """Stop the streaming reply: cancels the call; the service keeps the partial reply."""
        if not self._streaming:
            return
        self.workers.cancel_group(self, "reply")
        self._streaming = False
        if self._entries:
            self._entries[-1].note = "stopped"
        self._draw()
        self._status(Text("Stopped; the partial reply is kept.", style="yellow"))
        self.refresh_bindings()
        self.load_conversations()

    @staticmethod
    def _summary(done: chat_pb.ChatDone) -> Text:
        return Text(
            f"{done.usage.completion_tokens} tokens, {finish_reason_name(done.finish_reason)}, "
            f"first token {millis(done.time_to_first_token_ms)} ms, "
            f"total {millis(done.latency_ms)} ms",
            style="dim",
        )

    # --- drawing ---------------------------------------------------------------------------

    @property
    def streaming(self) -> bool:
        """Whether a reply is streaming now."""
        return self._streaming

    @property
    def conversation_id(self) -> str:
        """The conversation the next message continues (empty: a new one)."""
        return self._conversation_id

    def transcript(self) -> str:
        """The pane's text, as shown."""
        return render_entries(self._entries).plain

    def _draw(self, *, title: str | None = None) -> None:
        scroll = self.query_one("#transcript-scroll", VerticalScroll)
        if title is not None:
            scroll.border_title = title
        self.query_one("#transcript", Static).update(render_entries(self._entries))
        scroll.scroll_end(animate=False)

    def _status(self, text: Text) -> None:
        self.query_one("#chat-status", Static).update(text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Stop only while a reply streams; delete only with a conversation highlighted."""
        if action == "stop":
            return True if self._streaming else None
        if action == "delete_conversation":
            return True if self.selected_conversation() is not None else None
        return True

    def commands(self) -> list[Command]:
        """The palette entries of the chat screen."""
        return [
            ("Chat: new conversation", "ctrl+n", self.action_new_conversation),
            ("Chat: stop the reply", "Esc; the partial reply is kept", self.action_stop),
            (
                "Chat: delete the selected conversation",
                "Confirm first",
                self.action_delete_conversation,
            ),
            ("Chat: reload conversations and models", "ctrl+r", self.action_reload),
        ]
