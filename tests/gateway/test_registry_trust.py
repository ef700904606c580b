"""What the gateway believes of a registry entry, given who wrote it."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from sutazai.gateway.registry_trust import RegistryTrust
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.deployment import grpc_owners, load_catalog

SYSTEM_SERVICE = "sutazai.system.v1.SystemService"
AUTH_SERVICE = "sutazai.auth.v1.AuthService"
RUN_DIR = Path("/srv/sutazai/run")


@pytest.fixture
def metrics() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def trust(metrics: CollectorRegistry) -> RegistryTrust:
    return RegistryTrust(grpc_owners(load_catalog()), RUN_DIR, metrics)


def rejected(metrics: CollectorRegistry, service: str, reason: str) -> float:
    value = metrics.get_sample_value(
        "sutazai_gateway_registry_rejected_total", {"service": service, "reason": reason}
    )
    return value or 0.0


def entry(service: str, instance_id: str, *grpc_services: str, socket: str = "") -> ServiceInstance:
    return ServiceInstance(
        service=service,
        instance_id=instance_id,
        host="127.0.0.1",
        port=5000,
        socket_path=socket,
        grpc_services=grpc_services,
    )


def test_the_catalog_declares_who_owns_each_grpc_service() -> None:
    owners = grpc_owners(load_catalog())
    assert owners["system"] == {SYSTEM_SERVICE}
    assert owners["auth"] == {AUTH_SERVICE}


def test_an_owner_is_admitted_unchanged(trust: RegistryTrust, metrics: CollectorRegistry) -> None:
    own = entry("auth", "a1", AUTH_SERVICE, socket=str(RUN_DIR / "auth.a1.sock"))
    assert trust.admit("auth.a1", own) is own
    assert rejected(metrics, "auth", "not_owner") == 0


def test_a_foreign_claim_is_dropped_and_the_rest_kept(
    trust: RegistryTrust, metrics: CollectorRegistry
) -> None:
    greedy = entry("system", "s1", SYSTEM_SERVICE, AUTH_SERVICE)

    admitted = trust.admit("system.s1", greedy)

    assert admitted is not None
    assert list(admitted.grpc_services) == [SYSTEM_SERVICE]
    assert list(greedy.grpc_services) == [SYSTEM_SERVICE, AUTH_SERVICE], "input not mutated"
    assert rejected(metrics, "system", "not_owner") == 1


def test_an_entry_claiming_only_foreign_services_is_dropped(
    trust: RegistryTrust, metrics: CollectorRegistry
) -> None:
    with capture_logs() as logs:
        for _ in range(3):  # an instance heart-beats the same entry
            assert trust.admit("system.s2", entry("system", "s2", AUTH_SERVICE)) is None

    assert rejected(metrics, "system", "not_owner") == 3, "every refused write counts"
    assert [(e["event"], e["key"], e["reason"]) for e in logs] == [
        ("registry.entry_refused", "system.s2", "not_owner")
    ], "logged once"


@pytest.mark.parametrize(
    ("key", "instance", "reason"),
    [
        ("system.x", entry("auth", "x", AUTH_SERVICE), "key_mismatch"),
        ("system.x", entry("system", "y", SYSTEM_SERVICE), "key_mismatch"),
        ("stranger.x", entry("stranger", "x", SYSTEM_SERVICE), "unknown_service"),
        (
            "system.x",
            entry("system", "x", SYSTEM_SERVICE, socket=str(RUN_DIR / "auth.a1.sock")),
            "foreign_socket",
        ),
        (
            "system.x",
            entry("system", "x", SYSTEM_SERVICE, socket="/tmp/system.x.sock"),  # noqa: S108
            "foreign_socket",
        ),
    ],
)
def test_entries_that_lie_about_their_writer_or_socket_are_dropped(
    trust: RegistryTrust,
    metrics: CollectorRegistry,
    key: str,
    instance: ServiceInstance,
    reason: str,
) -> None:
    assert trust.admit(key, instance) is None
    assert rejected(metrics, key.partition(".")[0], reason) == 1
