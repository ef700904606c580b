"""What Envoys made of the configuration pushed to them: ACKed versions and NACKs.

Kept in-process (for tests and operators' tools) and exported as Prometheus metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Nack:
    """An Envoy rejected a response."""

    node_id: str
    type_url: str
    rejected_version: str
    """Version of the response Envoy rejected (it keeps running the one before)."""
    message: str
    """Envoy's reason, from the request's ``error_detail``."""
    at: datetime


class XdsStatus:
    """ACK/NACK bookkeeping shared by every ADS stream of one gateway."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Register the xDS metrics in ``registry`` (a private one when ``None``)."""
        registry = registry if registry is not None else CollectorRegistry()
        self._nacks_total = Counter(
            "sutazai_gateway_xds_nacks",
            "xDS responses an Envoy rejected, by resource type.",
            ["type_url"],
            registry=registry,
        )
        self._responses_total = Counter(
            "sutazai_gateway_xds_responses",
            "xDS responses sent to Envoys, by resource type.",
            ["type_url"],
            registry=registry,
        )
        self._streams = Gauge(
            "sutazai_gateway_xds_streams",
            "Open ADS streams (connected Envoys).",
            registry=registry,
        )
        self._acked: dict[tuple[str, str], str] = {}
        self._last_nack: dict[str, Nack] = {}

    def stream_opened(self) -> None:
        """An Envoy connected."""
        self._streams.inc()

    def stream_closed(self) -> None:
        """An Envoy's stream ended."""
        self._streams.dec()

    def responded(self, node_id: str, type_url: str, version: str, count: int) -> None:
        """A response was sent."""
        self._responses_total.labels(type_url=type_url).inc()
        log.debug("xds.response", node=node_id, type_url=type_url, version=version, count=count)

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        """An Envoy applied ``version`` of ``type_url``."""
        self._acked[(node_id, type_url)] = version
        log.info("xds.ack", node=node_id, type_url=type_url, version=version)

    def nacked(self, nack: Nack) -> None:
        """An Envoy rejected a response: count it, keep it, and log it loudly."""
        self._last_nack[nack.type_url] = nack
        self._nacks_total.labels(type_url=nack.type_url).inc()
        log.error(
            "xds.nack",
            node=nack.node_id,
            type_url=nack.type_url,
            version=nack.rejected_version,
            error=nack.message,
        )

    def acked_version(self, node_id: str, type_url: str) -> str | None:
        """The last version of ``type_url`` that Envoy ``node_id`` ACKed."""
        return self._acked.get((node_id, type_url))

    def last_nack(self, type_url: str) -> Nack | None:
        """The latest NACK of ``type_url`` from any Envoy, if there was one."""
        return self._last_nack.get(type_url)

    def nacks(self) -> list[Nack]:
        """The latest NACK of each resource type, oldest first."""
        return sorted(self._last_nack.values(), key=lambda n: n.at)


def utcnow() -> datetime:
    """Timezone-aware now, for :attr:`Nack.at`."""
    return datetime.now(UTC)
