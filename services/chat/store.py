"""Conversations and messages in PostgreSQL (schema ``chat``): every SQL statement of the service.

Every statement names the owner (``user_id``, the token's ``sub``): another user's
conversation is never read, changed or deleted, and looks exactly like one that does not exist.
A turn (the user's message and the reply) is stored by one statement (one round trip, one
transaction) that first locks its conversation's row, so concurrent turns of one conversation
are appended one after the other and its message count stays exact.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from sutazai.runtime.migrations import migrate
from sutazai.services.chat.domain import Cursor, FinishReason, Role, Turn, title_of
from sutazai.services.chat.errors import ConversationFullError

SCHEMA = "chat"
MIGRATIONS = "sutazai.services.chat.migrations"
MAX_RETURNED_CHARS = 1_000_000
"""GetConversation returns the newest messages holding at most this many characters (about
4 MiB of UTF-8 at worst, the gRPC message limit): a long conversation's oldest ones are left out."""
_CONVERSATION = "id, title, model, created_at, updated_at, message_count"
_MESSAGE = (
    "id, role, content, model, prompt_tokens, completion_tokens, latency_ms, cached, "
    "finish_reason, created_at"
)

# The messages of a turn ($6 ids, $7 roles, $8 contents: the system prompt of a new
# conversation, the user's message, the reply), inserted in their order (seq follows the ORDER
# BY); the reply's own columns ($9-$14) go to the assistant's row only.
_TURN_MESSAGES = """
INSERT INTO chat.messages (id, conversation_id, role, content, model, prompt_tokens,
                           completion_tokens, latency_ms, cached, finish_reason)
SELECT m.id, conversation.id, m.role, m.content,
       CASE WHEN m.role = 'assistant' THEN $9::text ELSE '' END,
       CASE WHEN m.role = 'assistant' THEN $10::integer ELSE 0 END,
       CASE WHEN m.role = 'assistant' THEN $11::integer ELSE 0 END,
       CASE WHEN m.role = 'assistant' THEN $12::double precision ELSE 0 END,
       CASE WHEN m.role = 'assistant' THEN $13::boolean ELSE false END,
       CASE WHEN m.role = 'assistant' THEN $14::text ELSE '' END
FROM conversation,
     unnest($6::uuid[], $7::text[], $8::text[]) WITH ORDINALITY AS m(id, role, content, ord)
ORDER BY m.ord
"""
# A new conversation ($1 id, $2 owner, $3 title, $4 model, $5 messages) and its messages.
# The messages' foreign key is checked at the end of the statement, after both inserts.
_NEW_TURN = f"""
WITH conversation AS (
    INSERT INTO chat.conversations (id, user_id, title, model, updated_at, message_count)
    VALUES ($1, $2, $3, $4, clock_timestamp(), $5)
    RETURNING id
)
{_TURN_MESSAGES}"""  # noqa: S608 - constant SQL
# A turn of an existing conversation ($1 id, $2 owner, $3 model, $4 the most messages it may
# hold before the turn, $5 messages): true when stored. The UPDATE locks the row; with no row
# (not the owner's, gone, or full) nothing is inserted.
_NEXT_TURN = f"""
WITH conversation AS (
    UPDATE chat.conversations
    SET updated_at = clock_timestamp(), model = $3, message_count = message_count + $5
    WHERE id = $1 AND user_id = $2 AND message_count <= $4
    RETURNING id
), stored AS ({_TURN_MESSAGES})
SELECT EXISTS (SELECT FROM conversation)
"""  # noqa: S608 - constant SQL


