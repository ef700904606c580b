"""The services and agents of the mesh as ``deploy/mesh.toml`` declares them (``sutazai.deploy``).

The one declared place for what each service is: the module the supervisor runs, the gRPC
services it owns and the HTTP path prefixes it serves. The gateway routes a gRPC service only to
instances registered under the name that owns it (:func:`grpc_owners`), and an HTTP prefix only
to instances of the name that declares it (:func:`http_owners`), so a service cannot take over
another's traffic.

An agent (``[agents.NAME]``) is a NATS principal of its own whose instances take tasks from the
coordinator (nats/README.md, "Agent principals"): the supervisor runs ``instances`` processes
of its module, or, for an ``external`` agent (another language, another host), only writes its
credentials file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.roles import ACCOUNT_ROLES, Role

CATALOG_FILE = "mesh.toml"

HTTP_PREFIX_PATTERN = re.compile(r"^/[a-z][a-z0-9-]{0,31}/$")
"""An HTTP prefix is one lower-case path segment between slashes, e.g. ``/openai/``: it cannot
overlap another prefix, the REST API's ``/v1/`` (reserved, below) or a gRPC path
(``/<package>.<Service>/``, which has a dot)."""
RESERVED_HTTP_PREFIXES = frozenset({"/v1/"})
"""Prefixes the edge itself owns: ``/v1/`` is the transcoded REST API."""
TASK_TYPE_PATTERN = re.compile(r"\*|[a-z0-9._-]{1,128}|[a-z0-9._-]{1,126}\.\*")
"""An entry of an agent's ``task_types``: a task type (``text.summarize``), a family of them
(``hardware.*``: every type starting ``hardware.``) or ``*`` (any type)."""


@dataclass(frozen=True, slots=True)
class TaskTypes:
    """The task types an agent may be given: its principal's, whatever its heartbeats claim.

    An agent names its capabilities itself; these are what the deployment lets it run, so a
    compromised agent process cannot draw (and read the payloads of) another agent's tasks.
    """

    patterns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> TaskTypes:
        """Checked patterns (see :data:`TASK_TYPE_PATTERN`).

        Raises:
            ValueError: a pattern is malformed.

        """
        checked = tuple(patterns)
        for pattern in checked:
            if not isinstance(pattern, str) or not TASK_TYPE_PATTERN.fullmatch(pattern):
                raise ValueError(f"{pattern!r} is not a task type, a family 'prefix.*' or '*'")
        return cls(checked)

    def allows(self, task_type: str) -> bool:
        """Whether a task of ``task_type`` may go to the agent."""
        for pattern in self.patterns:
            if pattern == "*" or pattern == task_type:
                return True
            if pattern.endswith(".*") and task_type.startswith(pattern[:-1]):
                return True
        return False


ANY_TASK_TYPE = TaskTypes(("*",))
"""No restriction (a coordinator built without a deployment: tests of its own)."""


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """One ``[services.NAME]`` table."""

    name: str
    module: str
    """Module exposing ``async def serve(mesh, service) -> None``."""
    instances: int = 1
    grpc_services: tuple[str, ...] = ()
    """Fully-qualified gRPC services this name owns (and only its instances may serve)."""
    http_prefixes: tuple[str, ...] = ()
    """HTTP path prefixes (e.g. ``/openai/``) the edge sends to this name's instances, which
    serve them as plain HTTP on their second socket (beside gRPC on the first)."""


MAX_AGENT_INSTANCES = 64
"""Instances one agent may declare: each is a literal grant set in the NATS configuration."""
AGENT_INSTANCE_VARIABLE = "SUTAZAI_AGENT_INSTANCE_ID"
"""The environment variable that gives a supervised agent process its instance id (its slot)."""


@dataclass(frozen=True, slots=True)
class AgentEntry:
    """One ``[agents.NAME]`` table."""

    name: str
    module: str = ""
    """Module exposing ``async def run_agent(mesh, instance_id) -> None``; empty if external."""
    instances: int = 1
    grants: tuple[str, ...] = ()
    """Grants of ``nats/permissions.toml`` beyond the agent role (e.g. ``inference_call``)."""
    external: bool = False
    """Run elsewhere: the supervisor writes its credentials file but starts no process."""
    task_types: TaskTypes = field(default_factory=TaskTypes)
    """The task types the coordinator may give it (``task_types = ["text.*"]``); required."""
    task_roles: Mapping[str, Role] = field(default_factory=dict)
    """Task types that need more than a signed-in user to create (``task_roles = {"t" =
    "operator"}``): the task service refuses others (PERMISSION_DENIED) and audits each task
    of such a type it accepts."""

    @property
    def instance_ids(self) -> tuple[str, ...]:
        """Its instance ids, ``1`` .. ``instances``: agent ids are ``<name>.<instance id>``."""
        return tuple(str(n) for n in range(1, self.instances + 1))

    @property
    def agent_ids(self) -> tuple[str, ...]:
        """``<name>.<instance id>`` of every instance."""
        return tuple(f"{self.name}.{i}" for i in self.instance_ids)


def load_agents(path: Path | None = None) -> list[AgentEntry]:
    """Every agent of ``mesh.toml`` (the packaged one, or the file at ``path``), in file order.

    Raises:
        ConfigurationError: the file is missing or malformed.

    """
    try:
        source = resources.files("sutazai.deploy").joinpath(CATALOG_FILE) if path is None else path
        tables = tomllib.loads(source.read_text("utf-8")).get("agents", {})
    except (OSError, ModuleNotFoundError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read the agents of {CATALOG_FILE}: {exc}") from exc
    return [_agent(name, table) for name, table in tables.items()]


def _agent(name: str, table: Mapping[str, object]) -> AgentEntry:
    module = table.get("module", "")
    instances = table.get("instances", 1)
    grants = table.get("grants", [])
    external = table.get("external", False)
    roles = _task_roles(name, table.get("task_roles", {}))
    types = _task_types(name, table.get("task_types"))
    for task_type in roles:
        if not types.allows(task_type):
            raise ConfigurationError(
                f"{CATALOG_FILE}: [agents.{name}] task_roles: {task_type!r} is not one of its "
                "task_types"
            )
    if (
        not isinstance(module, str)
        or not isinstance(external, bool)
        or (not module and not external)
        or not isinstance(instances, int)
        or not 0 <= instances <= MAX_AGENT_INSTANCES
        or not isinstance(grants, list)
        or not all(isinstance(g, str) and g for g in grants)
    ):
        raise ConfigurationError(
            f"{CATALOG_FILE}: [agents.{name}] needs a module string (or external = true), "
            f"instances from 0 to {MAX_AGENT_INSTANCES} and a grants list of grant names"
        )
    return AgentEntry(
        name=name,
        module=module,
        instances=instances,
        grants=tuple(grants),
        external=external,
        task_types=types,
        task_roles=roles,
    )


def _task_types(name: str, value: object) -> TaskTypes:
    if not isinstance(value, list) or not value:
        raise ConfigurationError(
            f"{CATALOG_FILE}: [agents.{name}] needs task_types, a list of the task types it "
            "runs ('text.summarize', a family 'hardware.*', or '*')"
        )
    try:
        return TaskTypes.parse(value)
    except ValueError as exc:
        raise ConfigurationError(f"{CATALOG_FILE}: [agents.{name}] task_types: {exc}") from None


def _task_roles(name: str, table: object) -> dict[str, Role]:
    labels = ", ".join(role.label for role in ACCOUNT_ROLES)
    if not isinstance(table, Mapping) or not all(
        isinstance(task_type, str) and task_type and isinstance(label, str)
        for task_type, label in table.items()
    ):
        raise ConfigurationError(
            f"{CATALOG_FILE}: [agents.{name}] task_roles must map task types to a role ({labels})"
        )
    roles: dict[str, Role] = {}
    for task_type, label in table.items():
        try:
            roles[task_type] = Role.from_label(label)
        except ValueError:
            raise ConfigurationError(
                f"{CATALOG_FILE}: [agents.{name}] task_roles: {task_type!r} names an unknown "
                f"role {label!r} ({labels})"
            ) from None
    return roles


def task_roles(agents: Iterable[AgentEntry] | None = None) -> dict[str, Role]:
    """The least role each privileged task type needs to be created, over every agent.

    Two agents offering the same type with different roles: the higher role wins. ``agents``
    defaults to those of ``mesh.toml``.

    Raises:
        ConfigurationError: the catalog is unreadable or malformed.

    """
    roles: dict[str, Role] = {}
    for agent in load_agents() if agents is None else agents:
        for task_type, role in agent.task_roles.items():
            roles[task_type] = max(role, roles.get(task_type, Role.USER))
    return roles


def find_agent(name: str) -> AgentEntry | None:
    """The catalog entry of one agent, or ``None``.

    Raises:
        ConfigurationError: the catalog is unreadable.

    """
    return next((entry for entry in load_agents() if entry.name == name), None)


def load_catalog(path: Path | None = None) -> list[ServiceEntry]:
    """Every service of ``mesh.toml`` (the packaged one, or the file at ``path``), in file order.

    Raises:
        ConfigurationError: the file is missing or malformed, or two names claim one gRPC
            service.

    """
    try:
        source = resources.files("sutazai.deploy").joinpath(CATALOG_FILE) if path is None else path
        text = source.read_text("utf-8")
        tables = tomllib.loads(text).get("services", {})
    except (OSError, ModuleNotFoundError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read the service catalog {CATALOG_FILE}: {exc}") from exc
    entries = [_entry(name, table) for name, table in tables.items()]
    grpc_owners(entries)
    http_owners(entries)
    return entries


def _entry(name: str, table: Mapping[str, object]) -> ServiceEntry:
    module = table.get("module")
    instances = table.get("instances", 1)
    grpc_services = table.get("grpc_services")
    http_prefixes = table.get("http_prefixes", [])
    if (
        not isinstance(module, str)
        or not isinstance(instances, int)
        or instances < 0
        or not isinstance(grpc_services, list)
        or not all(isinstance(s, str) and s for s in grpc_services)
    ):
        raise ConfigurationError(
            f"{CATALOG_FILE}: [services.{name}] needs a module string, instances >= 0 and a "
            "grpc_services list of fully-qualified service names"
        )
    if not isinstance(http_prefixes, list) or not all(
        isinstance(p, str) and HTTP_PREFIX_PATTERN.fullmatch(p) and p not in RESERVED_HTTP_PREFIXES
        for p in http_prefixes
    ):
        raise ConfigurationError(
            f"{CATALOG_FILE}: [services.{name}] http_prefixes must be a list of one-segment "
            'lower-case path prefixes like "/openai/" (not "/v1/")'
        )
    return ServiceEntry(
        name=name,
        module=module,
        instances=instances,
        grpc_services=tuple(grpc_services),
        http_prefixes=tuple(http_prefixes),
    )


def grpc_owners(entries: Iterable[ServiceEntry]) -> dict[str, frozenset[str]]:
    """Each service name and the gRPC services it owns.

    Raises:
        ConfigurationError: two names claim the same gRPC service.

    """
    owners: dict[str, frozenset[str]] = {}
    claimed: dict[str, str] = {}
    for entry in entries:
        for grpc_service in entry.grpc_services:
            other = claimed.setdefault(grpc_service, entry.name)
            if other != entry.name:
                raise ConfigurationError(
                    f"{CATALOG_FILE}: {grpc_service} is claimed by both {other!r} and "
                    f"{entry.name!r}"
                )
        owners[entry.name] = frozenset(entry.grpc_services)
    return owners


def http_owners(entries: Iterable[ServiceEntry]) -> dict[str, tuple[str, ...]]:
    """Each service name that serves HTTP prefixes, and those prefixes.

    Raises:
        ConfigurationError: two names claim the same prefix.

    """
    owners: dict[str, tuple[str, ...]] = {}
    claimed: dict[str, str] = {}
    for entry in entries:
        for prefix in entry.http_prefixes:
            other = claimed.setdefault(prefix, entry.name)
            if other != entry.name:
                raise ConfigurationError(
                    f"{CATALOG_FILE}: {prefix} is claimed by both {other!r} and {entry.name!r}"
                )
        if entry.http_prefixes:
            owners[entry.name] = entry.http_prefixes
    return owners


def find_service(name: str) -> ServiceEntry:
    """The catalog entry of one service.

    Raises:
        ConfigurationError: no such service.

    """
    entries = load_catalog()
    for entry in entries:
        if entry.name == name:
            return entry
    known = ", ".join(entry.name for entry in entries) or "none"
    raise ConfigurationError(f"unknown service {name!r} (known: {known})")
