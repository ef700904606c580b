"""Roles and the per-RPC access policy declared in the protos (``sutazai.auth.v1.access``).

The one reader of the ``(sutazai.auth.v1.access)`` method option (:func:`declared_access`) and
the one statement of the standard services' policy (:data:`STANDARD_ACCESS`): every service's
guard, the gateway's own admission and the edge's JWT rules all take them from here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from google.protobuf import descriptor_pb2, descriptor_pool

from sutazai.auth.v1 import access_pb2
from sutazai.runtime.errors import ConfigurationError


class Role(enum.IntEnum):
    """What a caller may do; a higher role may do everything a lower one may.

    The API carries the ``sutazai.auth.v1.Role`` enum itself (same numbers); the lowercase
    :attr:`label` is only for what is not protobuf: the token's ``role`` claim, the accounts
    table and the CLI, and :meth:`from_label` is its one parser.
    """

    ANONYMOUS = access_pb2.ROLE_UNSPECIFIED
    USER = access_pb2.ROLE_USER
    OPERATOR = access_pb2.ROLE_OPERATOR
    ADMIN = access_pb2.ROLE_ADMIN

    @property
    def label(self) -> str:
        """The name in tokens, the accounts table and the CLI: ``user``, ``operator``, ``admin``."""
        return self.name.lower()

    @property
    def wire(self) -> access_pb2.Role.ValueType:
        """The role as a message field holds it (``sutazai.auth.v1.Role``)."""
        return access_pb2.Role.ValueType(self.value)

    @classmethod
    def from_label(cls, label: str) -> Role:
        """Parse ``user``, ``operator`` or ``admin``.

        Raises:
            ValueError: any other value.
        """
        for role in ACCOUNT_ROLES:
            if role.label == label:
                return role
        raise ValueError(f"unknown role {label!r}; expected user, operator or admin")


ACCOUNT_ROLES = (Role.USER, Role.OPERATOR, Role.ADMIN)
"""The roles an account can have (no account is anonymous)."""


@dataclass(frozen=True, slots=True)
class MethodAccess:
    """The access policy of one RPC."""

    public: bool
    role: Role
    audited: bool
    rate_limited: bool

    def allows(self, role: Role) -> bool:
        """Whether a caller with ``role`` may call (``ANONYMOUS`` only for public RPCs)."""
        if self.public:
            return role >= self.role
        return role >= max(self.role, Role.USER)


SIGNED_IN = MethodAccess(public=False, role=Role.USER, audited=False, rate_limited=False)
"""The policy of an RPC that declares none."""

PUBLIC = MethodAccess(public=True, role=Role.ANONYMOUS, audited=False, rate_limited=False)
"""Health checks and the like."""

HEALTH_PREFIX: Final = "/grpc.health.v1.Health/"
"""gRPC path prefix of the standard health service."""

STANDARD_ACCESS: Final[Mapping[str, MethodAccess]] = MappingProxyType(
    {
        # Public: Envoy's health checks and load balancers' probes carry no token.
        HEALTH_PREFIX: PUBLIC,
        # Reflection lists the whole API surface: signed-in callers only.
        "/grpc.reflection.v1alpha.ServerReflection/": SIGNED_IN,
        "/grpc.reflection.v1.ServerReflection/": SIGNED_IN,
    }
)
"""The policy of the standard services every instance (and the gateway) serves, by gRPC path
prefix (``/pkg.Service/``); they declare no ``(access)`` option of their own."""


def standard_access(method: str) -> MethodAccess:
    """The policy of a gRPC path the protos do not declare (standard, else signed-in only)."""
    prefix = method[: method.rfind("/") + 1]
    return STANDARD_ACCESS.get(prefix, SIGNED_IN)


def declared_access(options: descriptor_pb2.MethodOptions) -> MethodAccess:
    """The policy a method's options declare (``(sutazai.auth.v1.access)``).

    :data:`SIGNED_IN` when they declare none. ``options`` is a method's ``MethodOptions``, from
    a descriptor pool (``MethodDescriptor.GetOptions()``) or a descriptor set
    (``MethodDescriptorProto.options``).
    """
    if not options.HasExtension(access_pb2.access):
        return SIGNED_IN
    declared = options.Extensions[access_pb2.access]
    return MethodAccess(
        public=declared.public,
        role=Role(declared.role),
        audited=declared.audited,
        rate_limited=declared.rate_limited,
    )


def access_table(
    services: Iterable[str], pool: descriptor_pool.DescriptorPool | None = None
) -> dict[str, MethodAccess]:
    """The policy of every method of ``services``, keyed by gRPC path (``/pkg.Service/Method``).

    Args:
        services: fully-qualified service names whose descriptors are in ``pool``.
        pool: where to find them; the default pool of the generated code if ``None``.

    Raises:
        ConfigurationError: a service is not in the pool.
    """
    pool = pool or descriptor_pool.Default()
    table: dict[str, MethodAccess] = {}
    for name in services:
        try:
            service = pool.FindServiceByName(name)
        except KeyError as exc:
            raise ConfigurationError(
                f"service {name} is not in the descriptor pool: import its generated module"
            ) from exc
        for method in service.methods:
            table[f"/{name}/{method.name}"] = declared_access(method.GetOptions())
    return table
