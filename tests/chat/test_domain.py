"""The chat service's rules without I/O: validation, trimming, cache keys, page tokens."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from sutazai.services.chat.domain import (
    MAX_UPSTREAM_MESSAGES,
    CachedReply,
    Cursor,
    FinishReason,
    Options,
    Role,
    Turn,
    batch_violations,
    cache_key,
    estimate_tokens,
    id_violations,
    option_violations,
    page_size_of,
    system_prompt_violations,
    text_violations,
    title_of,
    trim_history,
    turn_tokens,
)

USER = Role.USER
ASSISTANT = Role.ASSISTANT


def test_a_message_must_have_text_within_the_limit() -> None:
    assert text_violations("message", "") == {"message": "required"}
    assert text_violations("message", " \n\t ") == {"message": "must not be only white space"}
    assert "message" in text_violations("message", "x" * 32_769)
    assert text_violations("message", "x" * 32_768) == {}


def test_a_system_prompt_is_for_new_conversations_only() -> None:
    assert system_prompt_violations("Be brief.", continuing=False) == {}
    assert "system_prompt" in system_prompt_violations("Be brief.", continuing=True)
    assert "system_prompt" in system_prompt_violations("x" * 8193, continuing=False)
    assert system_prompt_violations("", continuing=True) == {}


def test_options_out_of_range_are_named_each() -> None:
    bad = Options(
        temperature=2.5,
        top_p=0.0,
        top_k=0,
        max_tokens=5000,
        repeat_penalty=float("nan"),
        stop=("a",) * 5,
    )
    assert set(option_violations(bad)) == {
        "options.temperature",
        "options.top_p",
        "options.top_k",
        "options.max_tokens",
        "options.repeat_penalty",
        "options.stop",
    }
    good = Options(temperature=0, top_p=1, top_k=1000, max_tokens=1, repeat_penalty=0.5)
    assert option_violations(good) == {}
    assert option_violations(Options(stop=("",))) == {
        "options.stop": "each sequence must be 1 to 64 characters"
    }


def test_ids_page_sizes_and_batches() -> None:
    assert id_violations(str(uuid.uuid4())) == {}
    assert "conversation_id" in id_violations("not-a-uuid")
    assert "conversation_id" in id_violations("z" * 36)
    assert page_size_of(0) == 20
    assert page_size_of(100) == 100
    for bad in (-1, 101):
        with pytest.raises(ValueError, match="between 1 and 100"):
            page_size_of(bad)
    assert batch_violations([]) == {"prompts": "at least one prompt"}
    assert "prompts" in batch_violations(["hi"] * 51)
    assert batch_violations(["hi", " "]) == {"prompts[1]": "must not be only white space"}


def test_page_tokens_round_trip_and_refuse_anything_else() -> None:
    cursor = Cursor(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), uuid.uuid4())
    assert Cursor.parse(cursor.token()) == cursor
    for bad in ("", "abc", "e30", "x" * 500, "eyJ1IjoxLCJpIjoyfQ"):
        with pytest.raises(ValueError, match="page token"):
            Cursor.parse(bad)


def test_token_estimates_err_on_the_high_side() -> None:
    # SmolLM2's tokenizer needs about 4 characters per English token; the estimate assumes 3.
    assert estimate_tokens("Hello world, how are you today?") >= 31 / 4
    # Every byte of non-ASCII text counts as a token: a byte-level vocabulary never needs more.
    assert estimate_tokens("日本語") == len("日本語".encode())
    assert estimate_tokens("") == 0


def turns(count: int, size: int = 30) -> list[Turn]:
    return [Turn(USER if i % 2 == 0 else ASSISTANT, f"{i:04d}" + "x" * size) for i in range(count)]


def test_trimming_keeps_the_system_prompt_and_the_newest_turns() -> None:
    system = Turn(Role.SYSTEM, "Be brief.")
    history = turns(40)
    new = Turn(USER, "the question")
    window = 300

    trimmed = trim_history(system, history, new, context_tokens=window, reply_tokens=100)

    assert trimmed.turns[0] == system
    assert trimmed.turns[-1] == new
    kept = list(trimmed.turns[1:-1])
    assert kept == history[-len(kept) :], "the newest turns, in order"
    assert kept[0].role is USER, "never a reply whose question was dropped"
    assert trimmed.dropped == len(history) - len(kept) > 0
    assert sum(turn_tokens(t) for t in trimmed.turns) <= window - 100


def test_trimming_always_sends_the_new_message_and_caps_the_count() -> None:
    huge = Turn(USER, "x" * 10_000)
    alone = trim_history(None, turns(4), huge, context_tokens=512, reply_tokens=64)
    assert alone.turns == (huge,)
    assert alone.dropped == 4

    many = trim_history(
        Turn(Role.SYSTEM, "s"), turns(600, 1), Turn(USER, "q"), context_tokens=10**6, reply_tokens=1
    )
    assert len(many.turns) <= MAX_UPSTREAM_MESSAGES


def test_the_cache_key_covers_the_whole_request() -> None:
    long_prompt = "A" * 200
    base = [Turn(USER, long_prompt + " first ending")]
    key = cache_key("u1", "m", base, Options(max_tokens=4))

    assert key == cache_key("u1", "m", list(base), Options(max_tokens=4)), "deterministic"
    assert len(key) == 64
    different = {
        cache_key("u1", "m", [Turn(USER, long_prompt + " second ending")], Options(max_tokens=4)),
        cache_key("u2", "m", base, Options(max_tokens=4)),
        cache_key("u1", "other", base, Options(max_tokens=4)),
        cache_key("u1", "m", base, Options(max_tokens=5)),
        cache_key("u1", "m", base, Options(max_tokens=4, seed=1)),
        cache_key("u1", "m", base, Options(max_tokens=4, stop=("x",))),
        cache_key("u1", "m", [Turn(Role.SYSTEM, "s"), *base], Options(max_tokens=4)),
        cache_key(
            "u1", "m", [Turn(ASSISTANT, long_prompt + " first ending")], Options(max_tokens=4)
        ),
    }
    assert key not in different
    assert len(different) == 8


def test_cached_replies_are_json_and_anything_else_is_a_miss() -> None:
    reply = CachedReply("hi", "m", FinishReason.LENGTH, 12, 4)
    assert CachedReply.from_json(reply.to_json()) == reply
    for raw in (
        b"\x80\x04\x95",  # a pickle is never unpickled: it is just not JSON
        "[]",
        '{"text": "hi"}',
        '{"text": "hi", "model": "m", "finish_reason": "cancelled", '
        '"prompt_tokens": 1, "completion_tokens": 1}',
        '{"text": "hi", "model": "m", "finish_reason": "stop", '
        '"prompt_tokens": -1, "completion_tokens": true}',
    ):
        assert CachedReply.from_json(raw) is None


def test_titles_are_one_short_line() -> None:
    assert title_of("  Hello\n  there ") == "Hello there"
    assert len(title_of("word " * 100)) == 80
