"""The edge's guard filters: JWT verification and the edge rate limits (FIELD_GUIDE §2.4, §2.5).

They sit between CORS and the transcoder (``cors → jwt_authn → local_ratelimit → transcoder``),
so they see the REST path and reject before any transcoding work.

**Who needs a token** is derived from the access table in the descriptor set
(``(sutazai.auth.v1.access)``), not written here: a public method's gRPC path and each of its
REST paths take a token optionally (verified if present), so do the standard services the
runtime declares public (gRPC health, :data:`~sutazai.runtime.roles.STANDARD_ACCESS`), and every
other path (the REST API, every mesh service, server reflection, unknown paths) requires one.
The prefixes of HTTP services (``http_prefixes``: the OpenAI-compatible API) require one by a
rule of their own, placed before any optional rule, so no public path can ever cover them.
Services verify the token again; the edge only keeps unauthenticated traffic out early.

**The public keys** (Ed25519, ``alg: EdDSA``; the private ring never reaches the gateway) reach
Envoy as ``local_jwks`` inside the jwt_authn configuration, which is
served over ECDS (its own xDS resource) rather than inline in the listener: a listener update
drains the connections open on the old listener, and clients holding such a connection would
keep the old keys for up to Envoy's drain time. An ECDS update applies to the next request on
every connection, so an added key is accepted and a retired one refused at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Final

from envoy_data_plane.envoy.config.core.v3 import (
    AggregatedConfigSource,
    ApiVersion,
    ConfigSource,
    DataSource,
    ExtensionConfigSource,
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
    RuntimeFractionalPercent,
    TypedExtensionConfig,
)
from envoy_data_plane.envoy.config.route.v3 import (
    HeaderMatcher,
    RateLimit,
    RateLimitAction,
    RateLimitActionMaskedRemoteAddress,
    RateLimitActionMetaData,
    RateLimitActionMetaDataSource,
    RouteMatch,
)
from envoy_data_plane.envoy.extensions.common.ratelimit.v3 import (
    LocalRateLimitDescriptor,
    RateLimitDescriptorEntry,
)
from envoy_data_plane.envoy.extensions.filters.http.jwt_authn.v3 import (
    JwtAuthentication,
    JwtHeader,
    JwtProvider,
    JwtRequirement,
    JwtRequirementOrList,
    RequirementRule,
)
from envoy_data_plane.envoy.extensions.filters.http.local_ratelimit.v3 import LocalRateLimit
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpFilter,
)
from envoy_data_plane.envoy.type.matcher.v3 import RegexMatcher, StringMatcher
from envoy_data_plane.envoy.type.metadata.v3 import MetadataKey, MetadataKeyPathSegment
from envoy_data_plane.envoy.type.v3 import (
    FractionalPercent,
    FractionalPercentDenominatorType,
    TokenBucket,
)
from envoy_data_plane.google.protobuf import Any, Empty

from sutazai.gateway.catalog import GrpcService, ServiceCatalog
from sutazai.gateway.names import EDGE_JWT_CONFIG
from sutazai.gateway.path_templates import template_regex
from sutazai.gateway.resources import EdgePolicy
from sutazai.runtime.keys import PublicKeys
from sutazai.runtime.roles import STANDARD_ACCESS

JWT_PROVIDER: Final = "sutazai"
"""The one token issuer the edge trusts: the auth service, with the mesh's key ring."""
JWT_CONFIG_TYPE: Final = (
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
)
JWT_PAYLOAD_METADATA: Final = "jwt_payload"
"""Dynamic metadata key (namespace ``envoy.filters.http.jwt_authn``) of a verified token's
claims; the access log reads the caller's name from it."""
JWT_FILTER_NAMESPACE: Final = "envoy.filters.http.jwt_authn"
RATE_LIMIT_FILTER: Final = "envoy.filters.http.local_ratelimit"
PRINCIPAL_KEY: Final = "principal"
"""Rate-limit descriptor key of the caller: a token's ``sub``, or :data:`ANONYMOUS`."""
ANONYMOUS: Final = "-"
"""The principal of a request without a verified token (never a user id)."""
ADDRESS_KEY: Final = "masked_remote_address"
"""Rate-limit descriptor key Envoy's ``masked_remote_address`` action fills."""
RATE_LIMIT_HEADER: Final = "x-local-rate-limit"