@dataclass(frozen=True, slots=True)
class Conversation:
    """One of a user's conversations."""

    conversation_id: uuid.UUID
    title: str
    model: str
    created_at: datetime
    updated_at: datetime
    message_count: int


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One stored message."""

    message_id: uuid.UUID
    role: Role
    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    cached: bool
    finish_reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewReply:
    """A reply to store with the message it answers."""

    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    cached: bool
    finish_reason: FinishReason


@dataclass(frozen=True, slots=True)
class NewConversation:
    """What starts a conversation: its id (already told to a streaming caller) and prompt."""

    conversation_id: uuid.UUID
    system_prompt: str


@dataclass(frozen=True, slots=True)
class History:
    """What a conversation sends to the model: its system prompt and its newest turns."""

    system: Turn | None
    turns: list[Turn]


async def open_store(pool: asyncpg.Pool, max_messages: int) -> ChatStore:
    """Apply the chat schema's migrations (idempotent) and return the store."""
    await migrate(pool, SCHEMA, MIGRATIONS)
    return ChatStore(pool, max_messages)


class ChatStore:
    """Reads and writes conversations. Build it with :func:`open_store`."""

    def __init__(self, pool: asyncpg.Pool, max_messages: int) -> None:
        """A store on ``pool`` holding at most ``max_messages`` per conversation."""
        self._pool = pool
        self._max_messages = max_messages

    async def conversation(self, user_id: str, conversation_id: uuid.UUID) -> Conversation | None:
        """The user's conversation with this id (``None`` also when it is someone else's)."""
        row = await self._pool.fetchrow(
            f"SELECT {_CONVERSATION} FROM chat.conversations "  # noqa: S608
            "WHERE id = $1 AND user_id = $2",
            conversation_id,
            user_id,
        )
        return None if row is None else _conversation(row)

    async def history(self, conversation_id: uuid.UUID, newest: int) -> History:
        """The system prompt and the ``newest`` other messages, oldest first."""
        rows = await self._pool.fetch(
            """(SELECT seq, role, content FROM chat.messages
                WHERE conversation_id = $1 AND role = 'system' ORDER BY seq LIMIT 1)
               UNION ALL
               (SELECT seq, role, content FROM chat.messages
                WHERE conversation_id = $1 AND role <> 'system' ORDER BY seq DESC LIMIT $2)
               ORDER BY seq""",
            conversation_id,
            newest,
        )
        system = None
        turns = []
        for row in rows:
            turn = Turn(Role(row["role"]), row["content"])
            if turn.role is Role.SYSTEM:
                system = turn
            else:
                turns.append(turn)
        return History(system, turns)

    async def record_turn(
        self,
        user_id: str,
        conversation: uuid.UUID | NewConversation,
        message: str,
        reply: NewReply,
    ) -> tuple[uuid.UUID, uuid.UUID] | None:
        """Store the user's message and the reply; return (conversation id, reply id).

        ``conversation`` is an existing conversation's id, or a new one to create (with its
        system prompt as its first message). ``None`` when the existing conversation is gone
        (deleted meanwhile) or is not the user's.

        One statement, so one round trip and one transaction (a turn is never half stored).
        For an existing conversation, its ``UPDATE`` takes the row's lock first: concurrent
        turns of one conversation wait for each other, and under READ COMMITTED the waiting one
        re-checks the owner and the room left on the row as the other one left it.

        Raises:
            ConversationFullError: the conversation cannot take two more messages.

        """
        reply_id = uuid.uuid4()
        rows = _turn_rows(conversation, message, reply, reply_id)
        pool = self._pool
        if isinstance(conversation, NewConversation):
            conversation_id = conversation.conversation_id
            await pool.execute(
                _NEW_TURN,
                conversation_id,
                user_id,
                title_of(message),
                reply.model,
                len(rows.ids),
                *rows.columns(),
            )
            return conversation_id, reply_id
        conversation_id = conversation
        stored = await pool.fetchval(
            _NEXT_TURN,
            conversation_id,
            user_id,
            reply.model,
            self._max_messages - len(rows.ids),
            len(rows.ids),
            *rows.columns(),
        )
        if stored:
            return conversation_id, reply_id
        # Not stored: either not the user's (or gone), or full. A message count only grows
        # until the conversation is deleted, so what the row says now tells which.
        count = await self._pool.fetchval(
            "SELECT message_count FROM chat.conversations WHERE id = $1 AND user_id = $2",
            conversation_id,
            user_id,
        )
        if count is None:
            return None
        raise ConversationFullError(str(conversation_id), self._max_messages)

    async def page(self, user_id: str, *, after: Cursor | None, limit: int) -> list[Conversation]:
        """The user's conversations most recently active first, after ``after``."""
        rows = await self._pool.fetch(
            f"""SELECT {_CONVERSATION} FROM chat.conversations
               WHERE user_id = $1
                 AND ($2::timestamptz IS NULL OR (updated_at, id) < ($2, $3))
               ORDER BY updated_at DESC, id DESC
               LIMIT $4""",  # noqa: S608 - a constant column list
            user_id,
            after.updated_at if after else None,
            after.conversation_id if after else uuid.UUID(int=0),
            limit,
        )
        return [_conversation(r) for r in rows]

    async def messages(self, conversation_id: uuid.UUID) -> list[StoredMessage]:
        """The conversation's messages, oldest first: the newest that fit the reply's budget."""
        rows = await self._pool.fetch(
            f"""SELECT {_MESSAGE} FROM (
                   SELECT {_MESSAGE}, seq,
                          sum(char_length(content)) OVER (ORDER BY seq DESC) AS newer_chars
                   FROM chat.messages WHERE conversation_id = $1) AS m
               WHERE newer_chars <= $2
               ORDER BY seq""",  # noqa: S608 - a constant column list
            conversation_id,
            MAX_RETURNED_CHARS,
        )
        return [_message(r) for r in rows]

    async def delete(self, user_id: str, conversation_id: uuid.UUID) -> int | None:
        """Delete the user's conversation; its message count, or ``None`` if there is none."""
        async with self._pool.acquire() as conn, conn.transaction():
            count = await conn.fetchval(
                "SELECT message_count FROM chat.conversations "
                "WHERE id = $1 AND user_id = $2 FOR UPDATE",
                conversation_id,
                user_id,
            )
            if count is None:
                return None
            await conn.execute("DELETE FROM chat.conversations WHERE id = $1", conversation_id)
        return int(count)


