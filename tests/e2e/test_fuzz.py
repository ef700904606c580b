"""Bad input never reaches a 500: every public REST path and gRPC method gets hostile input.

Each RPC declared in the descriptor set is called through Envoy (REST and gRPC) and on a service
instance's own port with random bytes, NULs, lone surrogates, invalid UTF-8, deep nesting, huge
strings and wrong types. Every answer must be a 4xx or a precise gRPC status (never INTERNAL,
UNKNOWN, DATA_LOSS or a 5xx), and nothing carrying the run's marker may be stored.
"""

from __future__ import annotations

import json
import random
import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import grpc
import httpx
import pytest
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message

from sutazai.gateway.catalog import GrpcMethod, GrpcService, ServiceCatalog
from sutazai.ops.supervisor.components.postgres import maintenance_dsn
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import MeshSettings

MARKER = f"fuzz{secrets.token_hex(4)}"
"""Put in every string the fuzzer sends; no row may contain it afterwards."""

SERVER_FAULTS = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
}
"""Statuses that mean the server, not the input, is at fault (UNIMPLEMENTED: a declared
method must exist)."""

CHAT_TEXT_TABLES = {'"chat"."conversations"', '"chat"."messages"'}
"""Where the chat service keeps what users say: a fuzzed message that is valid (1 to 32,768
characters, no NUL, valid UTF-8) is a message like any other, stored with its reply. Refused
input is checked there by tests/chat (bad input stores nothing)."""

CATALOG = ServiceCatalog.packaged()
POOL = CATALOG.descriptor_pool()
RNG = random.Random(20261130)  # noqa: S311  reproducible garbage, not secrets
MAX_EDGE_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Target:
    """One RPC of the catalog and its request type."""

    service: GrpcService
    method: GrpcMethod

    @property
    def path(self) -> str:
        return self.service.method_path(self.method)

    @property
    def request_type(self) -> descriptor.Descriptor:
        found = POOL.FindServiceByName(self.service.name).FindMethodByName(self.method.name)
        return found.input_type

    def __str__(self) -> str:
        return self.path


TARGETS = [Target(s, m) for s in CATALOG.services for m in s.methods]


def hostile_strings() -> Iterator[str]:
    """Strings that break naive parsers, each carrying the marker."""
    yield f"{MARKER}\x00"
    yield f"\x00{MARKER}\x00\x00"
    yield f"{MARKER}\ud800"  # a lone surrogate: not encodable as UTF-8
    yield f"{MARKER}" + "\u202e\ufeff\u0301" * 3
    yield MARKER + "A" * 70_000
    yield f"../../{MARKER}/%00/%2e%2e"
    yield f"{MARKER}'; DROP TABLE users; --"


def wrong_values(field: descriptor.FieldDescriptor) -> Iterator[object]:
    """JSON values of the wrong type (or out of range) for one field."""
    if field.type == descriptor.FieldDescriptor.TYPE_STRING:
        yield {"nested": MARKER}
        yield 12345
    elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
        yield f"{MARKER}-not-an-object"
        yield [1, 2, 3]
    elif field.type == descriptor.FieldDescriptor.TYPE_ENUM:
        yield f"{MARKER}_NOT_A_VALUE"
        yield 99_999
    elif field.type == descriptor.FieldDescriptor.TYPE_BOOL:
        yield f"{MARKER}"
    else:
        yield f"{MARKER}-not-a-number"
        yield 2**80
    yield None
    yield []


def json_bodies(request_type: descriptor.Descriptor) -> Iterator[bytes]:
    """Raw and structured JSON bodies for one request type."""
    yield bytes(RNG.getrandbits(8) for _ in range(256))
    yield b"\x00" * 64
    yield b'{"' + MARKER.encode() + b'": "\xed\xa0\x80"}'  # a surrogate encoded as UTF-8
    yield b"[" * 100_000 + b"]" * 100_000
    yield b'{"x":' * 5_000 + json.dumps(MARKER).encode() + b"}" * 5_000
    yield b"{" + b'"k":' * 10 + b"}"
    yield b'"' + MARKER.encode() + b"A" * (MAX_EDGE_BODY + 16) + b'"'
    for field in request_type.fields:
        for value in hostile_strings():
            if field.type == descriptor.FieldDescriptor.TYPE_STRING:
                yield json.dumps({field.name: value}, ensure_ascii=True).encode()
        for value in wrong_values(field):
            yield json.dumps({field.name: value}).encode()


def wire_payloads(request_type: descriptor.Descriptor) -> Iterator[bytes]:
    """Raw protobuf bodies for one request type: garbage, truncations, bad UTF-8, huge fields."""
    yield bytes(RNG.getrandbits(8) for _ in range(512))
    yield b"\xff" * 32
    yield b"\x0a\xff\xff\xff\xff\x0f"  # a length-delimited field claiming 4 GiB
    yield b"\x08" + b"\x80" * 11  # an over-long varint
    request_class = message_factory.GetMessageClass(request_type)
    for field in request_type.fields:
        tag = (field.number << 3) | 2
        if field.type == descriptor.FieldDescriptor.TYPE_STRING:
            for value in (b"\xed\xa0\x80" + MARKER.encode(), b"\xc3\x28", b"\xff\xfe"):
                yield _varint(tag) + _varint(len(value)) + value
            for text in hostile_strings():
                encodable = text.encode("utf-8", errors="replace")
                yield _varint(tag) + _varint(len(encodable)) + encodable
        if field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            nested = b"\x0a\x02\x0a\x00" * 10
            yield _varint(tag) + _varint(len(nested) + 5) + nested  # length past the end
    huge = request_class()
    string_fields = [
        f for f in request_type.fields if f.type == descriptor.FieldDescriptor.TYPE_STRING
    ]
    if string_fields and not string_fields[0].is_repeated:
        setattr(huge, string_fields[0].name, MARKER + "x" * (5 * 1024 * 1024))
        yield huge.SerializeToString()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def rest_requests(target: Target) -> Iterator[tuple[str, str, bytes | None]]:
    """(verb, URL path, body) for each REST binding of the target, with hostile path values."""
    for binding in target.method.http_bindings:
        paths = [_fill(binding.template, f"{MARKER}%00")]
        paths += [_fill(binding.template, f"{MARKER}%ED%A0%80"), _fill(binding.template, "..%2F")]
        for path in paths:
            if binding.verb in {"GET", "DELETE"}:
                yield binding.verb, path, None
                yield binding.verb, f"{path}?{MARKER}=%00", None
            else:
                for body in json_bodies(target.request_type):
                    yield binding.verb, path, body


