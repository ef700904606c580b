"""JWT at the edge, CORS and body limits, through a real Envoy configured by the gateway."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import grpc
import httpx
import nats
import pytest
from envoy_data_plane.envoy.extensions.filters.http.jwt_authn.v3 import JwtAuthentication
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sutazai.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from sutazai.gateway.guards import JWT_PROVIDER
from sutazai.gateway.resources import EdgePolicy
from sutazai.gateway.server import Gateway
from sutazai.runtime.keys import SigningKey
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import AuthSettings, EdgeSettings, MeshSettings, RegistrySettings
from sutazai.system.v1 import system_service_pb2, system_service_pb2_grpc
from tests.gateway.auth_backend import AUTH_SERVICE, OWNERS, auth_backend
from tests.gateway.edge_harness import (
    Edge,
    edge_settings,
    registered_in,
    running_envoy,
    running_gateway,
)
from tests.gateway.processes import read_log
from tests.gateway.tokens import (
    ISSUER,
    KeyRingFile,
    bearer,
    hs256_with_public_key,
    sign,
    unsigned,
)
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

ALLOWED_ORIGIN = "http://localhost:3000"
MAX_REQUEST_BYTES = 4096
UNAUTHENTICATED = 16


@pytest.fixture(scope="module")
async def registry(nats_url: str) -> AsyncIterator[Registry]:
    nc = await nats.connect(nats_url)
    settings = RegistrySettings(bucket=f"auth_{uuid.uuid4().hex[:8]}", ttl_seconds=300)
    yield await Registry.open(nc.jetstream(), settings)
    await nc.close()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyRingFile:
    return KeyRingFile(tmp_path_factory.mktemp("keys") / "jwt_keys.json")


@pytest.fixture(scope="module")
def settings() -> Iterator[MeshSettings]:
    with edge_settings() as settings:
        yield settings


@pytest.fixture(scope="module")
async def control_plane(
    registry: Registry, keys: KeyRingFile, settings: MeshSettings
) -> AsyncIterator[Gateway]:
    policy = EdgePolicy(
        edge=EdgeSettings(cors_origins=(ALLOWED_ORIGIN,), max_request_bytes=MAX_REQUEST_BYTES),
        auth=AuthSettings(issuer=ISSUER),
    )
    async with running_gateway(
        registry, settings, jwks_file=keys.jwks_path, policy=policy, owners=OWNERS
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def edge(
    control_plane: Gateway,
    registry: Registry,
    settings: MeshSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Edge]:
    """Envoy with the stand-in auth/system backend registered and healthy."""
    workdir = tmp_path_factory.mktemp("envoy")
    async with (
        running_envoy(settings, workdir) as proxy,
        auth_backend(settings.run_dir) as instance,
        registered_in(registry, proxy, instance, AUTH_SERVICE),
    ):
        yield proxy


@pytest.fixture
async def http(edge: Edge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.port}", timeout=10) as client:
        yield client


@pytest.fixture
async def channel(edge: Edge) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}") as ch:
        yield ch


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == UNAUTHENTICATED
    assert body["message"]


async def test_protected_rest_route_needs_a_token(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/auth/me")

    assert_unauthenticated(response)
    assert response.json()["message"] == "Jwt is missing"


async def test_valid_token_reaches_the_service_with_the_token(
    http: httpx.AsyncClient, keys: KeyRingFile
) -> None:
    response = await http.get("/v1/auth/me", headers=bearer(sign(keys.ring.signing, name="bob")))

    assert response.status_code == 200, response.text
    assert response.json()["user"]["username"] == "bob", "the service read the forwarded token"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda keys: sign(SigningKey.generate()), id="other-key"),
        pytest.param(lambda keys: sign(keys.ring.signing, ttl=-120), id="expired"),
        pytest.param(lambda keys: unsigned(keys.ring.signing), id="alg-none"),
        pytest.param(lambda keys: sign(keys.ring.signing, issuer="someone"), id="other-issuer"),
        pytest.param(lambda keys: hs256_with_public_key(keys.ring.signing), id="hs256-public-key"),
        pytest.param(lambda keys: sign(keys.ring.signing)[:-4] + "AAAA", id="tampered"),
    ],
)
async def test_bad_tokens_are_refused(
    http: httpx.AsyncClient, keys: KeyRingFile, forge: Callable[[KeyRingFile], str]
) -> None:
    token = forge(keys)

    assert_unauthenticated(await http.get("/v1/auth/me", headers=bearer(token)))


async def test_public_routes_take_no_token(http: httpx.AsyncClient) -> None:
    status = await http.get("/v1/system/status")
    login = await http.post("/v1/auth/login", json={"username": "carol", "password": "x"})

    assert status.status_code == 200, status.text
    assert login.status_code == 200, login.text
    assert login.json()["access_token"] == "for-carol"


async def test_public_route_with_a_bad_token_is_refused(
    http: httpx.AsyncClient, keys: KeyRingFile
) -> None:
    forged = bearer(sign(SigningKey.generate()))
    expired = bearer(sign(keys.ring.signing, ttl=-120))

    assert_unauthenticated(await http.get("/v1/system/status", headers=forged))
    assert_unauthenticated(await http.post("/v1/auth/login", json={}, headers=expired))


async def test_verb_paths_of_protected_methods_need_a_token(
    http: httpx.AsyncClient, keys: KeyRingFile
) -> None:
    body = {"role": "ROLE_ADMIN"}

    assert_unauthenticated(await http.post("/v1/users/alice:setRole", json=body))
    assert_unauthenticated(await http.post("/v1/system/status:refresh", json={}))
    signed_in = await http.post(
        "/v1/users/alice:setRole", json=body, headers=bearer(sign(keys.ring.signing))
    )
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["username"] == "alice"


async def test_unknown_paths_need_a_token_then_are_not_found(
    http: httpx.AsyncClient, keys: KeyRingFile
) -> None:
    assert_unauthenticated(await http.get("/v1/nope"))
    assert_unauthenticated(await http.get("/nope"))
    response = await http.get("/v1/nope", headers=bearer(sign(keys.ring.signing)))
    assert response.status_code == 404
    assert response.json()["code"] == grpc.StatusCode.NOT_FOUND.value[0]


async def test_grpc_protected_method_without_token_is_unauthenticated(
    channel: grpc.aio.Channel, keys: KeyRingFile
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetMe(auth_service_pb2.GetMeRequest(), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED

    token = sign(keys.ring.signing, name="dave")
    metadata = (("authorization", f"Bearer {token}"),)
    me = await stub.GetMe(auth_service_pb2.GetMeRequest(), metadata=metadata, timeout=5)
    assert me.user.username == "dave"


async def test_grpc_public_methods_and_health_take_no_token(
    channel: grpc.aio.Channel, keys: KeyRingFile
) -> None:
    system = system_service_pb2_grpc.SystemServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)

    await system.GetStatus(system_service_pb2.GetStatusRequest(), timeout=5)
    checked = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert checked.status == health_pb2.HealthCheckResponse.SERVING

    forged = (("authorization", f"Bearer {sign(SigningKey.generate())}"),)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await system.GetStatus(system_service_pb2.GetStatusRequest(), metadata=forged, timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_reflection_needs_a_token(channel: grpc.aio.Channel, keys: KeyRingFile) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    # Open the stream without sending: Envoy refuses at the headers, and a message written
    # after that refusal would race it (grpcio then reports INTERNAL instead of the status).
    refused = stub.ServerReflectionInfo()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await refused.read()
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED

    metadata = (("authorization", f"Bearer {sign(keys.ring.signing)}"),)
    (answer,) = [r async for r in stub.ServerReflectionInfo(iter([request]), metadata=metadata)]
    assert AUTH_SERVICE in {s.name for s in answer.list_services_response.service}


async def test_access_log_names_the_verified_caller(
    http: httpx.AsyncClient, edge: Edge, keys: KeyRingFile
) -> None:
    request_id = uuid.uuid4().hex
    headers = {**bearer(sign(keys.ring.signing, name="erin")), "x-request-id": request_id}
    await http.get("/v1/auth/me", headers=headers)

    def logged() -> dict[str, object] | None:
        for line in read_log(edge.access_log).splitlines():
            if request_id in line:
                entry: dict[str, object] = json.loads(line)
                return entry
        return None

    await wait_for(lambda: logged() is not None, timeout=10, message="access log line")
    entry = logged()
    assert entry is not None
    assert entry["user"] == "erin"


async def test_cors_preflight_only_for_allowed_origins(http: httpx.AsyncClient) -> None:
    def preflight(origin: str) -> dict[str, str]:
        return {
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        }

    allowed = await http.options("/v1/auth/login", headers=preflight(ALLOWED_ORIGIN))
    other = await http.options("/v1/auth/login", headers=preflight("http://evil.example"))

    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "authorization" in allowed.headers["access-control-allow-headers"]
    assert not [h for h in other.headers if h.lower().startswith("access-control-")]


async def test_cors_actual_request_exposes_grpc_headers(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/system/status", headers={"origin": ALLOWED_ORIGIN})
    refused = await http.get("/v1/auth/me", headers={"origin": ALLOWED_ORIGIN})

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "x-request-id" in response.headers["access-control-expose-headers"]
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ALLOWED_ORIGIN, "readable 401"


async def test_rest_body_over_the_limit_is_refused(
    http: httpx.AsyncClient, keys: KeyRingFile
) -> None:
    headers = bearer(sign(keys.ring.signing))
    big = {"role": "x" * (MAX_REQUEST_BYTES + 1)}
    small = {"role": "ROLE_OPERATOR"}

    refused = await http.post("/v1/users/alice:setRole", json=big, headers=headers)
    accepted = await http.post("/v1/users/alice:setRole", json=small, headers=headers)

    assert refused.status_code == 413, refused.text
    assert refused.json()["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert accepted.status_code == 200, accepted.text


async def test_key_rotation_reaches_envoy_without_a_restart(
    http: httpx.AsyncClient, keys: KeyRingFile
) -> None:
    # One client throughout: its kept-alive connection must see each change too.
    old = keys.ring.signing
    old_token = sign(old, name="old")

    async def me(token: str) -> int:
        return (await http.get("/v1/auth/me", headers=bearer(token))).status_code

    async def answers(token: str, status: int) -> bool:
        return await me(token) == status

    assert await me(old_token) == 200
    new = keys.rotate()
    new_token = sign(new, name="new")
    await wait_for(lambda: answers(new_token, 200), timeout=10, message="new key accepted")
    assert await me(old_token) == 200, "the old key still verifies"

    keys.retire(old)
    await wait_for(lambda: answers(old_token, 401), timeout=10, message="old key refused")
    assert await me(new_token) == 200


async def test_no_private_key_reaches_envoy_or_the_pushed_resources(
    http: httpx.AsyncClient, edge: Edge, control_plane: Gateway, keys: KeyRingFile
) -> None:
    signer = keys.rotate()

    async def config_dump() -> str:
        async with edge.admin() as admin:
            return (await admin.get("/config_dump?include_eds")).text

    async def envoy_has_rotated_keys() -> bool:
        return signer.kid in await config_dump()

    await wait_for(envoy_has_rotated_keys, timeout=10, message="rotated keys in Envoy")
    dump = await config_dump()
    in_envoy = [jwk for jwks in _local_jwks(json.loads(dump)) for jwk in json.loads(jwks)["keys"]]
    pushed = _pushed_jwks(control_plane)

    public_fields = {"kty", "crv", "alg", "kid", "x"}
    assert in_envoy, "the dump shows jwt_authn's keys"
    assert [set(jwk) for jwk in in_envoy] == [public_fields] * len(in_envoy)
    assert [set(jwk) for jwk in pushed] == [public_fields] * len(keys.ring.keys)
    assert {jwk["kty"] for jwk in in_envoy + pushed} == {"OKP"}, "no symmetric (oct) key"
    for key in keys.ring.keys:
        private = key.private_jwk()
        assert private["x"] in dump, "Envoy holds the public key"
        assert private["d"] not in dump, "Envoy never holds the private key"
        assert private["d"] not in json.dumps(pushed)


def _local_jwks(node: object) -> list[str]:
    """Every ``local_jwks`` inline JWKS anywhere in a config dump."""
    if isinstance(node, dict):
        found = [node["local_jwks"]["inline_string"]] if "local_jwks" in node else []
        return found + [j for value in node.values() for j in _local_jwks(value)]
    if isinstance(node, list):
        return [j for value in node for j in _local_jwks(value)]
    return []


def _pushed_jwks(gateway: Gateway) -> list[dict[str, str]]:
    """The JWKs in the jwt_authn configuration the gateway serves to Envoy over ECDS."""
    snapshot = gateway.cache.snapshot
    assert snapshot is not None
    (resource,) = snapshot.extension_configs.messages.values()
    assert resource.typed_config is not None
    config = resource.typed_config.unpack()
    assert isinstance(config, JwtAuthentication)
    local = config.providers[JWT_PROVIDER].local_jwks
    assert local is not None
    keys: list[dict[str, str]] = json.loads(local.inline_string)["keys"]
    return keys