_OPTIONAL: Final = JwtRequirement(
    requires_any=JwtRequirementOrList(
        requirements=[
            JwtRequirement(provider_name=JWT_PROVIDER),
            JwtRequirement(allow_missing=Empty()),
        ]
    )
)
"""No token is fine; a token that is sent must verify (``allow_missing``, unlike
``allow_missing_or_failed``, still rejects a forged or expired one)."""
_REQUIRED: Final = JwtRequirement(provider_name=JWT_PROVIDER)


def guard_filters(policy: EdgePolicy) -> list[HttpFilter]:
    """``jwt_authn`` (configured over ECDS, see :func:`jwt_extension_config`), then the limit."""
    return [
        HttpFilter(
            name=EDGE_JWT_CONFIG,
            config_discovery=ExtensionConfigSource(
                config_source=ConfigSource(
                    ads=AggregatedConfigSource(), resource_api_version=ApiVersion.V3
                ),
                type_urls=[JWT_CONFIG_TYPE],
            ),
        ),
        HttpFilter(name=RATE_LIMIT_FILTER, typed_config=Any.pack(rate_limit(policy))),
    ]


def jwt_extension_config(
    catalog: ServiceCatalog,
    policy: EdgePolicy,
    jwks: PublicKeys,
    http_prefixes: Sequence[str] = (),
) -> TypedExtensionConfig:
    """The ECDS resource configuring the edge's ``jwt_authn`` filter with the keys ``jwks``."""
    return TypedExtensionConfig(
        name=EDGE_JWT_CONFIG,
        typed_config=Any.pack(jwt_authentication(catalog, policy, jwks, http_prefixes)),
    )


def jwt_authentication(
    catalog: ServiceCatalog,
    policy: EdgePolicy,
    jwks: PublicKeys,
    http_prefixes: Sequence[str] = (),
) -> JwtAuthentication:
    """jwt_authn verifying EdDSA tokens of ``policy.auth.issuer`` against the public JWKS ``jwks``.

    Envoy picks the key by ``kid`` and ``alg``: the JWKS holds only ``OKP``/``Ed25519`` keys, so
    a token of any other algorithm (HS256 with a public key as its secret, ``none``) matches no
    key and is refused.
    """
    provider = JwtProvider(
        issuer=policy.auth.issuer,
        local_jwks=DataSource(inline_string=jwks.jwks()),
        # Only the Authorization header, where services look too (the default would also
        # take an access_token query parameter, which ends up in logs).
        from_headers=[JwtHeader(name="authorization", value_prefix="Bearer ")],
        # Services verify the token again (defence in depth): pass it on.
        forward=True,
        require_expiration=True,
        payload_in_metadata=JWT_PAYLOAD_METADATA,
    )
    return JwtAuthentication(
        providers={JWT_PROVIDER: provider},
        rules=jwt_rules(catalog, http_prefixes),
        # A preflight carries no credentials; CORS answers it (or lets it through) unchecked.
        bypass_cors_preflight=True,
    )


def jwt_rules(catalog: ServiceCatalog, http_prefixes: Sequence[str] = ()) -> list[RequirementRule]:
    """First match wins: public methods and standard services (health) take an optional token.

    HTTP services' prefixes come first and require a token. The last rule matches every path,
    so anything not declared public (including a future route nobody thought about) needs a
    token.
    """
    rules = [
        RequirementRule(match=RouteMatch(prefix=prefix), requires=_REQUIRED)
        for prefix in http_prefixes
    ]
    for service in catalog.services:
        rules += _public_method_rules(service)
    rules += [
        RequirementRule(match=RouteMatch(prefix=prefix), requires=_OPTIONAL)
        for prefix, access in STANDARD_ACCESS.items()
        if access.public
    ]
    rules.append(RequirementRule(match=RouteMatch(prefix="/"), requires=_REQUIRED))
    return rules


def _public_method_rules(service: GrpcService) -> list[RequirementRule]:
    rules: list[RequirementRule] = []
    for method in service.methods:
        if not method.public:
            continue
        rules.append(
            RequirementRule(match=RouteMatch(path=service.method_path(method)), requires=_OPTIONAL)
        )
        for binding in method.http_bindings:
            match = RouteMatch(
                safe_regex=RegexMatcher(regex=template_regex(binding.template)),
                headers=[
                    HeaderMatcher(name=":method", string_match=StringMatcher(exact=binding.verb))
                ],
            )
            rules.append(RequirementRule(match=match, requires=_OPTIONAL))
    return rules


