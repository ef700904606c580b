"""Traffic figures from two readings of Envoy's statistics (admin ``/stats?format=json``).

Where each figure comes from (the payload is read with ``histogram_buckets=cumulative``):

* per gRPC service (Envoy cluster ``C``, named after the service): completed calls and their
  gRPC statuses from the ``grpc_stats`` filter's ``cluster.C.grpc.<code>`` counters (the
  router's ``upstream_rq_<xxx>`` only sees HTTP statuses, and a gRPC call's status travels in
  the trailers of an HTTP 200); requests in flight from ``cluster.C.upstream_rq_active``;
  latency from the ``cluster.C.upstream_rq_time`` histogram;
* per mesh service with HTTP routes (cluster ``http.<service>``, e.g. ``/openai/v1`` of the
  inference service): completed requests and their HTTP statuses from the router's
  ``cluster.C.upstream_rq_completed``, ``_5xx`` and ``_4xx``; in flight and latency as above;
* the edge (the HTTP connection manager's stat prefix ``E``): ``http.E.downstream_rq_completed``,
  ``_4xx``, ``_5xx``, ``_active`` and the ``http.E.downstream_rq_time`` histogram. These are
  HTTP statuses: REST answers and what the edge refuses at the HTTP level; a gRPC call's own
  status shows only in its service's figures.

Rates, error fractions and percentiles cover the window between two readings (counter and
histogram bucket deltas); totals are since Envoy started. gRPC statuses split as Envoy maps them
to HTTP: the server's fault (5xx) for UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
UNAVAILABLE and DATA_LOSS, the client's (4xx) for every other status but OK.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sutazai.services.system.domain.upstreams import Upstream

SERVER_ERROR_CODES: Final = frozenset({2, 4, 12, 13, 14, 15})
"""gRPC status numbers Envoy maps to a 5xx: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
INTERNAL, UNAVAILABLE, DATA_LOSS."""
MAX_GRPC_CODE: Final = 16


@dataclass(frozen=True, slots=True)
class Buckets:
    """A histogram as Envoy reports it: cumulative counts at each upper bound (ms)."""

    upper_bounds: tuple[float, ...] = ()
    cumulative: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        """How many values the histogram holds (those within its last bound)."""
        return self.cumulative[-1] if self.cumulative else 0

    def minus(self, earlier: Buckets) -> Buckets | None:
        """The values added since ``earlier``; ``None`` if the two do not line up (a restart)."""
        if not earlier.upper_bounds:
            return self
        if earlier.upper_bounds != self.upper_bounds:
            return None
        delta = tuple(
            now - then for now, then in zip(self.cumulative, earlier.cumulative, strict=True)
        )
        if any(d < 0 for d in delta):
            return None
        return Buckets(self.upper_bounds, delta)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1), interpolated linearly inside its bucket; 0 when empty."""
        total = self.count
        if total == 0:
            return 0.0
        rank = q * total
        index = bisect.bisect_left(self.cumulative, rank)
        index = min(index, len(self.cumulative) - 1)
        lower_bound = self.upper_bounds[index - 1] if index > 0 else 0.0
        below = self.cumulative[index - 1] if index > 0 else 0
        inside = self.cumulative[index] - below
        if inside <= 0:
            return float(self.upper_bounds[index])
        fraction = (rank - below) / inside
        return lower_bound + (self.upper_bounds[index] - lower_bound) * fraction


@dataclass(frozen=True, slots=True)
class Counts:
    """One traffic source's counters at one reading."""

    completed: int = 0
    server_errors: int = 0
    client_errors: int = 0
    active: int = 0
    latency: Buckets = field(default_factory=Buckets)


@dataclass(frozen=True, slots=True)
class EnvoyReading:
    """What one ``/stats`` payload says about the edge and each cluster."""

    taken_at: datetime
    edge: Counts
    clusters: Mapping[str, Counts]


@dataclass(frozen=True, slots=True)
class Figures:
    """Traffic over one window (rates, fractions, percentiles) and totals since Envoy started."""

    requests_per_second: float = 0.0
    error_rate: float = 0.0
    client_error_rate: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    requests_total: int = 0
    errors_total: int = 0
    active_requests: int = 0


@dataclass(frozen=True, slots=True)
class ServiceTraffic:
    """The figures of one upstream (a gRPC service or HTTP routes) and its mesh service."""

    service: str
    grpc_service: str
    figures: Figures
    http_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TrafficSample:
    """The edge and every service over one window (``window_seconds`` 0: a first reading)."""

    sampled_at: datetime
    window_seconds: float
    edge: Figures
    services: tuple[ServiceTraffic, ...]


