from __future__ import annotations

import pytest

from sutazai.gateway.catalog import (
    REFLECTION_V1_SERVICE,
    HttpBinding,
    ServiceCatalog,
    gateway_services,
)
from tests.gateway.demo_descriptors import DEMO_SERVICE, demo_descriptor_set


def test_packaged_descriptor_declares_the_system_service() -> None:
    catalog = ServiceCatalog.packaged()

    assert "sutazai.system.v1.SystemService" in catalog.service_names
    methods = catalog.services[
        catalog.service_names.index("sutazai.system.v1.SystemService")
    ].methods
    (get_status,) = [m for m in methods if m.name == "GetStatus"]
    assert get_status.name == "GetStatus"
    assert get_status.idempotent, "GET-mapped methods are idempotent"
    assert not get_status.streaming


def test_only_mesh_packages_are_mesh_services() -> None:
    catalog = ServiceCatalog.from_descriptor_set(demo_descriptor_set())

    assert catalog.service_names == (DEMO_SERVICE,)


def test_method_flags_come_from_the_descriptor() -> None:
    (service,) = ServiceCatalog.from_descriptor_set(demo_descriptor_set()).services
    methods = {m.name: m for m in service.methods}

    assert not methods["Create"].idempotent, "POST without idempotency_level"
    assert methods["Get"].idempotent, "HTTP GET binding"
    assert methods["Touch"].idempotent, "idempotency_level = IDEMPOTENT"
    assert methods["Watch"].server_streaming
    assert methods["Watch"].streaming
    assert service.method_path(methods["Get"]) == f"/{DEMO_SERVICE}/Get"


def test_descriptor_set_without_imports_is_refused() -> None:
    with pytest.raises(ValueError, match=r"google/api/annotations\.proto"):
        ServiceCatalog.from_descriptor_set(demo_descriptor_set(with_imports=False))


def test_descriptor_pool_resolves_mesh_and_gateway_services() -> None:
    pool = ServiceCatalog.from_descriptor_set(demo_descriptor_set()).descriptor_pool()

    assert pool.FindServiceByName(DEMO_SERVICE).methods_by_name["Watch"]
    assert pool.FindServiceByName("grpc.health.v1.Health")
    assert pool.FindServiceByName("grpc.reflection.v1alpha.ServerReflection")


def test_gateway_serves_health_and_both_reflection_versions() -> None:
    services = {s.name: s for s in gateway_services()}

    assert set(services) == {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        REFLECTION_V1_SERVICE,
    }
    watch = next(m for m in services["grpc.health.v1.Health"].methods if m.name == "Watch")
    assert watch.server_streaming
    (info,) = services[REFLECTION_V1_SERVICE].methods
    assert info.client_streaming
    assert info.server_streaming


def test_access_and_rest_bindings_come_from_the_descriptor() -> None:
    catalog = ServiceCatalog.packaged()
    auth = catalog.services[catalog.service_names.index("sutazai.auth.v1.AuthService")]
    methods = {m.name: m for m in auth.methods}

    assert methods["Login"].public
    assert methods["Login"].http_bindings == (HttpBinding("POST", "/v1/auth/login"),)
    assert not methods["GetMe"].public
    assert methods["GetMe"].http_bindings == (HttpBinding("GET", "/v1/auth/me"),)
    assert not methods["SetUserRole"].public
    assert methods["SetUserRole"].http_bindings == (
        HttpBinding("POST", "/v1/users/{username}:setRole"),
    )


def test_additional_and_custom_bindings_are_read() -> None:
    (service,) = ServiceCatalog.from_descriptor_set(demo_descriptor_set()).services
    methods = {m.name: m for m in service.methods}

    assert methods["Get"].http_bindings == (
        HttpBinding("GET", "/v1/demo/{text}"),
        HttpBinding("HEAD", "/v1/demo/{text}/head"),
    )
    assert methods["Get"].public
    assert not methods["Create"].public
