"""The chat service's rules, without I/O: validation, context trimming, cache keys, paging.

Everything here is pure: the handlers validate with it, the reply flow (:mod:`.replies`) trims
conversations and computes cache keys with it, the store pages with its cursors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Final

MAX_MESSAGE_CHARS: Final = 32_768
"""A message or batch prompt: 1 to this many characters (the proto's rule)."""
MAX_SYSTEM_PROMPT_CHARS: Final = 8_192
"""A system prompt: at most this many characters."""
MAX_MODEL_CHARS: Final = 256
"""A model name: at most this many printable characters (as the inference service)."""
MAX_BATCH_PROMPTS: Final = 50
"""BatchChat: 1 to this many prompts."""
MAX_UPSTREAM_MESSAGES: Final = 256
"""The inference service takes at most this many messages per generation."""
DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 100
MAX_STOP_SEQUENCES: Final = 4
MAX_STOP_CHARS: Final = 64
TITLE_CHARS: Final = 80
"""A conversation's title: the start of its first message."""
MESSAGE_OVERHEAD_TOKENS: Final = 8
"""Tokens a chat template adds around one message (role markers, separators), rounded up."""
ASCII_CHARS_PER_TOKEN: Final = 3.0
"""A conservative ratio for ASCII text: BPE vocabularies average about four characters per
token for English; three over-counts, so a trimmed history fits the real window."""
CACHE_KEY_VERSION: Final = 1
"""Part of every cache key: changing what a key covers bumps it, so old entries never match."""


class Role(StrEnum):
    """Who wrote a message (the stored label)."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class FinishReason(StrEnum):
    """How a stored reply ended."""

    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"
    """The caller went away mid-reply: what was generated so far is kept."""


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a conversation as sent to a model."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Options:
    """Sampling options of a request; ``None`` means unset (the model's default)."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    repeat_penalty: float | None = None


# Validation -----------------------------------------------------------------------------------


def text_violations(field: str, text: str, *, limit: int = MAX_MESSAGE_CHARS) -> dict[str, str]:
    """A required text: 1 to ``limit`` characters, not only white space."""
    if not text:
        return {field: "required"}
    if len(text) > limit:
        return {field: f"at most {limit} characters (got {len(text)})"}
    if not text.strip():
        return {field: "must not be only white space"}
    return {}


def system_prompt_violations(system_prompt: str, *, continuing: bool) -> dict[str, str]:
    """An optional system prompt: at most 8,192 characters, for a new conversation only."""
    if not system_prompt:
        return {}
    if continuing:
        return {"system_prompt": "only a new conversation takes a system prompt"}
    return text_violations("system_prompt", system_prompt, limit=MAX_SYSTEM_PROMPT_CHARS)


def model_violations(model: str) -> dict[str, str]:
    """An optional model name: at most 256 printable characters."""
    if len(model) > MAX_MODEL_CHARS:
        return {"model": f"at most {MAX_MODEL_CHARS} characters"}
    if not model.isprintable():
        return {"model": "must be printable characters"}
    return {}


def parse_conversation_id(text: str, field: str = "conversation_id") -> uuid.UUID:
    """The id in ``text``, which must be a UUID in its usual form.

    Raises:
        ValueError: ``text`` is not one; its message is the field violation's description.

    """
    if len(text) != 36:
        raise ValueError("must be a conversation id (a UUID)")
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValueError("must be a conversation id (a UUID)") from None


def id_violations(text: str, field: str = "conversation_id") -> dict[str, str]:
    """A conversation id that must be given and be a UUID."""
    if not text:
        return {field: "required"}
    try:
        parse_conversation_id(text, field)
    except ValueError as exc:
        return {field: str(exc)}
    return {}


def option_violations(options: Options, prefix: str = "options.") -> dict[str, str]:
    """The proto's ranges for every option that is set (backends may refuse more)."""
    found: dict[str, str] = {}

    def check(name: str, value: float | None, low: float, high: float, rule: str) -> None:
        if value is None:
            return
        fits = math.isfinite(value) and low <= value <= high
        if name == "top_p":  # (0, 1]: zero would keep no token at all
            fits = fits and value > 0
        if not fits:
            found[f"{prefix}{name}"] = rule

    check("temperature", options.temperature, 0, 2, "must be between 0 and 2")
    check("top_p", options.top_p, 0, 1, "must be greater than 0 and at most 1")
    check("top_k", options.top_k, 1, 1000, "must be between 1 and 1000")
    check("max_tokens", options.max_tokens, 1, 4096, "must be between 1 and 4096")
    check("repeat_penalty", options.repeat_penalty, 0.5, 2, "must be between 0.5 and 2")
    if len(options.stop) > MAX_STOP_SEQUENCES:
        found[f"{prefix}stop"] = f"at most {MAX_STOP_SEQUENCES} sequences"
    elif any(not 1 <= len(s) <= MAX_STOP_CHARS for s in options.stop):
        found[f"{prefix}stop"] = f"each sequence must be 1 to {MAX_STOP_CHARS} characters"
    return found


def batch_violations(prompts: Sequence[str]) -> dict[str, str]:
    """1 to 50 prompts, each a valid message."""
    if not prompts:
        return {"prompts": "at least one prompt"}
    if len(prompts) > MAX_BATCH_PROMPTS:
        return {"prompts": f"at most {MAX_BATCH_PROMPTS} prompts (got {len(prompts)})"}
    found: dict[str, str] = {}
    for index, prompt in enumerate(prompts):
        found.update(text_violations(f"prompts[{index}]", prompt))
    return found


def page_size_of(requested: int) -> int:
    """The page size to use: the default for 0.

    Raises:
        ValueError: outside 0..100; the message is the field violation's description.

    """
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= requested <= MAX_PAGE_SIZE:
        raise ValueError(f"must be between 1 and {MAX_PAGE_SIZE} (0 for {DEFAULT_PAGE_SIZE})")
    return requested


# Paging ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of conversations ends: the last one's activity time and id."""

    updated_at: datetime
    conversation_id: uuid.UUID

    def token(self) -> str:
        """The opaque page token a client sends back."""
        document = json.dumps(
            {"u": self.updated_at.isoformat(), "i": str(self.conversation_id)},
            separators=(",", ":"),
        )
        return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """The cursor in a page token.

        Raises:
            ValueError: not a token this service made.

        """
        if len(token) > 200:
            raise ValueError("not a page token of this listing")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            document = json.loads(raw)
            updated_at = datetime.fromisoformat(document["u"])
            conversation_id = uuid.UUID(document["i"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            raise ValueError("not a page token of this listing") from None
        if updated_at.tzinfo is None:
            raise ValueError("not a page token of this listing")
        return cls(updated_at, conversation_id)


# Context window -------------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens ``text`` takes, for any byte-level BPE vocabulary.

    ASCII at :data:`ASCII_CHARS_PER_TOKEN` characters per token; every byte of a non-ASCII
    character counted as a token of its own (byte-level vocabularies never need more).
    """
    ascii_chars = sum(1 for c in text if ord(c) < 128)
    other_bytes = len(text.encode("utf-8")) - ascii_chars
    return math.ceil(ascii_chars / ASCII_CHARS_PER_TOKEN) + other_bytes


def turn_tokens(turn: Turn) -> int:
    """:func:`estimate_tokens` of a message with its template overhead."""
    return estimate_tokens(turn.content) + MESSAGE_OVERHEAD_TOKENS


@dataclass(frozen=True, slots=True)
class Trimmed:
    """The messages to send, and how many older ones did not fit."""

    turns: tuple[Turn, ...]
    dropped: int


def trim_history(
    system: Turn | None,
    history: Sequence[Turn],
    new: Turn,
    *,
    context_tokens: int,
    reply_tokens: int,
) -> Trimmed:
    """The conversation to send: the system prompt, the newest turns that fit, the new message.

    The window holds the prompt and the reply, so ``reply_tokens`` (the request's
    ``max_tokens`` or the service's reserve) are kept free. The system prompt and the new
    message are always sent, even if they alone are too long (the inference service then
    refuses precisely); older turns go first, and a kept history never starts with a reply
    whose question was dropped. At most :data:`MAX_UPSTREAM_MESSAGES` messages are sent.
    """
    budget = context_tokens - reply_tokens - turn_tokens(new)
    if system is not None:
        budget -= turn_tokens(system)
    room = MAX_UPSTREAM_MESSAGES - 1 - (system is not None)
    kept: list[Turn] = []
    for turn in reversed(history):
        if room == 0:
            break
        cost = turn_tokens(turn)
        if cost > budget:
            break
        kept.append(turn)
        budget -= cost
        room -= 1
    kept.reverse()
    while kept and kept[0].role is not Role.USER:
        kept.pop(0)
    turns = [*([system] if system is not None else []), *kept, new]
    return Trimmed(tuple(turns), len(history) - len(kept))


# The reply cache -------------------------------------------------------------------------------


_OPTION_FIELDS = tuple(field.name for field in fields(Options))
"""Every option, for the cache key (``dataclasses.asdict`` copies deeply: slow on each call)."""


def cache_key(scope: str, model: str, turns: Sequence[Turn], options: Options) -> str:
    """SHA-256 (hex) of the whole request as the model receives it.

    It covers the model, every message sent (the system prompt and the trimmed history
    included, each whole: never a prefix), and every option, set or not; ``scope`` is the user
    id when replies are not shared between users, else empty. The document is canonical JSON
    (sorted keys, no spaces), so equal requests hash equally in every process.
    """
    document = {
        "v": CACHE_KEY_VERSION,
        "scope": scope,
        "model": model,
        "messages": [[turn.role.value, turn.content] for turn in turns],
        "options": {
            **{name: getattr(options, name) for name in _OPTION_FIELDS},
            "stop": list(options.stop),
        },
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedReply:
    """A reply as the cache keeps it (JSON, never pickle)."""

    text: str
    model: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int

    def to_json(self) -> str:
        """The cache value."""
        return json.dumps({**asdict(self), "finish_reason": self.finish_reason.value})

    @classmethod
    def from_json(cls, raw: str | bytes) -> CachedReply | None:
        """The reply in a cache value, or ``None`` for anything that is not exactly one."""
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(document, Mapping):
            return None
        text, model = document.get("text"), document.get("model")
        prompt, completion = document.get("prompt_tokens"), document.get("completion_tokens")
        reason = document.get("finish_reason")
        if not (isinstance(text, str) and isinstance(model, str) and isinstance(reason, str)):
            return None
        if not (_count(prompt) and _count(completion)):
            return None
        if reason not in (FinishReason.STOP, FinishReason.LENGTH):
            return None
        return cls(text, model, FinishReason(reason), int(prompt), int(completion))  # type: ignore[arg-type]


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def title_of(message: str) -> str:
    """A conversation's title: its first message's start, on one line."""
    line = " ".join(message.split())
    return line if len(line) <= TITLE_CHARS else f"{line[: TITLE_CHARS - 1]}…"
