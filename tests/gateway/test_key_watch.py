from __future__ import annotations

import os
from pathlib import Path

import pytest

from sutazai.gateway.key_watch import KeyRingWatch
from sutazai.services.runtime.errors import ConfigurationError
from sutazai.services.runtime.keys import save_key_ring
from tests.gateway.tokens import KeyRingFile


def test_missing_ring_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"jwt_keys\.json"):
        KeyRingWatch(tmp_path / "jwt_keys.json").load()


def test_rotation_and_retirement_are_seen(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    watch = KeyRingWatch(keys.path)
    first = watch.load()
    assert watch.poll() is None, "unchanged"

    new = keys.rotate()
    rotated = watch.poll()
    assert rotated is not None
    assert [k.kid for k in rotated.keys] == [first.signing.kid, new.kid]

    keys.retire(first.signing)
    retired = watch.poll()
    assert retired is not None
    assert [k.kid for k in retired.keys] == [new.kid]
    assert watch.ring is retired


def test_rewrite_with_the_same_keys_is_no_change(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    watch = KeyRingWatch(keys.path)
    watch.load()

    save_key_ring(keys.path, keys.ring)

    assert watch.poll() is None


def test_a_vanished_or_unreadable_file_keeps_the_last_keys(tmp_path: Path) -> None:
    keys = KeyRingFile(tmp_path / "jwt_keys.json")
    watch = KeyRingWatch(keys.path)
    ring = watch.load()

    keys.path.write_text("{not json", encoding="utf-8")
    assert watch.poll() is None
    keys.path.unlink()
    assert watch.poll() is None
    assert watch.ring is ring

    keys.rotate()
    os.chmod(keys.path, 0o644)
    assert watch.poll() is None, "a ring readable by others is refused"
    os.chmod(keys.path, 0o600)
    assert watch.poll() == keys.ring, "fixing the mode is noticed"
