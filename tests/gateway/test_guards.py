from __future__ import annotations

import json
import re
from datetime import timedelta

from envoy_data_plane.envoy.extensions.filters.http.jwt_authn.v3 import (
    JwtAuthentication,
    JwtRequirement,
)
from envoy_data_plane.envoy.extensions.filters.http.local_ratelimit.v3 import LocalRateLimit

from sutazai.gateway.catalog import ServiceCatalog
from sutazai.gateway.guards import (
    ADDRESS_KEY,
    ANONYMOUS,
    JWT_CONFIG_TYPE,
    JWT_PROVIDER,
    PRINCIPAL_KEY,
    RATE_LIMIT_FILTER,
    guard_filters,
    jwt_authentication,
    jwt_extension_config,
    jwt_rules,
)
from sutazai.gateway.names import EDGE_JWT_CONFIG
from sutazai.gateway.resources import EdgePolicy
from sutazai.runtime.roles import HEALTH_PREFIX
from sutazai.runtime.settings import AuthSettings, EdgeSettings
from tests.gateway.tokens import TEST_JWKS

CATALOG = ServiceCatalog.packaged()
AUTH = "/sutazai.auth.v1.AuthService"


def optional(requirement: JwtRequirement | None) -> bool:
    """Token optional but verified: any of (the provider, allow_missing)."""
    assert requirement is not None
    if requirement.requires_any is None:
        return False
    kinds = [
        (r.provider_name, r.allow_missing is not None)
        for r in requirement.requires_any.requirements
    ]
    return kinds == [(JWT_PROVIDER, False), (None, True)]


def test_public_methods_come_from_the_access_table() -> None:
    rules = jwt_rules(CATALOG)
    exact = {r.match.path for r in rules if r.match and r.match.path and optional(r.requires)}

    assert exact == {
        f"{AUTH}/Register",
        f"{AUTH}/Login",
        f"{AUTH}/Refresh",
        "/sutazai.system.v1.SystemService/GetStatus",
        "/sutazai.system.v1.SystemService/WatchStatus",
    }


def test_rest_paths_of_public_methods_take_an_optional_token() -> None:
    rest = {}
    for rule in jwt_rules(CATALOG):
        if rule.match and rule.match.safe_regex:
            assert optional(rule.requires)
            (method,) = rule.match.headers
            assert method.name == ":method"
            assert method.string_match is not None
            rest[rule.match.safe_regex.regex] = method.string_match.exact

    assert rest == {
        "/v1/auth/register": "POST",
        "/v1/auth/login": "POST",
        "/v1/auth/refresh": "POST",
        "/v1/system/status": "GET",
        "/v1/system/status:watch": "GET",
    }
    assert not any(re.fullmatch(r, "/v1/system/status:refresh") for r in rest)


def test_health_is_public_and_everything_else_needs_a_token() -> None:
    *_, health, last = jwt_rules(CATALOG)

    assert health.match is not None
    assert health.match.prefix == HEALTH_PREFIX
    assert optional(health.requires)
    assert last.match is not None
    assert last.match.prefix == "/"
    assert last.requires == JwtRequirement(provider_name=JWT_PROVIDER)


def test_provider_checks_issuer_and_keys_and_forwards_the_token() -> None:
    config = jwt_authentication(CATALOG, EdgePolicy(auth=AuthSettings(issuer="mesh-x")), TEST_JWKS)

    provider = config.providers[JWT_PROVIDER]
    assert provider.issuer == "mesh-x"
    assert provider.local_jwks is not None
    assert provider.local_jwks.inline_string == TEST_JWKS.jwks()
    (jwk,) = json.loads(provider.local_jwks.inline_string)["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
    assert "d" not in jwk, "public keys only"
    assert provider.forward
    assert provider.require_expiration
    assert [(h.name, h.value_prefix) for h in provider.from_headers] == [
        ("authorization", "Bearer ")
    ]
    assert config.bypass_cors_preflight


def test_jwt_config_is_an_ecds_resource_the_listener_refers_to() -> None:
    resource = jwt_extension_config(CATALOG, EdgePolicy(), TEST_JWKS)
    jwt_filter, limit = guard_filters(EdgePolicy())

    assert resource.name == jwt_filter.name == EDGE_JWT_CONFIG
    assert resource.typed_config is not None
    assert isinstance(resource.typed_config.unpack(), JwtAuthentication)
    assert jwt_filter.typed_config is None
    assert jwt_filter.config_discovery is not None
    assert jwt_filter.config_discovery.type_urls == [JWT_CONFIG_TYPE]
    assert limit.name == RATE_LIMIT_FILTER


def test_rate_limit_follows_the_policy() -> None:
    policy = EdgePolicy(
        edge=EdgeSettings(
            user_rate_limit_burst=7,
            user_rate_limit_per_second=3,
            address_rate_limit_burst=5,
            address_rate_limit_per_second=2,
            rate_limit_clients=11,
            global_rate_limit_burst=70,
            global_rate_limit_per_second=30,
        )
    )
    (_, limit) = guard_filters(policy)
    assert limit.typed_config is not None
    config = limit.typed_config.unpack()

    assert isinstance(config, LocalRateLimit)
    assert config.token_bucket is not None
    assert (config.token_bucket.max_tokens, config.token_bucket.tokens_per_fill) == (70, 30)
    assert config.token_bucket.fill_interval == timedelta(seconds=1)
    buckets = {
        tuple((e.key, e.value) for e in d.entries): (
            d.token_bucket.max_tokens,
            d.token_bucket.tokens_per_fill,
        )
        for d in config.descriptors
        if d.token_bucket is not None
    }
    assert buckets == {
        ((PRINCIPAL_KEY, ""),): (7, 3),
        ((PRINCIPAL_KEY, ANONYMOUS), (ADDRESS_KEY, "")): (5, 2),
    }
    assert config.max_dynamic_descriptors == 11
    assert config.rate_limited_as_resource_exhausted
    for fraction in (config.filter_enabled, config.filter_enforced):
        assert fraction is not None
        assert fraction.default_value is not None
        assert fraction.default_value.numerator == 100
