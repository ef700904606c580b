"""Prometheus metrics of the chat service, in the service's own registry.

No label carries a caller's string (a model name, a prompt): their number stays bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ChatMetrics:
    """Replies by source, cache lookups, latencies, trimmed history, batch items."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.replies = Counter(
            "sutazai_chat_replies",
            "Replies stored, by source (model, cache) and how they ended (stop, length, "
            "cancelled).",
            ["source", "finish_reason"],
            registry=registry,
        )
        self.cache_lookups = Counter(
            "sutazai_chat_cache_lookups",
            "Reply cache lookups, by result (hit, miss).",
            ["result"],
            registry=registry,
        )
        self.reply_seconds = Histogram(
            "sutazai_chat_reply_seconds",
            "From receiving a chat call to its stored reply, by source (model, cache).",
            ["source"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.first_token = Histogram(
            "sutazai_chat_time_to_first_token_seconds",
            "From receiving a chat call to the model's first text.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.trimmed = Counter(
            "sutazai_chat_trimmed_messages",
            "Older messages left out of a generation because the context window was full.",
            registry=registry,
        )
        self.batch_items = Counter(
            "sutazai_chat_batch_items",
            "BatchChat items, by outcome (a gRPC status code name).",
            ["code"],
            registry=registry,
        )
        self.batch_waits = Counter(
            "sutazai_chat_batch_rate_limit_waits",
            "Times a BatchChat item waited out a RESOURCE_EXHAUSTED retry delay.",
            registry=registry,
        )
