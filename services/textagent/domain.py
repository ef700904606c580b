"""What the text agent's tasks ask for, and the conversations they become: no I/O.

``text.generate``: ``{prompt, max_tokens?, temperature?, model?}`` → one user message.
``text.summarize``: ``{text, max_words?}`` → an instruction and the text.

Payloads arrive as JSON values (every number a float); each rule below names the field it
refuses, so a bad task fails at once with a precise INVALID_ARGUMENT instead of being retried.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_PROMPT_CHARS = 32_768
"""The inference service's limit for one message."""
MAX_TEXT_CHARS = 30_000
"""Text to summarise (the instruction takes the rest of a message's room)."""
MAX_MODEL_CHARS = 256
MAX_TOKENS = 4096
DEFAULT_MAX_WORDS = 60
MAX_WORDS = 500
SUMMARY_TEMPERATURE = 0.2
"""Low: a summary should stay close to the text."""

GENERATE_FIELDS = frozenset({"prompt", "max_tokens", "temperature", "model"})
SUMMARIZE_FIELDS = frozenset({"text", "max_words"})


@dataclass(frozen=True, slots=True)
class Generation:
    """One generation for the inference service to run."""

    prompt: str
    system: str = ""
    model: str = ""
    """Empty for the service's default model."""
    max_tokens: int | None = None
    temperature: float | None = None


def parse_generate(payload: Mapping[str, Any]) -> tuple[Generation | None, dict[str, str]]:
    """The generation a ``text.generate`` payload asks for, or the violations of its fields."""
    violations = _unknown(payload, GENERATE_FIELDS)
    prompt = _text(payload, "prompt", MAX_PROMPT_CHARS, violations)
    model = payload.get("model", "")
    if not isinstance(model, str) or len(model) > MAX_MODEL_CHARS or not model.isprintable():
        violations["model"] = f"must be a model name of at most {MAX_MODEL_CHARS} characters"
        model = ""
    max_tokens = _whole(payload, "max_tokens", 1, MAX_TOKENS, violations)
    temperature = payload.get("temperature")
    if temperature is not None and not (_number(temperature) and 0.0 <= float(temperature) <= 2.0):
        violations["temperature"] = "must be a number from 0 to 2"
        temperature = None
    if violations or prompt is None:
        return None, violations
    return Generation(
        prompt=prompt,
        model=model,
        max_tokens=max_tokens,
        temperature=None if temperature is None else float(temperature),
    ), {}


def parse_summarize(payload: Mapping[str, Any]) -> tuple[Generation | None, dict[str, str]]:
    """The generation a ``text.summarize`` payload asks for, or the violations of its fields."""
    violations = _unknown(payload, SUMMARIZE_FIELDS)
    text = _text(payload, "text", MAX_TEXT_CHARS, violations)
    words = _whole(payload, "max_words", 1, MAX_WORDS, violations) or DEFAULT_MAX_WORDS
    if violations or text is None:
        return None, violations
    return Generation(
        system=(
            "You summarize text. Reply with a summary of the user's text in at most "
            f"{words} words, and nothing else."
        ),
        prompt=text,
        # About 1.5 tokens a word, plus room to finish a sentence.
        max_tokens=min(MAX_TOKENS, words * 2 + 16),
        temperature=SUMMARY_TEMPERATURE,
    ), {}


def word_count(text: str) -> int:
    """Words of a text, as a person counts them."""
    return len(text.split())


def _unknown(payload: Mapping[str, Any], known: frozenset[str]) -> dict[str, str]:
    # A misspelt option (e.g. "max_token") would be ignored silently otherwise.
    return {
        str(name)[:64]: f"unknown field; expected {', '.join(sorted(known))}"
        for name in list(payload)[:16]
        if name not in known
    }


def _text(
    payload: Mapping[str, Any], name: str, limit: int, violations: dict[str, str]
) -> str | None:
    value = payload.get(name)
    if value is None:
        violations[name] = "required"
    elif not isinstance(value, str) or not value.strip():
        violations[name] = "must be a non-blank string"
    elif len(value) > limit:
        violations[name] = f"at most {limit} characters"
    else:
        return value
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(
    payload: Mapping[str, Any], name: str, low: int, high: int, violations: dict[str, str]
) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if not (_number(value) and float(value).is_integer() and low <= value <= high):
        violations[name] = f"must be a whole number from {low} to {high}"
        return None
    return int(value)
