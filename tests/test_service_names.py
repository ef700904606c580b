"""A service's name is one fact: ``deploy/mesh.toml``, the registry and NATS agree on it.

The name of a ``[services.<name>]`` table is the service's registry key prefix (the gateway
routes its gRPC services only to instances registered under it), its NATS principal (which may
write only those registry keys) and its PostgreSQL role and Redis user. Nothing at run time can
notice a service that registers under another name than its table's, or serves other gRPC
services than the table gives it, until Envoy refuses its traffic; this check does, without
starting anything.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from sutazai.gateway.catalog import ServiceCatalog
from sutazai.ops.supervisor.components.nats import nats_component, nats_dir
from sutazai.ops.supervisor.nats_auth import Policy
from sutazai.runtime.deployment import ServiceEntry, load_agents, load_catalog
from sutazai.runtime.settings import GATEWAY_PRINCIPAL, NATS_ADMIN, MeshSettings

ENTRIES = load_catalog()
# How a server module hands a generated servicer registration to the runtime:
# `<alias>_pb2_grpc.add_<Service>Servicer_to_server`.
REGISTRATION = re.compile(r"\b(\w+_pb2_grpc)\.add_(\w+)Servicer_to_server\b")


def registered_grpc_services(module: ModuleType) -> set[str]:
    """Fully-qualified gRPC services whose generated registration ``module`` passes on."""
    found: set[str] = set()
    for alias, short_name in REGISTRATION.findall(inspect.getsource(module)):
        generated = getattr(module, alias)
        messages = importlib.import_module(generated.__name__.removesuffix("_grpc"))
        found.add(messages.DESCRIPTOR.services_by_name[short_name].full_name)
    return found


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_the_module_registers_under_its_table_name(entry: ServiceEntry) -> None:
    module = importlib.import_module(entry.module)

    assert entry.name == module.SERVICE_NAME
    assert callable(module.serve)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_the_server_registers_exactly_the_grpc_services_of_its_table(entry: ServiceEntry) -> None:
    module = importlib.import_module(entry.module)

    assert registered_grpc_services(module) == set(entry.grpc_services)
    assert set(entry.grpc_services) <= set(ServiceCatalog.packaged().service_names), (
        "every owned gRPC service is in the descriptor set Envoy routes from"
    )


async def test_nats_principals_are_admin_gateway_the_mesh_services_and_agents(
    tmp_path: Path,
) -> None:
    settings = MeshSettings(state_dir=tmp_path)
    await nats_component(settings, env={}).prepare()
    config = (nats_dir(settings) / "nats-server.conf").read_text(encoding="utf-8")
    users = re.search(r'(\[\{"user".*\}\])', config)
    assert users is not None
    principals = {user["user"]: user["permissions"] for user in json.loads(users.group(1))}
    names = {entry.name for entry in ENTRIES}

    agents = {agent.name for agent in load_agents()}
    assert set(principals) == {NATS_ADMIN, GATEWAY_PRINCIPAL, *names, *agents}
    for name in names:
        registry_writes = f"$KV.{settings.registry.bucket}.{name}.>"
        assert registry_writes in principals[name]["publish"]["allow"], (
            f"{name} may write its own registry keys"
        )


def test_service_grants_name_mesh_services() -> None:
    names = {entry.name for entry in ENTRIES}

    assert set(Policy.packaged().service_grants) <= names
