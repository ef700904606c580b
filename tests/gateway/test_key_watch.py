from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sutazai.gateway.key_watch import PublicKeysWatch
from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.files import replace_file
from tests.gateway.tokens import KeyRingFile


def test_missing_keys_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"jwks\.json"):
        PublicKeysWatch(tmp_path / "jwks.json").load()


def test_rotation_and_retirement_are_seen(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    watch = PublicKeysWatch(keys.jwks_path)
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


def test_rewrite_with_the_same_keys_is_no_change(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    watch = PublicKeysWatch(keys.jwks_path)
    watch.load()

    replace_file(keys.jwks_path, keys.public.jwks(), mode=0o644)

    assert watch.poll() is None


def test_a_vanished_or_unreadable_file_keeps_the_last_keys(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    watch = PublicKeysWatch(keys.jwks_path)
    loaded = watch.load()

    keys.jwks_path.write_text("{not json", encoding="utf-8")
    assert watch.poll() is None
    keys.jwks_path.unlink()
    assert watch.poll() is None
    replace_file(keys.jwks_path, loaded.jwks(), mode=0o644)
    assert watch.poll() is None, "the last good keys stayed in force: nothing changed"

    keys.rotate()
    os.chmod(keys.jwks_path, 0o666)  # noqa: S103 - the mistake under test
    assert watch.poll() is None, "a key file others may write is refused"
    os.chmod(keys.jwks_path, 0o644)
    polled = watch.poll()
    assert polled is not None, "fixing the mode is noticed"
    assert polled.jwks() == keys.public.jwks()


def test_a_private_key_in_the_public_file_is_refused(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    watch = PublicKeysWatch(keys.jwks_path)
    watch.load()

    leaked = {"keys": [keys.ring.signing.private_jwk()]}
    replace_file(keys.jwks_path, json.dumps(leaked), mode=0o644)

    assert watch.poll() is None, "never passed on to Envoy"
    with pytest.raises(ConfigurationError, match="private key"):
        PublicKeysWatch(keys.jwks_path).load()
