"""The text agent's payload rules and the conversations they become (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from sutazai.services.textagent.domain import (
    DEFAULT_MAX_WORDS,
    MAX_TEXT_CHARS,
    parse_generate,
    parse_summarize,
)


def test_a_generate_payload_becomes_a_generation() -> None:
    generation, violations = parse_generate(
        {"prompt": "Hi", "max_tokens": 16.0, "temperature": 0.5, "model": "m"}
    )

    assert violations == {}
    assert generation is not None
    assert (generation.prompt, generation.max_tokens, generation.temperature, generation.model) == (
        "Hi",
        16,
        0.5,
        "m",
    )


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"prompt"}),
        ({"prompt": "   "}, {"prompt"}),
        ({"prompt": 3}, {"prompt"}),
        ({"prompt": "Hi", "max_tokens": 0}, {"max_tokens"}),
        ({"prompt": "Hi", "max_tokens": 2.5}, {"max_tokens"}),
        ({"prompt": "Hi", "max_tokens": True}, {"max_tokens"}),
        ({"prompt": "Hi", "temperature": 3}, {"temperature"}),
        ({"prompt": "Hi", "model": "x" * 300}, {"model"}),
        ({"prompt": "Hi", "max_token": 5}, {"max_token"}),
    ],
)
def test_bad_generate_payloads_name_their_fields(payload: dict[str, Any], fields: set[str]) -> None:
    generation, violations = parse_generate(payload)

    assert generation is None
    assert set(violations) == fields


def test_a_summary_asks_for_at_most_max_words() -> None:
    generation, _ = parse_summarize({"text": "Long text.", "max_words": 12})
    default, _ = parse_summarize({"text": "Long text."})

    assert generation is not None
    assert default is not None
    assert "at most 12 words" in generation.system
    assert generation.prompt == "Long text."
    assert generation.max_tokens == 12 * 2 + 16
    assert f"at most {DEFAULT_MAX_WORDS} words" in default.system


def test_bad_summarize_payloads_name_their_fields() -> None:
    assert set(parse_summarize({"text": "x" * (MAX_TEXT_CHARS + 1)})[1]) == {"text"}
    assert set(parse_summarize({"text": "ok", "max_words": 0})[1]) == {"max_words"}
    assert set(parse_summarize({"words": 3})[1]) == {"text", "words"}