@dataclass(frozen=True, slots=True)
class _TurnRows:
    """The messages of one turn, oldest first, as the column arrays the statements unnest."""

    ids: list[uuid.UUID]
    roles: list[str]
    contents: list[str]
    reply: NewReply

    def columns(self) -> tuple[object, ...]:
        """The statements' parameters from ``$6`` on."""
        reply = self.reply
        return (
            self.ids,
            self.roles,
            self.contents,
            reply.model,
            reply.prompt_tokens,
            reply.completion_tokens,
            reply.latency_ms,
            reply.cached,
            reply.finish_reason.value,
        )


def _turn_rows(
    conversation: uuid.UUID | NewConversation, message: str, reply: NewReply, reply_id: uuid.UUID
) -> _TurnRows:
    ids = [uuid.uuid4(), reply_id]
    roles = [Role.USER.value, Role.ASSISTANT.value]
    contents = [message, reply.content]
    if isinstance(conversation, NewConversation) and conversation.system_prompt:
        ids.insert(0, uuid.uuid4())
        roles.insert(0, Role.SYSTEM.value)
        contents.insert(0, conversation.system_prompt)
    return _TurnRows(ids, roles, contents, reply)


def _conversation(row: asyncpg.Record) -> Conversation:
    return Conversation(
        conversation_id=row["id"],
        title=row["title"],
        model=row["model"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        message_count=row["message_count"],
    )


def _message(row: asyncpg.Record) -> StoredMessage:
    return StoredMessage(
        message_id=row["id"],
        role=Role(row["role"]),
        content=row["content"],
        model=row["model"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        latency_ms=row["latency_ms"],
        cached=row["cached"],
        finish_reason=row["finish_reason"],
        created_at=row["created_at"],
    )
