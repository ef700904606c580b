"""The chat store and reply cache against the real PostgreSQL and Redis, as the chat service.

A turn is one statement (one round trip); these check what the locking transaction of several
statements used to guarantee: order, exact counts under concurrency, owners, the size limit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from sutazai.runtime.settings import MeshSettings
from sutazai.services.chat.cache import ReplyCache
from sutazai.services.chat.domain import CachedReply, FinishReason, Role
from sutazai.services.chat.errors import ConversationFullError
from sutazai.services.chat.store import ChatStore, NewConversation, NewReply, open_store

MAX_MESSAGES = 7
REPLY = NewReply("a reply", "m", 5, 2, 3.5, False, FinishReason.STOP)
CACHED = NewReply("a cached reply", "m", 5, 2, 0.5, True, FinishReason.LENGTH)


@pytest.fixture
async def pool(mesh_settings: MeshSettings) -> AsyncIterator[asyncpg.Pool]:
    dsn = mesh_settings.as_principal("chat").postgres_dsn
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def store(pool: asyncpg.Pool) -> ChatStore:
    return await open_store(pool, MAX_MESSAGES)


def someone() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def test_a_new_conversation_is_stored_whole_in_order(store: ChatStore) -> None:
    user = someone()

    stored = await store.record_turn(
        user, NewConversation(uuid.uuid4(), "Be brief."), "Why is the sky blue?", REPLY
    )

    assert stored is not None
    conversation_id, reply_id = stored
    found = await store.conversation(user, conversation_id)
    assert found is not None
    assert (found.title, found.model, found.message_count) == ("Why is the sky blue?", "m", 3)
    messages = await store.messages(conversation_id)
    assert [(m.role, m.content) for m in messages] == [
        (Role.SYSTEM, "Be brief."),
        (Role.USER, "Why is the sky blue?"),
        (Role.ASSISTANT, "a reply"),
    ]
    reply = messages[-1]
    assert reply.message_id == reply_id
    assert (reply.prompt_tokens, reply.completion_tokens, reply.latency_ms) == (5, 2, 3.5)
    assert (reply.cached, reply.finish_reason) == (False, "stop")
    user_message = messages[1]
    assert (user_message.model, user_message.completion_tokens, user_message.cached) == (
        "",
        0,
        False,
    )
    assert user_message.finish_reason == ""


async def test_turns_continue_only_the_owners_conversation_until_it_is_full(
    store: ChatStore,
) -> None:
    user = someone()
    stored = await store.record_turn(user, NewConversation(uuid.uuid4(), "s"), "one", REPLY)
    assert stored is not None
    conversation_id = stored[0]

    assert await store.record_turn(someone(), conversation_id, "not mine", REPLY) is None
    assert await store.record_turn(user, uuid.uuid4(), "nowhere", REPLY) is None
    assert await store.record_turn(user, conversation_id, "two", CACHED) is not None
    assert await store.record_turn(user, conversation_id, "three", REPLY) is not None  # 7 of 7
    with pytest.raises(ConversationFullError):
        await store.record_turn(user, conversation_id, "four", REPLY)

    found = await store.conversation(user, conversation_id)
    assert found is not None
    assert (found.message_count, found.updated_at > found.created_at) == (7, True)
    messages = await store.messages(conversation_id)
    assert [m.content for m in messages] == [
        "s",
        "one",
        "a reply",
        "two",
        "a cached reply",
        "three",
        "a reply",
    ]
    assert [m.cached for m in messages if m.role is Role.ASSISTANT] == [False, True, False]


async def test_concurrent_turns_of_one_conversation_keep_their_pairs_and_the_count(
    pool: asyncpg.Pool,
) -> None:
    store = ChatStore(pool, 1000)
    user = someone()
    first = dataclasses.replace(REPLY, content="a0")
    stored = await store.record_turn(user, NewConversation(uuid.uuid4(), ""), "q0", first)
    assert stored is not None
    conversation_id = stored[0]

    async def turn(index: int) -> None:
        # Cached and generated replies interleaved: every turn locks the same row.
        reply = dataclasses.replace(CACHED if index % 2 else REPLY, content=f"a{index}")
        assert await store.record_turn(user, conversation_id, f"q{index}", reply) is not None

    await asyncio.gather(*(turn(index) for index in range(1, 21)))

    found = await store.conversation(user, conversation_id)
    assert found is not None
    assert found.message_count == 42
    messages = await store.messages(conversation_id)
    assert len(messages) == 42
    pairs = list(zip(messages[::2], messages[1::2], strict=True))
    assert all(q.role is Role.USER and a.role is Role.ASSISTANT for q, a in pairs)
    assert all(a.content == "a" + q.content[1:] for q, a in pairs), "a reply follows its question"


async def test_a_cached_turn_is_seen_at_once_by_every_connection(
    pool: asyncpg.Pool, store: ChatStore
) -> None:
    user = someone()

    stored = await store.record_turn(user, NewConversation(uuid.uuid4(), ""), "q", CACHED)

    assert stored is not None
    # Committed before record_turn returned.
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM chat.messages WHERE conversation_id = $1", stored[0]
        )
        == 2
    )


@pytest.fixture
async def cache(
    mesh_settings: MeshSettings,
) -> AsyncIterator[tuple[ReplyCache, aioredis.Redis, str]]:
    chat = mesh_settings.as_principal("chat")
    client = aioredis.Redis.from_url(chat.redis_url)
    prefix = f"{chat.redis.key_prefix('chat')}test-{uuid.uuid4().hex[:8]}:"
    yield ReplyCache(client, key_prefix=prefix, ttl_seconds=60), client, prefix
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_a_lookup_reads_and_counts_hits_and_misses(
    cache: tuple[ReplyCache, aioredis.Redis, str],
) -> None:
    replies, _, _ = cache
    reply = CachedReply("hi", "m", FinishReason.STOP, 3, 1)
    await replies.put("k1", reply)

    assert await replies.get("k1") == reply
    assert await replies.get("k1") == reply
    assert await replies.get("k2") is None

    stats = await replies.stats()
    assert (stats.hits, stats.misses, stats.keys) == (2, 1, 1)


async def test_an_entry_that_is_not_a_reply_is_a_miss(
    cache: tuple[ReplyCache, aioredis.Redis, str],
) -> None:
    replies, client, prefix = cache
    await client.set(f"{prefix}cache:reply:k1", b"\x80 not json")

    assert await replies.get("k1") is None

    stats = await replies.stats()
    assert (stats.hits, stats.misses) == (0, 1)
