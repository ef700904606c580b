"""Prometheus metrics of the inference service, in the service's own registry.

Labels are the backend and the model that ran (always a configured or listed model, never a
name a caller made up), so their number stays bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sutazai.services.inference.breaker import BreakerState
from sutazai.services.inference.engine import CallRecord

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class InferenceMetrics:
    """Per-call counters and histograms, by backend and model; breaker state by backend."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["backend", "model"]
        self.calls = Counter(
            "sutazai_inference_calls",
            "Generations by backend, model and outcome (ok, cancelled, rejected, busy, "
            "unavailable).",
            [*labels, "outcome"],
            registry=registry,
        )
        self.completion_tokens = Counter(
            "sutazai_inference_completion_tokens",
            "Tokens generated.",
            labels,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "sutazai_inference_prompt_tokens",
            "Prompt tokens evaluated (after the chat template).",
            labels,
            registry=registry,
        )
        self.latency = Histogram(
            "sutazai_inference_generation_seconds",
            "From receiving a generation to its last token.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.first_token = Histogram(
            "sutazai_inference_time_to_first_token_seconds",
            "From receiving a generation to its first token.",
            labels,
            buckets=_TTFT_BUCKETS,
            registry=registry,
        )
        self.queued = Histogram(
            "sutazai_inference_queued_seconds",
            "Time a generation waited for a free slot of its backend.",
            labels,
            buckets=_TTFT_BUCKETS,
            registry=registry,
        )
        self.nats_requests = Counter(
            "sutazai_inference_nats_requests",
            "Generation requests of agents over NATS (sutazai.inference.generate), by outcome: "
            "ok or the status code's name.",
            ["outcome"],
            registry=registry,
        )
        self.breaker = Gauge(
            "sutazai_inference_breaker_state",
            "Circuit breaker of each backend: 0 closed, 1 half-open, 2 open.",
            ["backend"],
            registry=registry,
        )

    def record(self, call: CallRecord) -> None:
        """Record one finished call."""
        labels = (call.backend, call.model)
        self.calls.labels(*labels, call.outcome).inc()
        if call.completion_tokens:
            self.completion_tokens.labels(*labels).inc(call.completion_tokens)
        if call.prompt_tokens:
            self.prompt_tokens.labels(*labels).inc(call.prompt_tokens)
        if call.outcome == "ok":
            self.latency.labels(*labels).observe(call.total_seconds)
            self.queued.labels(*labels).observe(call.queued_seconds)
        if call.time_to_first_token_seconds is not None:
            self.first_token.labels(*labels).observe(call.time_to_first_token_seconds)

    def nats_request(self, outcome: str) -> None:
        """Count one request answered over NATS (outcomes: ``ok`` and status code names)."""
        self.nats_requests.labels(outcome).inc()

    def breaker_changed(self, backend: str, state: BreakerState) -> None:
        """Record a breaker's new state."""
        self.breaker.labels(backend).set(_BREAKER_VALUES[state])
