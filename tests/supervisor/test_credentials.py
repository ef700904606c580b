"""Generated credentials: the secrets file, NATS principals and which one each process is."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sutazai.ops.supervisor.components.gateway import gateway_component
from sutazai.ops.supervisor.components.services import service_components
from sutazai.ops.supervisor.credentials import (
    ensure_credentials,
    write_principal_credentials,
)
from sutazai.ops.supervisor.environment import (
    CREDENTIALS_FILE,
    NATS_USER,
    PRINCIPAL,
    child_environment,
    principal_environment,
    settings_environment,
)
from sutazai.ops.supervisor.errors import SupervisorError
from sutazai.ops.supervisor.nats_auth import Policy, Principal, mesh_principals
from sutazai.runtime.credentials import credentials_path, load_credentials
from sutazai.runtime.deployment import load_agents, load_catalog
from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.secrets import ensure_secrets, load_secrets, secrets_path
from sutazai.runtime.settings import MeshSettings, NatsSettings


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_secrets_are_completed_never_changed(tmp_path: Path) -> None:
    first = ensure_secrets(tmp_path, nats_principals=["admin"], services=["auth"])
    assert _mode(secrets_path(tmp_path)) == 0o600
    assert list(first.nats_passwords) == ["admin"]
    second = ensure_secrets(tmp_path, nats_principals=["admin", "system"], services=["system"])
    assert second.postgres_password == first.postgres_password
    assert second.postgres_passwords["auth"] == first.postgres_passwords["auth"]
    assert second.redis_passwords["auth"] == first.redis_passwords["auth"]
    assert set(second.postgres_passwords) == set(second.redis_passwords) == {"auth", "system"}
    assert second.postgres_passwords["system"] != second.redis_passwords["system"]
    assert second.nats_password("admin") == first.nats_password("admin")
    assert second.nats_password("system") not in {first.nats_password("admin"), ""}
    assert load_secrets(tmp_path) == second
    before = secrets_path(tmp_path).read_bytes()
    assert ensure_secrets(tmp_path, nats_principals=["system"]) == second
    assert secrets_path(tmp_path).read_bytes() == before
    with pytest.raises(ConfigurationError, match="no NATS password for principal 'nobody'"):
        second.nats_password("nobody")


def _write(path: Path, document: object, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle)
    os.chmod(path, mode)


def test_a_malformed_or_exposed_secrets_file_is_refused_not_replaced(tmp_path: Path) -> None:
    path = secrets_path(tmp_path)
    _write(path, {"postgres_password": "p", "redis_password": "r", "nats_passwords": ["x"]})
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match="nats_passwords must map"):
        ensure_secrets(tmp_path, nats_principals=["admin"])
    assert path.read_bytes() == before
    _write(path, {"postgres_password": "p"}, mode=0o640)
    with pytest.raises(ConfigurationError, match="must be 0600"):
        ensure_secrets(tmp_path)
    _write(path, {"postgres_password": "p"})
    with pytest.raises(ConfigurationError, match="lacks redis_password"):
        load_secrets(tmp_path)


def test_ensure_credentials_covers_every_service_agent_and_the_key_ring(tmp_path: Path) -> None:
    settings = MeshSettings(state_dir=tmp_path)
    secrets = ensure_credentials(settings)
    expected = {
        "admin",
        "gateway",
        *(entry.name for entry in load_catalog()),
        *(agent.name for agent in load_agents()),
    }
    assert set(secrets.nats_passwords) == expected
    assert _mode(settings.keys_file) == 0o600
    assert _mode(settings.jwks_file) == 0o644
    public = json.loads(settings.jwks_file.read_text(encoding="utf-8"))["keys"]
    assert [jwk["kty"] for jwk in public] == ["OKP"]
    assert not [jwk for jwk in public if "d" in jwk], "the public file holds no private key"


def test_a_principal_gone_from_the_catalog_loses_its_secrets_and_credentials(
    tmp_path: Path,
) -> None:
    settings = MeshSettings(state_dir=tmp_path)
    before = ensure_credentials(settings, services=["system", "retired"], agents=[])
    retired_file = write_principal_credentials(settings, "retired")
    system_file = write_principal_credentials(settings, "system")
    # A caller naming part of the mesh (the NATS component) keeps everything.
    assert ensure_secrets(tmp_path, nats_principals=["admin"]) == before

    after = ensure_credentials(settings, services=["system"], agents=[])
    assert "retired" not in after.nats_passwords
    assert "retired" not in after.postgres_passwords
    assert "retired" not in after.redis_passwords
    assert before.postgres_passwords["retired"] not in secrets_path(tmp_path).read_text()
    assert after.postgres_passwords["system"] == before.postgres_passwords["system"]
    assert after.nats_password("admin") == before.nats_password("admin")
    assert not retired_file.exists()
    assert system_file.exists()


def test_principal_names_are_subject_tokens_and_not_reserved() -> None:
    names = [p.name for p in mesh_principals(["system", "auth", "system"])]
    assert names == ["admin", "gateway", "system", "auth"]
    for bad in ("gateway", "admin", "a.b", "*", "Upper", "", "has space"):
        with pytest.raises(SupervisorError):
            mesh_principals([bad])


def test_permissions_confine_each_service_to_its_own_registry_keys() -> None:
    policy = Policy.packaged()
    alpha = policy.permissions(Principal("alpha", "service"), bucket="reg", revocations="rev")
    assert "$KV.reg.alpha.>" in alpha.publish
    assert not [s for s in alpha.publish if s.startswith("$KV.") and s != "$KV.reg.alpha.>"]
    assert alpha.subscribe == ("_INBOX.alpha.>", "sutazai.runtime.reclaim")
    assert "$JS.API.STREAM.INFO.KV_reg" in alpha.publish
    assert not [s for s in alpha.publish if ".STREAM.CREATE." in s or ".DELETE." in s]

    gateway = policy.permissions(Principal("gateway", "gateway"), bucket="reg", revocations="rev")
    assert not [s for s in gateway.publish if s.startswith("$KV.")]
    assert gateway.subscribe == ("_INBOX.gateway.>",)
    admin = policy.permissions(Principal("admin", "admin"), bucket="reg", revocations="rev")
    assert admin.publish == (">",)


def test_only_the_auth_service_writes_revocations_and_everyone_reads_them() -> None:
    policy = Policy.packaged()
    auth = policy.permissions(Principal("auth", "service"), bucket="reg", revocations="rev")
    assert "$KV.rev.>" in auth.publish
    for name, role in (("system", "service"), ("gateway", "gateway")):
        other = policy.permissions(Principal(name, role), bucket="reg", revocations="rev")
        assert not [s for s in other.publish if s.startswith("$KV.rev")], name
        assert "$JS.API.CONSUMER.CREATE.KV_rev" in other.publish, name
        assert "$JS.API.STREAM.INFO.KV_rev" in other.publish, name


def test_children_get_their_principal_and_the_path_of_their_credentials(tmp_path: Path) -> None:
    embedded = MeshSettings(state_dir=tmp_path)
    assert embedded.nats.user == "admin"
    gateway = gateway_component(embedded, {"SUTAZAI_X": "kept"})
    assert gateway.launch is not None
    assert gateway.launch.env[NATS_USER] == gateway.launch.env[PRINCIPAL] == "gateway"
    assert gateway.launch.env[CREDENTIALS_FILE] == str(
        credentials_path(tmp_path, "gateway").resolve()
    )
    assert gateway.launch.env["SUTAZAI_X"] == "kept"
    services = service_components(embedded, load_catalog(), {})
    assert all(s.launch is not None and s.launch.env[NATS_USER] == s.name for s in services)
    assert all(
        s.launch is not None
        and s.launch.env[CREDENTIALS_FILE] == str(credentials_path(tmp_path, s.name).resolve())
        for s in services
    )

    external = MeshSettings(
        state_dir=tmp_path, nats=NatsSettings(url="nats://nats.example:4222", user="mesh")
    )
    env = principal_environment(external, {}, "gateway", tmp_path / "gateway.json")
    assert (env[NATS_USER], env[PRINCIPAL]) == ("mesh", "gateway")
    assert external.as_principal("system").nats.user == "mesh"


def test_credentials_follow_the_principal(tmp_path: Path) -> None:
    settings = MeshSettings(state_dir=tmp_path)
    secrets = ensure_credentials(settings, services=["system"])
    system = settings.as_principal("system")
    assert system.nats_credentials == ("system", secrets.nats_password("system"))
    assert system.nats.inbox_prefix == "_INBOX.system"
    assert settings.nats_credentials == ("admin", secrets.nats_password("admin"))
    assert f"sutazai_system:{secrets.postgres_passwords['system']}@" in system.postgres_dsn
    assert f"sutazai_system:{secrets.redis_passwords['system']}@" in system.redis_url
    # The admin is Redis's default user and has no PostgreSQL role; the gateway has neither.
    assert f"://:{secrets.redis_password}@" in settings.redis_url
    with pytest.raises(ConfigurationError, match="'admin' principal has no PostgreSQL role"):
        _ = settings.postgres_dsn
    gateway = settings.as_principal("gateway")
    with pytest.raises(ConfigurationError, match="no PostgreSQL role"):
        _ = gateway.postgres_dsn
    with pytest.raises(ConfigurationError, match="no Redis user"):
        _ = gateway.redis_url

    external = MeshSettings(
        state_dir=tmp_path,
        nats=NatsSettings(url="nats://nats.example:4222", user="a.b", password="pw"),
    )
    assert external.nats_credentials == ("a.b", "pw")
    assert external.nats.inbox_prefix == "_INBOX"


def test_each_credentials_file_holds_its_principal_only_and_is_private(tmp_path: Path) -> None:
    settings = MeshSettings(state_dir=tmp_path)
    secrets = ensure_credentials(settings, services=["system", "auth"])
    system_file = write_principal_credentials(settings, "system")
    gateway_file = write_principal_credentials(settings, "gateway")
    assert _mode(system_file) == _mode(gateway_file) == 0o600
    assert _mode(system_file.parent) == 0o700

    text = system_file.read_text()
    assert secrets.nats_password("system") in text
    assert secrets.postgres_passwords["system"] in text
    assert secrets.redis_passwords["system"] in text
    others = [
        secrets.postgres_password,
        secrets.redis_password,
        secrets.nats_password("admin"),
        secrets.nats_password("gateway"),
        secrets.nats_password("auth"),
        secrets.postgres_passwords["auth"],
        secrets.redis_passwords["auth"],
    ]
    assert not [password for password in others if password in text]
    gateway = load_credentials(gateway_file)
    assert gateway.postgres_dsn is None
    assert gateway.redis_url is None
    assert gateway.nats_password is not None
    assert gateway.nats_password.get_secret_value() == secrets.nats_password("gateway")

    # A child with the file uses it, never secrets.json (which it could not read elsewhere).
    child = MeshSettings(
        state_dir=tmp_path / "elsewhere", principal="system", credentials_file=system_file
    )
    assert child.as_principal("system").postgres_dsn == settings.as_principal("system").postgres_dsn
    assert child.nats_credentials == ("system", secrets.nats_password("system"))
    with pytest.raises(ConfigurationError, match="credentials of 'system', not of 'auth'"):
        _ = child.as_principal("auth").postgres_dsn

    os.chmod(system_file, 0o640)
    with pytest.raises(ConfigurationError, match="must be 0600"):
        load_credentials(system_file)
    os.chmod(system_file, 0o604)
    with pytest.raises(ConfigurationError, match="must be 0600"):
        load_credentials(system_file)


def test_no_secret_reaches_a_child_through_its_environment(tmp_path: Path) -> None:
    settings = MeshSettings(
        state_dir=tmp_path,
        postgres={"dsn": "postgresql://u:pg-s3cr3t@db.example/sutazai"},
        redis={"url": "redis://:redis-s3cr3t@cache.example:6379/0"},
        nats={"url": "nats://nats.example:4222", "user": "mesh", "password": "nats-s3cr3t"},
    )
    inherited = {
        "PATH": "/usr/bin",
        "SUTAZAI_POSTGRES__DSN": "postgresql://u:pg-s3cr3t@db.example/sutazai",
        "SUTAZAI_REDIS__URL": "redis://:redis-s3cr3t@cache.example:6379/0",
        "SUTAZAI_NATS__PASSWORD": "nats-s3cr3t",
        "SUTAZAI_CREDENTIALS_FILE": "/somewhere/admin.json",
    }
    env = child_environment(settings, inherited)
    assert env["PATH"] == "/usr/bin"
    assert not [v for v in env.values() if "s3cr3t" in v]
    assert CREDENTIALS_FILE not in env
    assert not [v for v in settings_environment(settings).values() if "s3cr3t" in v]
    # The external credentials reach a service through its own file instead.
    written = write_principal_credentials(settings, "system").read_text()
    assert "pg-s3cr3t" in written
    assert "redis-s3cr3t" in written
    assert "nats-s3cr3t" in written
    assert "pg-s3cr3t" not in write_principal_credentials(settings, "gateway").read_text()
