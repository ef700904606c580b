"""Roles and the per-RPC access table declared in the protos (``sutazai.auth.v1.access``)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf import descriptor_pool

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
            options = method.GetOptions()
            if options.HasExtension(access_pb2.access):
                declared = options.Extensions[access_pb2.access]
                policy = MethodAccess(
                    public=declared.public,
                    role=Role(declared.role),
                    audited=declared.audited,
                    rate_limited=declared.rate_limited,
                )
            else:
                policy = SIGNED_IN
            table[f"/{name}/{method.name}"] = policy
    return table
