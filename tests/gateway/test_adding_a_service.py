"""Adding a service: the steps of docs/architecture.md make a new service callable through Envoy.

The steps, as a developer takes them: a proto with ``google.api.http`` and ``access`` options,
compiled into code and into the mesh's descriptor set (``make gen``; here ``grpc_tools.protoc``
into a temporary directory, so the real tree stays as it is); a service package with
``server.py`` (``SERVICE_NAME``, ``serve``), ``handlers.py`` and ``domain.py``
(:mod:`tests.gateway.hello`); one ``mesh.toml`` entry with its ``grpc_services``. Nothing else:
the gateway routes and transcodes from the descriptor set, trusts the instance because the
entry gives its name the gRPC service, and Envoy health-checks and calls it over gRPC and REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path

import grpc
import httpx
import nats
import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from sutazai.gateway.catalog import ServiceCatalog
from sutazai.gateway.resources import EdgePolicy
from sutazai.runtime.deployment import grpc_owners, load_catalog
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import (
    AuthSettings,
    MeshSettings,
    NatsSettings,
    RegistrySettings,
    ServiceSettings,
)
from tests.gateway.edge_harness import Edge, edge_settings, running_envoy, running_gateway
from tests.gateway.tokens import ISSUER, KeyRingFile, bearer, sign
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
HELLO = Path(__file__).parent / "hello"
PROTO = "sutazai/hello/v1/hello_service.proto"
GRPC_SERVICE = "sutazai.hello.v1.HelloService"
MESH_TOML = f"""
[services.hello]
module = "tests.gateway.hello.server"
instances = 1
grpc_services = ["{GRPC_SERVICE}"]
"""


def compile_protos(out: Path) -> bytes:
    """Code and a descriptor set (imports included) of the hello proto in ``out``, as ``make gen``.

    Returns the mesh's descriptor set with the hello files added: the one the gateway serves.
    """
    descriptor = out / "hello.binpb"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={HELLO / 'protos'}",
            f"--proto_path={REPO / 'protos'}",
            f"--proto_path={REPO / 'protos' / 'third_party'}",
            f"--proto_path={resources.files('grpc_tools') / '_proto'}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "--include_imports",
            f"--descriptor_set_out={descriptor}",
            PROTO,
        ]
    )
    assert code == 0, "protoc failed"
    mesh = descriptor_pb2.FileDescriptorSet.FromString(ServiceCatalog.packaged().descriptor_set)
    known = {file.name for file in mesh.file}
    added = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    mesh.file.extend(file for file in added.file if file.name not in known)
    return mesh.SerializeToString()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceCatalog]:
    """The mesh's services and hello's; ``sutazai.hello.v1`` importable meanwhile."""
    out = tmp_path_factory.mktemp("gen")
    descriptor_set = compile_protos(out)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(out))
        yield ServiceCatalog.from_descriptor_set(descriptor_set)
    for name in [m for m in sys.modules if m.startswith(("sutazai.hello", "tests.gateway.hello"))]:
        del sys.modules[name]


@pytest.fixture
def mesh(nats_url: str) -> Iterator[MeshSettings]:
    """A test edge's settings on the module's NATS, with a registry bucket of its own."""
    registry = RegistrySettings(bucket=f"hello_{uuid.uuid4().hex[:8]}", ttl_seconds=30)
    with edge_settings() as settings:
        yield settings.model_copy(update={"nats": NatsSettings(url=nats_url), "registry": registry})


@contextlib.asynccontextmanager
async def serving(module_name: str, mesh: MeshSettings) -> AsyncIterator[None]:
    """The catalog module's ``serve`` running, as ``sutazai serve`` runs it; stopped on exit."""
    module = importlib.import_module(module_name)
    task = asyncio.create_task(
        module.serve(mesh, ServiceSettings(port=0, metrics_port=-1, grace_seconds=0.5))
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def healthy_in(edge: Edge, cluster: str) -> None:
    async with edge.admin() as admin:

        async def healthy() -> bool:
            return "healthy" in (await edge.host_health(admin, cluster)).values()

        await wait_for(healthy, timeout=30, message=f"an instance of {cluster} healthy in envoy")


async def test_a_service_added_by_the_documented_steps_is_callable_through_envoy(
    catalog: ServiceCatalog, mesh: MeshSettings, tmp_path: Path
) -> None:
    catalog_file = tmp_path / "mesh.toml"
    catalog_file.write_text(MESH_TOML, encoding="utf-8")
    (entry,) = load_catalog(catalog_file)
    assert entry.name == importlib.import_module(entry.module).SERVICE_NAME
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    nc = await nats.connect(mesh.nats_servers)
    registry = await Registry.open(nc.jetstream(), mesh.registry)
    try:
        async with (
            running_gateway(
                registry,
                mesh,
                jwks_file=keys.jwks_path,
                policy=EdgePolicy(auth=AuthSettings(issuer=ISSUER)),
                owners=grpc_owners([entry]),
                catalog=catalog,
            ),
            running_envoy(mesh, tmp_path) as edge,
            serving(entry.module, mesh.as_principal(entry.name)),
        ):
            await healthy_in(edge, GRPC_SERVICE)
            from sutazai.hello.v1 import hello_service_pb2 as pb
            from sutazai.hello.v1 import hello_service_pb2_grpc as pb_grpc

            async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}") as channel:
                stub = pb_grpc.HelloServiceStub(channel)
                said = await stub.SayHello(pb.SayHelloRequest(name="Ada"), timeout=10)
                with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                    await stub.CountGreetings(pb.CountGreetingsRequest(), timeout=10)
            assert said.greeting == "Hello, Ada!"
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED

            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.port}") as http:
                greeted = await http.post("/v1/hello", json={"name": "Grace"})
                refused = await http.get("/v1/hello/count")
                token = sign(keys.ring.signing)
                counted = await http.get("/v1/hello/count", headers=bearer(token))
            assert greeted.status_code == 200, greeted.text
            assert greeted.json() == {"greeting": "Hello, Grace!"}
            assert refused.status_code == 401, refused.text
            assert counted.status_code == 200, counted.text
            assert counted.json() == {"greetings": "2"}
    finally:
        await nc.close()
