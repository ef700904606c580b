"""The private ring and the public JWKS on disk: modes, rotation rules, the lock, the upgrade."""

from __future__ import annotations

import json
import multiprocessing
import os
from datetime import UTC, datetime
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sutazai.runtime import keys as keys_module
from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.key_files import (
    LegacyKeyRingError,
    edit_key_ring,
    ensure_key_ring,
    load_key_ring,
    load_public_keys,
)
from sutazai.runtime.keys import KeyRing, SigningKey

ROTATIONS_PER_PROCESS = 15
PROCESSES = 4


def _files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "jwt_keys.json", tmp_path / "jwks.json"


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_first_start_writes_a_private_ring_and_a_public_jwks(tmp_path: Path) -> None:
    keys_file, jwks_file = _files(tmp_path)

    ring = ensure_key_ring(keys_file, jwks_file)

    assert _mode(keys_file) == 0o600
    assert _mode(jwks_file) == 0o644
    (private,) = json.loads(keys_file.read_text())["keys"]
    (public,) = json.loads(jwks_file.read_text())["keys"]
    assert private["d"] == ring.signing.private_jwk()["d"]
    assert public == {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "kid": ring.signing.kid,
        "x": private["x"],
    }
    assert load_public_keys(jwks_file).jwks() == ring.public.jwks()
    assert ensure_key_ring(keys_file, jwks_file).signing.kid == ring.signing.kid, "kept"


def test_a_lost_public_file_is_rewritten_from_the_private_ring(tmp_path: Path) -> None:
    keys_file, jwks_file = _files(tmp_path)
    ring = ensure_key_ring(keys_file, jwks_file)
    jwks_file.unlink()

    ensure_key_ring(keys_file, jwks_file)

    assert load_public_keys(jwks_file).jwks() == ring.public.jwks()


def test_retiring_the_signing_key_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    keys_file, jwks_file = _files(tmp_path)
    ring = ensure_key_ring(keys_file, jwks_file)
    rotated = edit_key_ring(keys_file, jwks_file, lambda r: r.rotated())
    before = (keys_file.read_bytes(), jwks_file.read_bytes())

    with pytest.raises(ConfigurationError, match="rotate' first"):
        edit_key_ring(keys_file, jwks_file, lambda r: r.retired(rotated.signing.kid))
    with pytest.raises(ConfigurationError, match="no signing key 'nope'"):
        edit_key_ring(keys_file, jwks_file, lambda r: r.retired("nope"))

    assert (keys_file.read_bytes(), jwks_file.read_bytes()) == before
    retired = edit_key_ring(keys_file, jwks_file, lambda r: r.retired(ring.signing.kid))
    assert [k.kid for k in retired.keys] == [rotated.signing.kid]
    assert load_public_keys(jwks_file).jwks() == retired.public.jwks()
    with pytest.raises(ConfigurationError, match="current signing key"):
        retired.retired(rotated.signing.kid)  # the last key is the signing key too


def _rotate_repeatedly(keys_file: str, jwks_file: str, start: Event) -> None:
    start.wait()
    for _ in range(ROTATIONS_PER_PROCESS):
        edit_key_ring(Path(keys_file), Path(jwks_file), lambda r: r.rotated())


def test_concurrent_rotations_in_several_processes_lose_no_key(tmp_path: Path) -> None:
    keys_file, jwks_file = _files(tmp_path)
    first = ensure_key_ring(keys_file, jwks_file)
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(target=_rotate_repeatedly, args=(str(keys_file), str(jwks_file), start))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * PROCESSES

    ring = load_key_ring(keys_file)
    kids = [k.kid for k in ring.keys]
    assert len(kids) == 1 + PROCESSES * ROTATIONS_PER_PROCESS, "every rotation kept"
    assert len(set(kids)) == len(kids)
    assert kids[0] == first.signing.kid
    assert load_public_keys(jwks_file).jwks() == ring.public.jwks(), "both files agree"
    assert _mode(keys_file) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "no temp file left"


def test_an_hs256_ring_is_replaced_with_one_log_line(tmp_path: Path) -> None:
    keys_file, jwks_file = _files(tmp_path)
    legacy = {"keys": [{"kid": "old", "secret": "c2VjcmV0", "created_at": "2026-01-01T00:00:00"}]}
    fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(legacy, handle)
    with pytest.raises(LegacyKeyRingError, match="sutazai up"):
        load_key_ring(keys_file)

    with capture_logs() as logs:
        ring = ensure_key_ring(keys_file, jwks_file)

    assert [(e["event"], e["log_level"]) for e in logs] == [("keys.hs256_ring_replaced", "warning")]
    assert "HS256" in logs[0]["effect"]
    assert "secret" not in keys_file.read_text()
    assert [k.kid for k in load_key_ring(keys_file).keys] == [ring.signing.kid] != ["old"]
    assert load_public_keys(jwks_file).jwks() == ring.public.jwks()
    assert _mode(keys_file) == 0o600


def test_a_private_ring_readable_by_others_is_refused(tmp_path: Path) -> None:
    keys_file, jwks_file = _files(tmp_path)
    ensure_key_ring(keys_file, jwks_file)
    os.chmod(keys_file, 0o640)

    with pytest.raises(ConfigurationError, match="must be 0600"):
        edit_key_ring(keys_file, jwks_file, lambda r: r.rotated())


def test_a_rotation_never_reuses_a_key_id(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    draws = iter(["same", "same", "other"])
    monkeypatch.setattr(keys_module.secrets, "token_hex", lambda _: next(draws))
    ring = KeyRing((SigningKey.generate(now),))

    rotated = ring.rotated(now)

    assert [k.kid for k in rotated.keys] == ["k20261130120000-same", "k20261130120000-other"]
