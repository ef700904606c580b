"""The gRPC services the edge exposes, read from the buf-built descriptor set.

The descriptor set (``gen/python/sutazai/descriptor.binpb``, written by ``make gen``) is the
single source of truth for what Envoy routes, transcodes and guards: a new proto with a
``sutazai.`` package becomes a cluster, routes, REST mappings and JWT rules (from its
``(sutazai.auth.v1.access)`` options) without touching the gateway.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Final

from google.api import annotations_pb2, http_pb2  # type: ignore[import-untyped]
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

# annotations_pb2 and access_pb2 are needed for their extensions too: the upb runtime resolves
# the extensions of the set's options when it parses the set, so they must be registered first
# (sutazai.runtime.roles imports access_pb2).
from sutazai.runtime.roles import declared_access

MESH_PACKAGE_PREFIX: Final = "sutazai."
"""Proto packages whose services are mesh services (get a cluster, routes and transcoding)."""

DESCRIPTOR_RESOURCE: Final = "descriptor.binpb"
"""File name of the descriptor set inside the installed ``sutazai.gateway`` package."""

REFLECTION_V1_SERVICE: Final = "grpc.reflection.v1.ServerReflection"
"""Reflection v1: wire-identical to v1alpha, which is all grpcio-reflection ships."""

_IDEMPOTENT_LEVELS: Final = frozenset(
    {
        descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
        descriptor_pb2.MethodOptions.IDEMPOTENT,
    }
)


@dataclass(frozen=True, slots=True)
class HttpBinding:
    """One ``google.api.http`` mapping of an RPC: an HTTP method and a path template."""

    verb: str
    """``GET``, ``POST``, ... (a ``custom`` rule's kind, upper-cased)."""
    template: str
    """The path template, e.g. ``/v1/users/{username}:setRole``."""


@dataclass(frozen=True, slots=True)
class GrpcMethod:
    """One RPC of a service, with what routing and the edge's guards need to know about it."""

    name: str
    client_streaming: bool
    server_streaming: bool
    idempotent: bool
    """Safe to repeat: declared ``idempotency_level`` or mapped to HTTP ``GET``."""
    public: bool = False
    """Callable without a token (``(sutazai.auth.v1.access).public``)."""
    http_bindings: tuple[HttpBinding, ...] = ()
    """Its REST mappings, additional bindings included."""

    @property
    def streaming(self) -> bool:
        """Whether either side streams (such routes get no overall timeout)."""
        return self.client_streaming or self.server_streaming


@dataclass(frozen=True, slots=True)
class GrpcService:
    """A fully-qualified gRPC service and its methods."""

    name: str
    methods: tuple[GrpcMethod, ...]

    @property
    def path_prefix(self) -> str:
        """HTTP/2 path prefix of every call to the service (``/pkg.Service/``)."""
        return f"/{self.name}/"

    def method_path(self, method: GrpcMethod) -> str:
        """HTTP/2 path of one method (``/pkg.Service/Method``)."""
        return f"{self.path_prefix}{method.name}"


@dataclass(frozen=True, slots=True)
class ServiceCatalog:
    """The mesh services declared in a descriptor set, plus the set's serialized bytes."""

    descriptor_set: bytes
    """The serialized ``FileDescriptorSet`` (with imports), as Envoy's transcoder wants it."""
    services: tuple[GrpcService, ...]
    """Services under :data:`MESH_PACKAGE_PREFIX`, sorted by name."""

    @classmethod
    def from_descriptor_set(
        cls, data: bytes, *, package_prefix: str = MESH_PACKAGE_PREFIX
    ) -> ServiceCatalog:
        """Read the services of a serialized ``FileDescriptorSet``.

        Raises ``ValueError`` when the set lacks a file some other file imports: Envoy's
        transcoder refuses such a set, and the error is clearer here than as an xDS NACK.
        """
        fds = descriptor_pb2.FileDescriptorSet.FromString(data)
        present = {f.name for f in fds.file}
        missing = sorted({d for f in fds.file for d in f.dependency} - present)
        if missing:
            raise ValueError(
                "descriptor set lacks imported files (build it without --exclude-imports): "
                + ", ".join(missing)
            )
        services = [
            _service(f"{f.package}.{s.name}", s.method)
            for f in fds.file
            if f.package.startswith(package_prefix)
            for s in f.service
        ]
        return cls(descriptor_set=data, services=tuple(sorted(services, key=lambda s: s.name)))

    @classmethod
    def packaged(cls) -> ServiceCatalog:
        """The catalog of the descriptor set installed with this package."""
        data = resources.files("sutazai").joinpath(DESCRIPTOR_RESOURCE).read_bytes()
        return cls.from_descriptor_set(data)

    @property
    def service_names(self) -> tuple[str, ...]:
        """Fully-qualified names of the mesh services."""
        return tuple(s.name for s in self.services)

    def descriptor_pool(self) -> descriptor_pool.DescriptorPool:
        """A fresh pool holding the descriptor set plus grpc health and reflection.

        Reflection answers from this pool, so clients resolve every mesh service (and the
        gateway's own) without any service's generated code being imported here.
        """
        pool = descriptor_pool.DescriptorPool()
        files = list(descriptor_pb2.FileDescriptorSet.FromString(self.descriptor_set).file)
        files += [
            descriptor_pb2.FileDescriptorProto.FromString(m.DESCRIPTOR.serialized_pb)
            for m in (health_pb2, reflection_pb2)
        ]
        for file in _dependency_order(files):
            pool.Add(file)
        return pool


def gateway_services() -> tuple[GrpcService, ...]:
    """Services the gateway itself answers for the whole mesh: health and reflection.

    All their methods are read-only, hence idempotent.
    """
    health = _service_from_file(health_pb2.DESCRIPTOR.serialized_pb)
    reflection = _service_from_file(reflection_pb2.DESCRIPTOR.serialized_pb)
    reflection_v1 = GrpcService(REFLECTION_V1_SERVICE, reflection.methods)
    return health, reflection_v1, reflection


def _service_from_file(serialized: bytes) -> GrpcService:
    file = descriptor_pb2.FileDescriptorProto.FromString(serialized)
    (service,) = file.service
    methods = tuple(
        GrpcMethod(m.name, m.client_streaming, m.server_streaming, idempotent=True)
        for m in service.method
    )
    return GrpcService(f"{file.package}.{service.name}", methods)


def _service(name: str, methods: Iterable[descriptor_pb2.MethodDescriptorProto]) -> GrpcService:
    return GrpcService(
        name,
        tuple(
            GrpcMethod(
                m.name,
                m.client_streaming,
                m.server_streaming,
                _is_idempotent(m),
                public=declared_access(m.options).public,
                http_bindings=tuple(_http_bindings(m)),
            )
            for m in methods
        ),
    )


def _http_bindings(method: descriptor_pb2.MethodDescriptorProto) -> Iterator[HttpBinding]:
    if not method.options.HasExtension(annotations_pb2.http):
        return
    rule = method.options.Extensions[annotations_pb2.http]
    for binding in (rule, *rule.additional_bindings):
        found = _binding(binding)
        if found is not None:
            yield found


def _binding(rule: http_pb2.HttpRule) -> HttpBinding | None:
    pattern = rule.WhichOneof("pattern")
    if pattern is None:
        return None
    if pattern == "custom":
        return HttpBinding(str(rule.custom.kind).upper(), str(rule.custom.path))
    return HttpBinding(str(pattern).upper(), str(getattr(rule, pattern)))


def _is_idempotent(method: descriptor_pb2.MethodDescriptorProto) -> bool:
    if method.options.idempotency_level in _IDEMPOTENT_LEVELS:
        return True
    if not method.options.HasExtension(annotations_pb2.http):
        return False
    # An HTTP GET binding is its author's statement that the call is safe to repeat.
    rule = method.options.Extensions[annotations_pb2.http]
    return bool(rule.WhichOneof("pattern") == "get")


def _dependency_order(
    files: list[descriptor_pb2.FileDescriptorProto],
) -> Iterator[descriptor_pb2.FileDescriptorProto]:
    """Yield files so that each comes after the files it imports (pools require that)."""
    by_name = {f.name: f for f in files}
    done: set[str] = set()

    def visit(name: str) -> Iterator[descriptor_pb2.FileDescriptorProto]:
        if name in done:
            return
        done.add(name)
        file = by_name[name]
        for dependency in file.dependency:
            yield from visit(dependency)
        yield file

    for file in files:
        yield from visit(file.name)