def parse_stats(
    payload: Any, *, upstreams: Iterable[Upstream], edge_stat_prefix: str, taken_at: datetime
) -> EnvoyReading:
    """Read the counters this module needs from a ``/stats?format=json`` payload.

    Stats that are missing (a cluster that has seen no call yet) count as zero.

    Raises:
        ValueError: the payload is not Envoy's JSON stats format.

    """
    if not isinstance(payload, dict) or not isinstance(payload.get("stats"), list):
        raise ValueError("not an Envoy /stats?format=json payload")
    values: dict[str, int] = {}
    histograms: dict[str, Buckets] = {}
    for entry in payload["stats"]:
        if not isinstance(entry, dict):
            continue
        name, value = entry.get("name"), entry.get("value")
        if isinstance(name, str) and isinstance(value, int) and not isinstance(value, bool):
            values[name] = value
        elif isinstance(entry.get("histograms"), list):
            for histogram in entry["histograms"]:
                parsed = _buckets(histogram)
                if parsed is not None:
                    histograms[parsed[0]] = parsed[1]

    def cluster_counts(upstream: Upstream) -> Counts:
        prefix = f"cluster.{upstream.cluster}."
        active = values.get(f"{prefix}upstream_rq_active", 0)
        latency = histograms.get(f"{prefix}upstream_rq_time", Buckets())
        if not upstream.grpc_service:
            return Counts(
                completed=values.get(f"{prefix}upstream_rq_completed", 0),
                server_errors=values.get(f"{prefix}upstream_rq_5xx", 0),
                client_errors=values.get(f"{prefix}upstream_rq_4xx", 0),
                active=active,
                latency=latency,
            )
        by_code = {code: values.get(f"{prefix}grpc.{code}", 0) for code in range(MAX_GRPC_CODE + 1)}
        return Counts(
            completed=sum(by_code.values()),
            server_errors=sum(n for code, n in by_code.items() if code in SERVER_ERROR_CODES),
            client_errors=sum(
                n for code, n in by_code.items() if code and code not in SERVER_ERROR_CODES
            ),
            active=active,
            latency=latency,
        )

    edge = f"http.{edge_stat_prefix}.downstream_rq_"
    return EnvoyReading(
        taken_at=taken_at,
        edge=Counts(
            completed=values.get(f"{edge}completed", 0),
            server_errors=values.get(f"{edge}5xx", 0),
            client_errors=values.get(f"{edge}4xx", 0),
            active=values.get(f"{edge}active", 0),
            latency=histograms.get(f"{edge}time", Buckets()),
        ),
        clusters={upstream.cluster: cluster_counts(upstream) for upstream in upstreams},
    )


def _buckets(histogram: Any) -> tuple[str, Buckets] | None:
    if not isinstance(histogram, dict) or not isinstance(histogram.get("name"), str):
        return None
    raw = histogram.get("buckets")
    if not isinstance(raw, list):
        return None
    bounds: list[float] = []
    counts: list[int] = []
    for bucket in raw:
        if not isinstance(bucket, dict):
            return None
        bound, count = bucket.get("upper_bound"), bucket.get("cumulative")
        if not isinstance(bound, int | float) or not isinstance(count, int):
            return None
        bounds.append(float(bound))
        counts.append(count)
    return histogram["name"], Buckets(tuple(bounds), tuple(counts))


def traffic_between(
    previous: EnvoyReading | None, current: EnvoyReading, upstreams: Iterable[Upstream]
) -> TrafficSample:
    """The sample of the window from ``previous`` to ``current`` (a first one without it).

    Services are listed by mesh service, then gRPC service (HTTP routes first).
    """
    window = 0.0
    if previous is not None:
        window = max(0.0, (current.taken_at - previous.taken_at).total_seconds())
    earlier = previous if window > 0 else None

    def figures_of(now: Counts, then: Counts | None) -> Figures:
        return _figures(now, then, window)

    services = tuple(
        ServiceTraffic(
            service=upstream.service,
            grpc_service=upstream.grpc_service,
            http_prefixes=upstream.http_prefixes,
            figures=figures_of(
                current.clusters.get(upstream.cluster, Counts()),
                None if earlier is None else earlier.clusters.get(upstream.cluster, Counts()),
            ),
        )
        for upstream in sorted(upstreams, key=lambda u: (u.service, u.grpc_service, u.cluster))
    )
    return TrafficSample(
        sampled_at=current.taken_at,
        window_seconds=window if earlier is not None else 0.0,
        edge=figures_of(current.edge, None if earlier is None else earlier.edge),
        services=services,
    )


def _figures(now: Counts, then: Counts | None, window: float) -> Figures:
    totals = Figures(
        requests_total=now.completed, errors_total=now.server_errors, active_requests=now.active
    )
    if then is None or window <= 0:
        return totals
    completed = now.completed - then.completed
    server_errors = now.server_errors - then.server_errors
    client_errors = now.client_errors - then.client_errors
    if min(completed, server_errors, client_errors) < 0:
        return totals  # Envoy restarted between the readings: no window to speak of.
    latency = now.latency.minus(then.latency) or Buckets()
    return Figures(
        requests_per_second=completed / window,
        error_rate=server_errors / completed if completed else 0.0,
        client_error_rate=client_errors / completed if completed else 0.0,
        p50_ms=latency.quantile(0.5),
        p99_ms=latency.quantile(0.99),
        requests_total=now.completed,
        errors_total=now.server_errors,
        active_requests=now.active,
    )
