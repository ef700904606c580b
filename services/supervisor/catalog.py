"""The services the local mesh runs: ``deploy/mesh.toml``, installed as ``sutazai.deploy``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources

from sutazai.services.supervisor.errors import SupervisorError

CATALOG_FILE = "mesh.toml"


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """One ``[services.NAME]`` table."""

    name: str
    module: str
    """Module exposing ``async def serve(mesh, service) -> None``."""
    instances: int = 1


def load_catalog() -> list[ServiceEntry]:
    """Every service of ``mesh.toml``, in file order.

    Raises:
        SupervisorError: the file is missing or malformed.

    """
    try:
        text = resources.files("sutazai.deploy").joinpath(CATALOG_FILE).read_text("utf-8")
        tables = tomllib.loads(text).get("services", {})
    except (OSError, ModuleNotFoundError, tomllib.TOMLDecodeError) as exc:
        raise SupervisorError(f"cannot read the service catalog {CATALOG_FILE}: {exc}") from exc
    entries = []
    for name, table in tables.items():
        module = table.get("module")
        instances = table.get("instances", 1)
        if not isinstance(module, str) or not isinstance(instances, int) or instances < 0:
            raise SupervisorError(
                f"{CATALOG_FILE}: [services.{name}] needs a module string and instances >= 0"
            )
        entries.append(ServiceEntry(name=name, module=module, instances=instances))
    return entries


def find_service(name: str) -> ServiceEntry:
    """The catalog entry of one service.

    Raises:
        SupervisorError: no such service.

    """
    entries = load_catalog()
    for entry in entries:
        if entry.name == name:
            return entry
    known = ", ".join(entry.name for entry in entries) or "none"
    raise SupervisorError(f"unknown service {name!r} (known: {known})")
