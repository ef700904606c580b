"""One key-file watcher for the gateway, every verifier and the signer: one failure behaviour."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.files import replace_file
from sutazai.runtime.key_watch import KeyFileWatch
from sutazai.runtime.roles import Role
from sutazai.runtime.tokens import TokenIssuer, TokenVerifier
from tests.gateway.tokens import KeyRingFile


def test_missing_keys_fail_clearly_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"jwks\.json"):
        KeyFileWatch.public_keys(tmp_path / "jwks.json").load()
    with pytest.raises(ConfigurationError, match=r"jwt_keys\.json"):
        KeyFileWatch.key_ring(tmp_path / "jwt_keys.json")()


def test_rotation_and_retirement_are_seen(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    watch = KeyFileWatch.public_keys(keys.jwks_path)
    first = watch.load()
    assert watch.poll() is None, "unchanged"

    new = keys.rotate()
    rotated = watch.poll()
    assert rotated is not None
    assert [k.kid for k in rotated.keys] == [first.keys[0].kid, new.kid]

    keys.retire(keys.ring.keys[0])
    retired = watch.poll()
    assert retired is not None
    assert [k.kid for k in retired.keys] == [new.kid]
    assert watch() is retired


def test_rewrite_with_the_same_keys_is_no_change(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    watch = KeyFileWatch.public_keys(keys.jwks_path)
    loaded = watch.load()

    replace_file(keys.jwks_path, keys.public.jwks(), mode=0o644)

    assert watch.poll() is None
    assert watch() is loaded, "verifiers keep their caches"


def test_a_vanished_or_unreadable_file_keeps_the_last_keys(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    watch = KeyFileWatch.public_keys(keys.jwks_path)
    loaded = watch.load()

    keys.jwks_path.write_text("{not json", encoding="utf-8")
    assert watch.poll() is None
    keys.jwks_path.unlink()
    assert watch.poll() is None
    assert watch() is loaded

    keys.rotate()
    os.chmod(keys.jwks_path, 0o666)  # noqa: S103 - the mistake under test
    assert watch.poll() is None, "a key file others may write is refused"
    os.chmod(keys.jwks_path, 0o644)
    polled = watch.poll()
    assert polled is not None, "fixing the mode is noticed"
    assert polled.jwks() == keys.public.jwks()


def test_a_failure_is_logged_once_per_change_of_the_file(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    watch = KeyFileWatch.public_keys(keys.jwks_path)
    watch.load()

    with capture_logs() as logs:
        keys.jwks_path.write_text("{not json", encoding="utf-8")
        for _ in range(3):
            watch()
        keys.jwks_path.write_text('{"keys": []}', encoding="utf-8")
        for _ in range(3):
            watch()

    assert [entry["event"] for entry in logs] == ["keys.refused", "keys.refused"]


def test_a_private_key_in_the_public_file_is_refused(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    watch = KeyFileWatch.public_keys(keys.jwks_path)
    watch.load()

    leaked = {"keys": [keys.ring.signing.private_jwk()]}
    replace_file(keys.jwks_path, json.dumps(leaked), mode=0o644)

    assert watch.poll() is None, "never passed on to Envoy"
    with pytest.raises(ConfigurationError, match="private key"):
        KeyFileWatch.public_keys(keys.jwks_path).load()


def test_signer_and_verifier_keep_working_on_a_broken_file(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    ring = KeyFileWatch.key_ring(keys.path)
    public = KeyFileWatch.public_keys(keys.jwks_path)
    ring.load()
    public.load()
    issuer = TokenIssuer(ring, issuer="sutazai", ttl=timedelta(minutes=5))
    verifier = TokenVerifier(public, issuer="sutazai")

    keys.path.write_text("{not json", encoding="utf-8")
    keys.jwks_path.unlink()

    token = issuer.issue(user_id="u1", username="ann", role=Role.USER)
    assert verifier.verify(token.token).username == "ann"
