"""Which parts of a registry entry the gateway believes, checked against its writer.

The registry key is ``<service>.<instance id>``, and NATS lets each principal write only keys
under its own name (``nats/permissions.toml``): the key's service is the writer. The writer may
serve only the gRPC services ``deploy/mesh.toml`` says it owns, and Envoy reaches it only through
the socket named after its key. A writer that also serves HTTP prefixes (``http_prefixes``) is
reached for them only through its HTTP socket, also named after its key, so its entry must name
that. Anything else in an entry is dropped (the entry's legitimate services still route),
logged once per entry and reason, and counted in
``sutazai_gateway_registry_rejected_total{service,reason}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

import structlog
from prometheus_client import CollectorRegistry, Counter

from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.registry import instance_key
from sutazai.runtime.sockets import instance_http_socket, instance_socket

log = structlog.get_logger(__name__)

KEY_MISMATCH: Final = "key_mismatch"
"""The entry's ``service`` or ``instance_id`` is not the key it was written under."""
UNKNOWN_SERVICE: Final = "unknown_service"
"""The key's service is not declared in ``deploy/mesh.toml``."""
NOT_OWNER: Final = "not_owner"
"""The entry claims a gRPC service its writer does not own."""
FOREIGN_SOCKET: Final = "foreign_socket"
"""The entry's socket (gRPC or HTTP) is not the one named after its key in the run directory."""
NO_SOCKET: Final = "no_socket"
"""The entry of an HTTP service names no HTTP socket: its gRPC services route, its prefixes not."""

_MAX_REPORTED: Final = 4096
"""Distinct refusals remembered so repeats (every heartbeat) are not logged again."""


class RegistryTrust:
    """Admits registry entries to routing: only what their writer may claim."""

    def __init__(
        self,
        owners: Mapping[str, frozenset[str]],
        run_dir: Path,
        metrics_registry: CollectorRegistry | None = None,
        *,
        http_services: frozenset[str] = frozenset(),
    ) -> None:
        """Trust ``owners`` (service name → gRPC services it owns) and sockets in ``run_dir``.

        ``http_services`` are the names serving HTTP prefixes (their entries must name their
        socket). The refusal counter is registered in ``metrics_registry`` (a private one when
        ``None``).
        """
        self._owners = owners
        self._http_services = http_services
        self._run_dir = run_dir
        self._rejected = Counter(
            "sutazai_gateway_registry_rejected",
            "Registry entry writes the gateway refused (in whole or in part), by writer and "
            "reason.",
            ["service", "reason"],
            registry=metrics_registry if metrics_registry is not None else CollectorRegistry(),
        )
        self._reported: set[tuple[str, str, str]] = set()

    def admit(self, key: str, instance: ServiceInstance) -> ServiceInstance | None:
        """The part of ``instance`` (written under ``key``) that may route, or ``None``."""
        writer = key.partition(".")[0]
        if key != instance_key(instance):
            self._refuse(key, writer, KEY_MISMATCH, instance_key(instance))
            return None
        owned = self._owners.get(writer)
        if owned is None:
            self._refuse(key, writer, UNKNOWN_SERVICE, writer)
            return None
        expected_socket = str(instance_socket(self._run_dir, writer, instance.instance_id))
        if instance.socket_path and instance.socket_path != expected_socket:
            self._refuse(key, writer, FOREIGN_SOCKET, instance.socket_path)
            return None
        expected_http = str(instance_http_socket(self._run_dir, writer, instance.instance_id))
        if instance.http_socket_path and instance.http_socket_path != expected_http:
            self._refuse(key, writer, FOREIGN_SOCKET, instance.http_socket_path)
            return None
        if writer in self._http_services and not instance.http_socket_path:
            # Only the HTTP cluster needs it, and that takes entries with an HTTP socket.
            self._refuse(key, writer, NO_SOCKET, "")
        foreign = [s for s in instance.grpc_services if s not in owned]
        if not foreign:
            return instance
        self._refuse(key, writer, NOT_OWNER, ",".join(sorted(foreign)))
        kept = [s for s in instance.grpc_services if s in owned]
        if not kept:
            return None
        trusted = ServiceInstance()
        trusted.CopyFrom(instance)
        del trusted.grpc_services[:]
        trusted.grpc_services.extend(kept)
        return trusted

    def _refuse(self, key: str, writer: str, reason: str, detail: str) -> None:
        self._rejected.labels(service=writer, reason=reason).inc()
        report = (key, reason, detail)
        if report in self._reported:
            return
        if len(self._reported) >= _MAX_REPORTED:
            self._reported.clear()
        self._reported.add(report)
        log.warning("registry.entry_refused", key=key, reason=reason, detail=detail)
