"""The access policy has one reader and one statement, shared by services, gateway and edge."""

from __future__ import annotations

from nats.js.kv import KeyValue

from sutazai.auth.v1 import auth_service_pb2  # noqa: F401 - puts AuthService in the pool
from sutazai.gateway.access import ADS_PREFIX, GatewayAccess
from sutazai.gateway.catalog import ServiceCatalog
from sutazai.runtime.auth import Authenticator
from sutazai.runtime.revocations import Revocations
from sutazai.runtime.roles import (
    HEALTH_PREFIX,
    PUBLIC,
    SIGNED_IN,
    STANDARD_ACCESS,
    Role,
    access_table,
    standard_access,
)
from sutazai.runtime.settings import AuthSettings
from sutazai.runtime.tokens import TokenVerifier
from sutazai.system.v1 import system_service_pb2  # noqa: F401 - puts SystemService in the pool
from tests.gateway.tokens import TEST_JWKS

CATALOG = ServiceCatalog.packaged()


def test_the_edge_and_the_services_read_the_same_declarations() -> None:
    table = access_table(CATALOG.service_names)

    edge = {
        service.method_path(method): method.public
        for service in CATALOG.services
        for method in service.methods
    }

    assert edge == {path: policy.public for path, policy in table.items()}
    assert table["/sutazai.auth.v1.AuthService/Login"].public
    assert table["/sutazai.auth.v1.AuthService/ListUsers"].role is Role.ADMIN
    assert table["/sutazai.auth.v1.AuthService/GetMe"] == SIGNED_IN


def test_standard_services_health_public_reflection_signed_in() -> None:
    assert standard_access(f"{HEALTH_PREFIX}Check") == PUBLIC
    assert standard_access("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo") == SIGNED_IN
    assert standard_access("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") == (
        SIGNED_IN
    )
    assert standard_access("/unknown.Service/Method") == SIGNED_IN


def test_the_gateway_applies_the_standard_policy() -> None:
    async def no_bucket() -> KeyValue:
        raise AssertionError("policy() must not touch revocations")

    authenticator = Authenticator(
        TokenVerifier(lambda: TEST_JWKS, issuer="sutazai"),
        Revocations(AuthSettings()),
        no_bucket,
    )
    access = GatewayAccess(authenticator)

    for prefix, policy in STANDARD_ACCESS.items():
        assert access.policy(f"{prefix}Any") == policy
    assert access.policy(f"{ADS_PREFIX}StreamAggregatedResources") == PUBLIC
