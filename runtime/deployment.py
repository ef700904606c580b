"""The services of the mesh as ``deploy/mesh.toml`` declares them (installed as ``sutazai.deploy``).

The one declared place for what each service is: the module the supervisor runs and the gRPC
services it owns. The gateway routes a gRPC service only to instances registered under the
name that owns it (:func:`grpc_owners`), so a service cannot take over another's traffic.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sutazai.runtime.errors import ConfigurationError

CATALOG_FILE = "mesh.toml"


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """One ``[services.NAME]`` table."""

    name: str
    module: str
    """Module exposing ``async def serve(mesh, service) -> None``."""
    instances: int = 1
    grpc_services: tuple[str, ...] = ()
    """Fully-qualified gRPC services this name owns (and only its instances may serve)."""


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
    return entries


def _entry(name: str, table: Mapping[str, object]) -> ServiceEntry:
    module = table.get("module")
    instances = table.get("instances", 1)
    grpc_services = table.get("grpc_services")
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
    return ServiceEntry(
        name=name, module=module, instances=instances, grpc_services=tuple(grpc_services)
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
