"""NATS principals of the embedded server and their subject permissions.

Every process connects as a principal of its own: ``admin`` (the supervisor, the CLI's tools),
``gateway``, and one per service of the catalog, named after the service. What each may publish
and subscribe to is declared once, in ``nats/permissions.toml`` (installed as ``sutazai.nats``);
this module turns that declaration into the ``users`` of the server's configuration.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

from sutazai.ops.supervisor.errors import SupervisorError
from sutazai.runtime.secrets import MeshSecrets
from sutazai.runtime.settings import GATEWAY_PRINCIPAL, NATS_ADMIN

GATEWAY = GATEWAY_PRINCIPAL
"""The principal of the gateway (xDS control plane)."""
PERMISSIONS_FILE = "permissions.toml"

ADMIN_ROLE = "admin"
GATEWAY_ROLE = "gateway"
SERVICE_ROLE = "service"

# A principal's name is a NATS user and a subject token (its inbox, its registry keys): no
# dots, wildcards or spaces.
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}\Z")


@dataclass(frozen=True, slots=True)
class Principal:
    """One NATS user of the embedded server."""

    name: str
    role: str
    """A role of ``permissions.toml``: ``admin``, ``gateway`` or ``service``."""


@dataclass(frozen=True, slots=True)
class Permissions:
    """Subjects a principal may publish to and subscribe to (everything else is denied)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False
    """May answer requests it received (one reply to each request's reply subject), whatever
    the reply subject is: what a request-reply responder needs, and nothing more."""

    def config(self) -> dict[str, object]:
        """The ``permissions`` map of a nats-server user."""
        # An empty allow list would not restrict anything, so "nothing" is an explicit deny.
        config: dict[str, object] = {
            "publish": {"allow": list(self.publish)} if self.publish else {"deny": [">"]},
            "subscribe": {"allow": list(self.subscribe)} if self.subscribe else {"deny": [">"]},
        }
        if self.allow_responses:
            config["allow_responses"] = True
        return config


def mesh_principals(services: Iterable[str]) -> list[Principal]:
    """``admin``, ``gateway``, then one principal per service name (each once).

    Raises:
        SupervisorError: a service name is not a valid principal name, or is reserved.

    """
    principals = [Principal(NATS_ADMIN, ADMIN_ROLE), Principal(GATEWAY, GATEWAY_ROLE)]
    reserved = {p.name for p in principals}
    for service in dict.fromkeys(services):
        if service in reserved:
            raise SupervisorError(f"service name {service!r} is reserved for a NATS principal")
        if not _NAME.match(service):
            raise SupervisorError(
                f"service name {service!r} cannot name a NATS principal "
                "(lower-case letters, digits, '_' and '-', starting with a letter)"
            )
        principals.append(Principal(service, SERVICE_ROLE))
    return principals


@dataclass(frozen=True, slots=True)
class Policy:
    """The roles of ``permissions.toml`` and the grants they are made of."""

    roles: Mapping[str, tuple[str, ...]]
    grants: Mapping[str, Permissions]
    service_grants: Mapping[str, tuple[str, ...]]
    """Grants of one service principal beyond its role, by service name."""

    @classmethod
    def packaged(cls) -> Policy:
        """The policy installed with the mesh (``sutazai.nats/permissions.toml``).

        Raises:
            SupervisorError: the file is missing or malformed.

        """
        try:
            text = resources.files("sutazai.nats").joinpath(PERMISSIONS_FILE).read_text("utf-8")
            return cls.parse(tomllib.loads(text))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SupervisorError(
                f"cannot read NATS permissions {PERMISSIONS_FILE}: {exc}"
            ) from exc

    @classmethod
    def parse(cls, document: Mapping[str, object]) -> Policy:
        """A policy from the parsed TOML document.

        Raises:
            SupervisorError: a role names an unknown grant, or a value has the wrong type.

        """
        roles = _string_lists(document.get("roles"), "roles")
        grants: dict[str, Permissions] = {}
        raw_grants = document.get("grants")
        if not isinstance(raw_grants, dict):
            raise SupervisorError(f"{PERMISSIONS_FILE}: [grants] is missing")
        for name, grant in raw_grants.items():
            responses: object = False
            if isinstance(grant, dict):
                grant = {k: v for k, v in grant.items() if k != "allow_responses"}
                responses = raw_grants[name].get("allow_responses", False)
            if not isinstance(responses, bool):
                raise SupervisorError(
                    f"{PERMISSIONS_FILE}: grants.{name}.allow_responses is a bool"
                )
            lists = _string_lists(grant, f"grants.{name}")
            unknown = set(lists) - {"publish", "subscribe"}
            if unknown:
                raise SupervisorError(f"{PERMISSIONS_FILE}: grants.{name} has {sorted(unknown)}")
            grants[name] = Permissions(
                lists.get("publish", ()), lists.get("subscribe", ()), responses
            )
        extra = _string_lists(document.get("service_grants", {}), "service_grants")
        for role, names in (*roles.items(), *extra.items()):
            missing = [n for n in names if n not in grants]
            if missing:
                raise SupervisorError(f"{PERMISSIONS_FILE}: {role} uses unknown grants {missing}")
        return cls(MappingProxyType(roles), MappingProxyType(grants), MappingProxyType(extra))

    def permissions(self, principal: Principal, *, bucket: str, revocations: str) -> Permissions:
        """What ``principal`` may do, with the placeholders of its grants filled in.

        Raises:
            SupervisorError: the principal's role is not declared.

        """
        try:
            grant_names = self.roles[principal.role]
        except KeyError:
            raise SupervisorError(
                f"{PERMISSIONS_FILE} declares no role {principal.role!r}"
            ) from None
        if principal.role == SERVICE_ROLE:
            grant_names = (*grant_names, *self.service_grants.get(principal.name, ()))
        values = {
            "name": principal.name,
            "bucket": bucket,
            "stream": f"KV_{bucket}",
            "revocations": revocations,
            "revocations_stream": f"KV_{revocations}",
        }
        publish: dict[str, None] = {}
        subscribe: dict[str, None] = {}
        responses = False
        for grant in (self.grants[name] for name in grant_names):
            publish.update(dict.fromkeys(s.format(**values) for s in grant.publish))
            subscribe.update(dict.fromkeys(s.format(**values) for s in grant.subscribe))
            responses = responses or grant.allow_responses
        return Permissions(tuple(publish), tuple(subscribe), responses)


def users_config(
    principals: Iterable[Principal],
    secrets: MeshSecrets,
    *,
    bucket: str,
    revocations: str,
    policy: Policy,
) -> list[dict[str, object]]:
    """The ``authorization.users`` list of nats-server: one user per principal.

    Raises:
        ConfigurationError: a principal has no generated password.
        SupervisorError: a principal's role is not declared.

    """
    return [
        {
            "user": principal.name,
            "password": secrets.nats_password(principal.name),
            "permissions": policy.permissions(
                principal, bucket=bucket, revocations=revocations
            ).config(),
        }
        for principal in principals
    ]


def _string_lists(value: object, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise SupervisorError(f"{PERMISSIONS_FILE}: [{where}] must be a table")
    lists: dict[str, tuple[str, ...]] = {}
    for key, items in value.items():
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise SupervisorError(f"{PERMISSIONS_FILE}: {where}.{key} must be a list of strings")
        lists[key] = tuple(items)
    return lists