def rate_limit(policy: EdgePolicy) -> LocalRateLimit:
    """A token bucket per caller, and one for all callers together (the overload guard).

    Two rate-limit actions describe each request after ``jwt_authn`` ran:

    * ``(principal, <sub>)`` for a verified token (its claims in dynamic metadata); a request
      without one produces no such descriptor;
    * ``(principal, -), (masked_remote_address, <peer>/32 or /64)`` for an anonymous request.
      (A signed-in request produces ``(principal, <sub>), (masked_remote_address, …)``, which
      matches no configured descriptor, so a signed-in caller never spends its address's
      tokens.)

    Descriptors with an empty value are wildcards: Envoy keeps one bucket per distinct value
    (an LRU of :attr:`~sutazai.runtime.settings.EdgeSettings.rate_limit_clients`). The filter's
    own bucket is taken from for every request and is the global guard. The peer is the address
    Envoy saw: the edge trusts no ``x-forwarded-for`` hop
    (:func:`~sutazai.gateway.resources.build_listener`).
    """
    always = RuntimeFractionalPercent(
        default_value=FractionalPercent(
            numerator=100, denominator=FractionalPercentDenominatorType.HUNDRED
        )
    )
    return LocalRateLimit(
        stat_prefix="edge_rate_limit",
        token_bucket=_bucket(
            policy.edge.global_rate_limit_burst, policy.edge.global_rate_limit_per_second
        ),
        rate_limits=[
            RateLimit(actions=[_principal_action(default="")]),
            RateLimit(
                actions=[
                    _principal_action(default=ANONYMOUS),
                    RateLimitAction(
                        masked_remote_address=RateLimitActionMaskedRemoteAddress(
                            v4_prefix_mask_len=32,
                            # One IPv6 host usually owns a whole /64.
                            v6_prefix_mask_len=64,
                        )
                    ),
                ]
            ),
        ],
        descriptors=[
            LocalRateLimitDescriptor(
                entries=[RateLimitDescriptorEntry(key=PRINCIPAL_KEY)],
                token_bucket=_bucket(
                    policy.edge.user_rate_limit_burst, policy.edge.user_rate_limit_per_second
                ),
            ),
            LocalRateLimitDescriptor(
                entries=[
                    RateLimitDescriptorEntry(key=PRINCIPAL_KEY, value=ANONYMOUS),
                    RateLimitDescriptorEntry(key=ADDRESS_KEY),
                ],
                token_bucket=_bucket(
                    policy.edge.address_rate_limit_burst, policy.edge.address_rate_limit_per_second
                ),
            ),
        ],
        max_dynamic_descriptors=policy.edge.rate_limit_clients,
        # Both are needed: "enabled" alone only counts what would have been limited.
        filter_enabled=always,
        filter_enforced=always,
        response_headers_to_add=[
            HeaderValueOption(
                header=HeaderValue(key=RATE_LIMIT_HEADER, value="true"),
                append_action=HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        ],
        # gRPC callers see RESOURCE_EXHAUSTED (back off) instead of UNAVAILABLE, which
        # retrying clients would hammer; REST callers get 429.
        rate_limited_as_resource_exhausted=True,
    )


def _principal_action(*, default: str) -> RateLimitAction:
    """``(principal, <the verified token's sub>)``, else ``default`` (none: no descriptor)."""
    return RateLimitAction(
        metadata=RateLimitActionMetaData(
            descriptor_key=PRINCIPAL_KEY,
            metadata_key=MetadataKey(
                key=JWT_FILTER_NAMESPACE,
                path=[
                    MetadataKeyPathSegment(key=JWT_PAYLOAD_METADATA),
                    MetadataKeyPathSegment(key="sub"),
                ],
            ),
            default_value=default,
            source=RateLimitActionMetaDataSource.DYNAMIC,
        )
    )


def _bucket(burst: int, per_second: int) -> TokenBucket:
    return TokenBucket(
        max_tokens=burst, tokens_per_fill=per_second, fill_interval=timedelta(seconds=1)
    )
