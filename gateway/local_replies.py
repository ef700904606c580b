"""JSON bodies for the replies Envoy makes itself (401, 404, 413, 429, 503, ...) to REST callers.

Envoy's own replies are plain text by default. REST callers get the same shape as the
transcoder's errors instead: a ``google.rpc.Status`` in JSON, ``{"code": <gRPC code>,
"message": "...", "details": []}``, with ``code`` mapped from the HTTP status.

gRPC callers are left alone: their local replies are trailers-only responses (HTTP 200 with
``grpc-status``/``grpc-message``), which a JSON body would only end up inside.

Telling them apart takes care: the filters see the request headers as they are *now*, and the
transcoder rewrites a REST request's ``content-type`` to ``application/grpc`` before, say, its
own 413 or the router's 503. Envoy still answers such a request as REST (it decided from the
original headers), so a request is REST if its ``content-type`` is not gRPC *or* it carries
``x-envoy-original-path``, which the transcoder sets when it rewrites the path.

Requests under an HTTP service's prefix (``http_prefixes``, e.g. ``/openai/``) get the error
shape those services answer with themselves, OpenAI's: ``{"error": {"message", "type",
"param", "code"}}``, so a client sees one shape whether Envoy (a missing token, a rate limit,
no healthy instance) or the service refused it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import grpc
from envoy_data_plane.envoy.config.accesslog.v3 import (
    AccessLogFilter,
    AndFilter,
    ComparisonFilter,
    ComparisonFilterOp,
    HeaderFilter,
    OrFilter,
    StatusCodeFilter,
)
from envoy_data_plane.envoy.config.core.v3 import RuntimeUInt32, SubstitutionFormatString
from envoy_data_plane.envoy.config.route.v3 import HeaderMatcher
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    LocalReplyConfig,
    ResponseMapper,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.google.protobuf import Struct

HTTP_TO_GRPC: Final[dict[int, grpc.StatusCode]] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    431: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
"""The gRPC code a REST caller reads for each HTTP status (the mapping gRPC itself uses where
it has one); other statuses read UNKNOWN."""


HTTP_ERROR_KINDS: Final[dict[int, tuple[str, str]]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    431: ("invalid_request_error", "request_too_large"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}
"""OpenAI-style ``type`` and ``code`` of Envoy's own replies to HTTP services' callers."""


def local_reply_config(http_prefixes: Sequence[str] = ()) -> LocalReplyConfig:
    """JSON ``google.rpc.Status`` bodies for REST callers; gRPC callers' replies unchanged.

    Under ``http_prefixes`` the body is OpenAI's error shape instead.
    """
    mappers: list[ResponseMapper] = []
    for prefix in http_prefixes:
        mappers += [
            ResponseMapper(
                filter=AccessLogFilter(
                    and_filter=AndFilter(filters=[_under(prefix), _status_is(http_status)])
                ),
                body_format_override=_http_error_json(kind, code),
            )
            for http_status, (kind, code) in sorted(HTTP_ERROR_KINDS.items())
        ]
        mappers.append(
            ResponseMapper(
                filter=_under(prefix), body_format_override=_http_error_json("server_error", "")
            )
        )
    mappers += [
        ResponseMapper(
            filter=AccessLogFilter(
                and_filter=AndFilter(filters=[_rest_request(), _status_is(http_status)])
            ),
            body_format_override=_status_json(code),
        )
        for http_status, code in sorted(HTTP_TO_GRPC.items())
    ]
    mappers.append(
        ResponseMapper(
            filter=_rest_request(), body_format_override=_status_json(grpc.StatusCode.UNKNOWN)
        )
    )
    return LocalReplyConfig(mappers=mappers)


def _http_error_json(kind: str, code: str) -> SubstitutionFormatString:
    return SubstitutionFormatString(
        json_format=Struct.from_dict(
            {
                "error": {
                    "message": "%LOCAL_REPLY_BODY%",
                    "type": kind,
                    "param": None,
                    "code": code or None,
                }
            }
        ),
        content_type="application/json",
    )


def _under(prefix: str) -> AccessLogFilter:
    return AccessLogFilter(
        header_filter=HeaderFilter(
            header=HeaderMatcher(name=":path", string_match=StringMatcher(prefix=prefix))
        )
    )


def _status_json(code: grpc.StatusCode) -> SubstitutionFormatString:
    number: int = code.value[0]
    return SubstitutionFormatString(
        json_format=Struct.from_dict(
            {"code": number, "message": "%LOCAL_REPLY_BODY%", "details": []}
        ),
        content_type="application/json",
    )


def _rest_request() -> AccessLogFilter:
    not_grpc = HeaderMatcher(
        name="content-type",
        string_match=StringMatcher(prefix="application/grpc"),
        # A GET has no content-type: it is a REST request too.
        treat_missing_header_as_empty=True,
        invert_match=True,
    )
    transcoded = HeaderMatcher(name="x-envoy-original-path", present_match=True)
    return AccessLogFilter(
        or_filter=OrFilter(
            filters=[
                AccessLogFilter(header_filter=HeaderFilter(header=not_grpc)),
                AccessLogFilter(header_filter=HeaderFilter(header=transcoded)),
            ]
        )
    )


def _status_is(http_status: int) -> AccessLogFilter:
    return AccessLogFilter(
        status_code_filter=StatusCodeFilter(
            comparison=ComparisonFilter(
                op=ComparisonFilterOp.EQ,
                value=RuntimeUInt32(
                    default_value=http_status, runtime_key=f"edge.local_reply.{http_status}"
                ),
            )
        )
    )
