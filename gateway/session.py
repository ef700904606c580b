"""State-of-the-world ADS protocol for one stream, without any I/O.

The xDS rules this follows (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol):

* every response carries a fresh nonce; a request whose ``response_nonce`` is not the nonce of
  the latest response of its type is stale and ignored;
* a request answering the latest nonce is an ACK, or a NACK when it carries ``error_detail``
  (Envoy then keeps running the previous version; resending the same content would only be
  rejected again, so nothing is sent until the configuration changes);
* CDS and LDS are wildcard subscriptions (all resources); EDS, RDS and ECDS name the resources
  wanted, and a change of names is answered at once;
* on a configuration change, types are pushed in make-before-break order (CDS, EDS, LDS, RDS,
  ECDS);
* a cluster (listener) that changes is re-created by Envoy and warms until it receives its
  endpoints (routes, filter configurations) again: Envoy re-requests them with the names and
  nonce it already had, which looks like an ACK, so after a CDS (LDS) response the next EDS
  (RDS, ECDS) request is always answered. Without that the new cluster only warms at Envoy's
  15 s initial-fetch timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from envoy_data_plane.envoy.config.core.v3 import ControlPlane
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse

from sutazai.gateway.snapshot import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    EXTENSION_CONFIG_TYPE,
    LISTENER_TYPE,
    PUSH_ORDER,
    ROUTE_TYPE,
    Snapshot,
)
from sutazai.gateway.xds_status import Nack, XdsStatus, utcnow

CONTROL_PLANE_ID: Final = "sutazai-gateway"
WILDCARD_TYPES: Final = frozenset({CLUSTER_TYPE, LISTENER_TYPE})
DEPENDENT_TYPES: Final = {
    CLUSTER_TYPE: (ENDPOINT_TYPE,),
    LISTENER_TYPE: (ROUTE_TYPE, EXTENSION_CONFIG_TYPE),
}
"""The types a warming resource of the key type waits for."""


@dataclass(slots=True)
class _Subscription:
    """What one resource type's client wants and what it was last sent."""

    names: frozenset[str] | None
    """Requested resource names; ``None`` for a wildcard subscription."""
    sent_version: str | None = None
    sent_names: frozenset[str] | None = None
    nonce: str | None = None
    """Nonce of the latest response of this type; ``None`` before the first."""
    resend: bool = False
    """Answer the next request even if it looks like an ACK (see the module docstring)."""


@dataclass(slots=True)
class AdsSession:
    """Per-stream SotW bookkeeping: turns requests and snapshot changes into responses."""

    status: XdsStatus
    node_id: str = ""
    _subscriptions: dict[str, _Subscription] = field(default_factory=dict)
    _nonces: int = 0

    def on_request(
        self, request: DiscoveryRequest, snapshot: Snapshot | None
    ) -> list[DiscoveryResponse]:
        """Handle one request; ``snapshot`` is the current one (``None``: not known yet)."""
        if request.node is not None and request.node.id:
            self.node_id = request.node.id
        type_url = request.type_url
        if type_url not in PUSH_ORDER:
            # Only the five types of the edge are served; Envoy treats the silence as
            # "no such resources" once its initial fetch times out.
            return []
        names = self._requested_names(type_url, request)
        subscription = self._subscriptions.get(type_url)
        if subscription is None:
            subscription = self._subscriptions[type_url] = _Subscription(names=names)
            return self._respond_if_needed(type_url, snapshot, force=True)
        if request.response_nonce and request.response_nonce != subscription.nonce:
            return []  # Stale: answers a response that has since been superseded.
        subscription.names = names
        if request.error_detail is not None and request.error_detail.code != 0:
            self.status.nacked(
                Nack(
                    node_id=self.node_id,
                    type_url=type_url,
                    rejected_version=subscription.sent_version or "",
                    message=request.error_detail.message,
                    at=utcnow(),
                )
            )
            return []
        if request.response_nonce:
            self.status.acked(self.node_id, type_url, request.version_info)
        force = not request.response_nonce or subscription.resend
        return self._respond_if_needed(type_url, snapshot, force=force)

    def on_snapshot(self, snapshot: Snapshot) -> list[DiscoveryResponse]:
        """Push whatever changed in ``snapshot`` to the types this stream subscribed to."""
        responses: list[DiscoveryResponse] = []
        for type_url in PUSH_ORDER:
            if type_url in self._subscriptions:
                responses += self._respond_if_needed(type_url, snapshot, force=False)
        return responses

    def _requested_names(self, type_url: str, request: DiscoveryRequest) -> frozenset[str] | None:
        names = frozenset(request.resource_names)
        if type_url in WILDCARD_TYPES and (not names or "*" in names):
            return None
        return names

    def _respond_if_needed(
        self, type_url: str, snapshot: Snapshot | None, *, force: bool
    ) -> list[DiscoveryResponse]:
        subscription = self._subscriptions[type_url]
        if snapshot is None:
            return []  # Answered by on_snapshot once the first snapshot exists.
        if subscription.names is not None and not subscription.names:
            return []  # Subscribed to nothing (e.g. EDS with no EDS clusters).
        version = snapshot.resource_set(type_url).version
        unchanged = (
            subscription.sent_version == version and subscription.sent_names == subscription.names
        )
        if unchanged and not force:
            return []
        self._nonces += 1
        subscription.nonce = str(self._nonces)
        subscription.sent_version = version
        subscription.sent_names = subscription.names
        subscription.resend = False
        for dependent_type in DEPENDENT_TYPES.get(type_url, ()):
            dependent = self._subscriptions.get(dependent_type)
            if dependent is not None:
                dependent.resend = True
        resources = snapshot.resources(type_url, subscription.names)
        self.status.responded(self.node_id, type_url, version, len(resources))
        return [
            DiscoveryResponse(
                version_info=version,
                resources=resources,
                type_url=type_url,
                nonce=subscription.nonce,
                control_plane=ControlPlane(identifier=CONTROL_PLANE_ID),
            )
        ]
