"""The server interceptor and the propagating client interceptor, on real grpc.aio servers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry

from sutazai.runtime import context as rpc_context
from sutazai.runtime.faults import invalid_argument
from sutazai.runtime.interceptors import (
    PropagatingClientInterceptor,
    ServerInterceptor,
    _nul_fields,
)
from sutazai.runtime.metrics import RpcMetrics
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.integration

METHODS = "test.v1.Probe"


def _identity(value: bytes) -> bytes:
    return value


class Behaviour:
    """What the test server does per method; `seen` records what handlers observed."""

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}
        self.downstream: str | None = None

    async def echo_request_id(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return (rpc_context.request_id.get() or "").encode()

    async def reject(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise invalid_argument({"name": "must not be empty"})

    async def crash(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise ZeroDivisionError("secret internals")

    async def remaining(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.seen["remaining"] = context.time_remaining()
        self.seen["request_id"] = rpc_context.request_id.get()
        return b""

    async def forward(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        assert self.downstream is not None
        async with grpc.aio.insecure_channel(
            self.downstream, interceptors=[PropagatingClientInterceptor()]
        ) as channel:
            await channel.unary_unary(f"/{METHODS}/Remaining")(b"", timeout=60)
        return b""


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Behaviour, CollectorRegistry]]:
    behaviour = Behaviour()
    registry = CollectorRegistry()
    srv = grpc.aio.server(
        interceptors=[ServerInterceptor(RpcMetrics.create(registry))],
        options=[("grpc.so_reuseport", 0)],
    )
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=_identity, response_serializer=_identity
        )
        for name, fn in {
            "EchoRequestId": behaviour.echo_request_id,
            "Reject": behaviour.reject,
            "Crash": behaviour.crash,
            "Remaining": behaviour.remaining,
            "Forward": behaviour.forward,
        }.items()
    }
    srv.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(METHODS, handlers)])
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    address = f"127.0.0.1:{port}"
    behaviour.downstream = address
    yield address, behaviour, registry
    await srv.stop(None)


async def call(address: str, method: str, **kwargs: object) -> grpc.aio.UnaryUnaryCall:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(f"/{METHODS}/{method}")(b"", **kwargs)
        await call
        return call


async def test_request_id_is_taken_from_metadata_and_echoed(server) -> None:
    address, _, _ = server
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(f"/{METHODS}/EchoRequestId")(
            b"", metadata=(("x-request-id", "abc-123"),)
        )
        assert await call == b"abc-123"
        assert ("x-request-id", "abc-123") in tuple(await call.trailing_metadata())


async def test_request_id_is_generated_when_missing(server) -> None:
    address, _, _ = server
    async with grpc.aio.insecure_channel(address) as channel:
        body = await channel.unary_unary(f"/{METHODS}/EchoRequestId")(b"")
    assert len(body) == 36


async def test_fault_becomes_invalid_argument_with_field_violations(server) -> None:
    address, _, registry = server
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(address, "Reject")
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("name", "must not be empty")
    ]

    def counted() -> bool:
        # The server records the outcome after the status is on the wire: wait for it.
        handled = registry.get_sample_value(
            "sutazai_grpc_server_handled_total",
            {"grpc_method": f"/{METHODS}/Reject", "grpc_code": "INVALID_ARGUMENT"},
        )
        return handled == 1

    await wait_for(counted, timeout=5, message="INVALID_ARGUMENT counted")


async def test_unexpected_exception_is_internal_without_internals(server) -> None:
    address, _, _ = server
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(address, "Crash", metadata=(("x-request-id", "r-9"),))
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in (caught.value.details() or "")
    assert "r-9" in (caught.value.details() or "")


async def test_unknown_method_is_unimplemented(server) -> None:
    address, _, _ = server
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(address, "Nope")
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_deadline_and_request_id_propagate_to_outbound_calls(server) -> None:
    address, behaviour, _ = server
    await call(address, "Forward", timeout=2.0, metadata=(("x-request-id", "chain-1"),))
    remaining = behaviour.seen["remaining"]
    # The downstream call asked for 60 s but inherits what is left of the caller's 2 s
    # (grpc rounds deadlines on the wire, hence the small allowance).
    assert isinstance(remaining, float)
    assert 0 < remaining <= 2.1
    assert behaviour.seen["request_id"] == "chain-1"


async def test_no_deadline_means_no_remaining_time() -> None:
    assert rpc_context.remaining_seconds() is None
    token = rpc_context.deadline.set(time.monotonic() - 1.0)
    try:
        assert rpc_context.remaining_seconds() == 0.0
    finally:
        rpc_context.deadline.reset(token)


def test_nul_characters_are_found_in_nested_repeated_and_map_fields() -> None:
    clean = struct_pb2.Struct()
    clean.update({"a": "text", "b": [1, "x"], "c": {"d": "e"}})
    assert list(_nul_fields(clean)) == []

    dirty = struct_pb2.Struct()
    dirty.update({"ok": "fine", "bad\x00key": 1, "deep": {"list": ["x", "y\x00"]}})
    found = sorted(_nul_fields(dirty))
    assert found == [
        "fields['bad\\x00key']",
        "fields['deep'].struct_value.fields['list'].list_value.values[1].string_value",
    ]