def _fill(template: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, template)


@pytest.fixture(scope="module")
async def service_ports(mesh_services: MeshSettings) -> dict[str, str]:
    """gRPC service name -> ``host:port`` of one registered instance serving it."""
    nc = await connect_nats(mesh_services, name="fuzz")
    try:
        registry = await Registry.open(nc.jetstream(), mesh_services.registry)
        ports: dict[str, str] = {}
        for instance in await registry.list():
            for name in instance.grpc_services:
                ports.setdefault(name, f"{instance.host}:{instance.port}")
        return ports
    finally:
        await nc.close()


@pytest.fixture(scope="module")
async def stored_before(mesh_services: MeshSettings) -> AsyncIterator[None]:
    """After the module: no table of the mesh database holds the fuzzer's marker."""
    yield
    dsn = maintenance_dsn(mesh_services).rsplit("/", 1)[0] + f"/{mesh_services.postgres.database}"
    connection = await asyncpg.connect(dsn)
    try:
        tables = await connection.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        for table in tables:
            qualified = f'"{table["table_schema"]}"."{table["table_name"]}"'
            hits = await connection.fetchval(
                f"SELECT count(*) FROM {qualified} t WHERE t::text LIKE $1",  # noqa: S608
                f"%{MARKER}%",
            )
            if table["table_schema"] == "audit":
                continue  # refused calls are audited by design, with what the caller sent
            if qualified in CHAT_TEXT_TABLES:
                continue  # a valid chat message is stored by design, whatever Unicode it holds
            assert hits == 0, f"{qualified} stored fuzz input"
    finally:
        await connection.close()


@pytest.mark.usefixtures("stored_before")
@pytest.mark.parametrize("target", TARGETS, ids=str)
async def test_hostile_rest_input_gets_a_4xx(
    target: Target, mesh_services: MeshSettings, admin_token: str
) -> None:
    if not target.method.http_bindings:
        pytest.fail(f"{target} has no REST binding: every public RPC must have one")
    base = f"http://127.0.0.1:{mesh_services.envoy.port}"
    faults: list[str] = []
    answers: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for verb, path, body in rest_requests(target):
            for headers in ({}, {"authorization": f"Bearer {admin_token}"}):
                # Only the status line: a watch stream that was accepted never ends.
                async with client.stream(
                    verb,
                    path,
                    content=body,
                    headers={**headers, "content-type": "application/json"},
                ) as reply:
                    status = reply.status_code
                answers[status] += 1
                if status >= 500:
                    faults.append(f"{verb} {path[:60]} {(body or b'')[:40]!r}: {status}")
    assert not faults, "\n".join(faults[:10])
    assert answers[429] < answers.total() / 2, f"rate limits hid the input: {answers}"


@pytest.mark.usefixtures("stored_before")
@pytest.mark.parametrize("target", TARGETS, ids=str)
async def test_hostile_grpc_input_gets_a_precise_status(
    target: Target,
    mesh_services: MeshSettings,
    admin_token: str,
    service_ports: dict[str, str],
) -> None:
    addresses = [f"127.0.0.1:{mesh_services.envoy.port}", service_ports[target.service.name]]
    faults: list[str] = []
    for address in addresses:
        async with grpc.aio.insecure_channel(address) as channel:
            for payload in wire_payloads(target.request_type):
                for metadata in ((), (("authorization", f"Bearer {admin_token}"),)):
                    code = await _call(channel, target, payload, metadata)
                    if code in SERVER_FAULTS:
                        faults.append(f"{address} {payload[:24]!r}: {code.name}")
    assert not faults, "\n".join(faults[:10])


async def _call(
    channel: grpc.aio.Channel,
    target: Target,
    payload: bytes,
    metadata: tuple[tuple[str, str], ...],
) -> grpc.StatusCode:
    identity = bytes
    try:
        if target.method.server_streaming:
            call = channel.unary_stream(
                target.path, request_serializer=identity, response_deserializer=identity
            )(payload, metadata=metadata, timeout=30)
            # A stream that answered once took the input; a watch would never end by itself.
            async for _ in call:
                break
            call.cancel()
        else:
            await channel.unary_unary(
                target.path, request_serializer=identity, response_deserializer=identity
            )(payload, metadata=metadata, timeout=30)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_every_public_message_is_fuzzed() -> None:
    """The fuzzer covers every RPC in the descriptor set (a new service is picked up)."""
    assert {t.service.name for t in TARGETS} == set(CATALOG.service_names)
    assert all(
        isinstance(message_factory.GetMessageClass(t.request_type)(), Message) for t in TARGETS
    )
