"""How the client reaches the edge: Envoy's port, over TLS when the edge serves it."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import grpc

from sutazai.runtime.settings import LOOPBACK, MeshSettings

RECONNECT_BACKOFF_MAX_MS = 10_000
"""gRPC's own reconnect backoff grows to two minutes by default: a channel that lost the edge
would then fail every call fast long after the edge is back. Capped at the stream loop's
ceiling (:class:`sutazai.client.streams.ReconnectPolicy`), the two back-offs agree."""

_CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
)


def edge_target(settings: MeshSettings) -> str:
    """``host:port`` of the edge (a wildcard bind address is reached over loopback)."""
    host = settings.host
    try:
        if ipaddress.ip_address(host).is_unspecified:
            host = LOOPBACK
    except ValueError:
        pass
    return f"{host}:{settings.envoy.port}"


def edge_channel(
    settings: MeshSettings, *, interceptors: Sequence[grpc.aio.ClientInterceptor] = ()
) -> grpc.aio.Channel:
    """A channel to :func:`edge_target`, over TLS when the edge serves TLS.

    The edge then refuses plaintext; the channel trusts ``settings.edge.tls_ca_file``, else
    the system's roots. A service calling another through the edge passes the runtime's
    ``PropagatingClientInterceptor`` as one of ``interceptors``.
    """
    target = edge_target(settings)
    chain = list(interceptors) or None
    if not settings.edge_tls:
        return grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS, interceptors=chain)
    ca_file = settings.edge.tls_ca_file
    roots = ca_file.read_bytes() if ca_file is not None else None
    return grpc.aio.secure_channel(
        target,
        grpc.ssl_channel_credentials(root_certificates=roots),
        options=_CHANNEL_OPTIONS,
        interceptors=chain,
    )
