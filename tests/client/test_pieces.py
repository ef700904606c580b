"""The client's pieces that need no server: token files, errors, backoff, connection state."""

from __future__ import annotations

import asyncio
import json
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest

from sutazai.client import (
    CallFailed,
    ConnectionState,
    FileTokenStore,
    MemoryTokenStore,
    MeshClient,
    MeshUnavailable,
    ReconnectPolicy,
    SessionEnded,
    SessionTokens,
    TokenFileError,
)
from sutazai.client.statuses import translate
from sutazai.client.streams import ConnectionWatch
from sutazai.runtime.faults import RpcStatusError, invalid_argument
from sutazai.runtime.settings import EnvoySettings, MeshSettings
from tests.harness import free_ports

TARGET = "127.0.0.1:10005"


def tokens() -> SessionTokens:
    return SessionTokens(
        "access-secret", "refresh-secret", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    )


def test_the_token_file_keeps_its_format_and_is_private(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "state")
    assert store.load() is None
    store.save(tokens())

    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.path.name == "cli_token.json"
    assert json.loads(store.path.read_text()) == {
        "access_token": "access-secret",
        "refresh_token": "refresh-secret",
        "expires_at": "2030-01-02T03:04:05+00:00",
    }
    assert store.load() == tokens()
    store.clear()
    assert store.load() is None
    store.clear()  # nothing to clear is fine


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path)
    store.save(tokens())
    store.path.chmod(0o640)
    with pytest.raises(TokenFileError, match="must be 0600"):
        store.load()


@pytest.mark.parametrize("content", ["{", "[]", '{"access_token": "a"}', "x" * 70_000])
def test_a_malformed_token_file_is_refused_without_echoing_it(tmp_path: Path, content: str) -> None:
    store = FileTokenStore(tmp_path)
    store.path.write_text(content)
    store.path.chmod(0o600)
    with pytest.raises(SessionEnded) as refused:
        store.load()
    assert isinstance(refused.value, TokenFileError)
    assert content[:20] not in str(refused.value)
    assert str(store.path) in str(refused.value)


def test_tokens_never_show_in_their_repr() -> None:
    assert "secret" not in repr(tokens())


def _error(
    code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, bytes | str], ...] = ()
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details)


def test_bad_request_details_become_violations() -> None:
    fault: RpcStatusError = invalid_argument({"username": "too short", "role": "unknown"})
    status = fault.to_status()
    error = _error(status.code, status.details, tuple(status.trailing_metadata))

    failed = translate(error, TARGET)

    assert isinstance(failed, CallFailed)
    assert failed.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failed.violations == {"username": "too short", "role": "unknown"}


def test_details_a_proxy_rewrote_are_still_read() -> None:
    status = invalid_argument({"page_size": "1 to 200"}).to_status()
    error = _error(status.code, "rewritten by a proxy", tuple(status.trailing_metadata))
    failed = translate(error, TARGET)
    assert isinstance(failed, CallFailed)
    assert failed.violations == {"page_size": "1 to 200"}


def test_garbage_details_are_ignored() -> None:
    error = _error(
        grpc.StatusCode.FAILED_PRECONDITION, "no", (("grpc-status-details-bin", b"\xff\x00"),)
    )
    failed = translate(error, TARGET)
    assert isinstance(failed, CallFailed)
    assert failed.violations == {}


def test_statuses_map_to_the_tree() -> None:
    unreachable = translate(
        _error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"), TARGET
    )
    assert isinstance(unreachable, MeshUnavailable)
    assert str(unreachable).startswith(f"Envoy unreachable at {TARGET}")
    assert isinstance(translate(_error(grpc.StatusCode.UNAUTHENTICATED, "x"), TARGET), SessionEnded)
    denied = translate(_error(grpc.StatusCode.PERMISSION_DENIED, "admins only"), TARGET)
    assert isinstance(denied, CallFailed)
    assert (denied.code, denied.details, denied.violations) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "admins only",
        {},
    )


def test_backoff_doubles_to_its_ceiling_with_jitter() -> None:
    policy = ReconnectPolicy(initial=0.5, maximum=10.0, jitter=0.2)
    for attempt, base in [(0, 0.5), (1, 1.0), (2, 2.0), (4, 8.0), (5, 10.0), (60, 10.0)]:
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(base * 0.8 <= d <= base * 1.2 for d in delays), (attempt, delays)
    assert ReconnectPolicy(initial=0.0, jitter=0.0).delay(0) > 0


def test_connected_is_announced_once_every_stream_is_back() -> None:
    watch = ConnectionWatch()
    states: list[ConnectionState] = []
    unsubscribe = watch.subscribe(states.append)
    first, second = object(), object()

    watch.regained(first)
    assert states == []  # never lost: nothing to announce
    watch.lost(first, "gone", 0.5)
    watch.lost(second, "gone too", 0.6)
    watch.regained(first)
    assert [s.connected for s in states] == [False, False]
    watch.regained(second)
    assert states[-1] == ConnectionState(connected=True)

    watch.lost(None, "a unary call failed")
    watch.regained(None)
    assert [s.connected for s in states] == [False, False, True, False, True]

    watch.lost(first, "again", 1.0)
    watch.forget(first)  # the stream was closed while down
    watch.regained(None)
    assert states[-1] == ConnectionState(connected=True)

    unsubscribe()
    watch.lost(None, "unheard")
    assert len(states) == 7


def test_expiry_is_kept_in_utc(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path)
    india = datetime.now(timezone(timedelta(hours=5, minutes=30))).replace(microsecond=0)
    store.save(SessionTokens("a", "r", india))
    loaded = store.load()
    assert loaded is not None
    assert loaded.expires_at == india
    assert loaded.expires_at.utcoffset() == timedelta(0)


def test_a_client_built_before_its_event_loop_runs_works_in_it(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    client = MeshClient(
        MeshSettings(state_dir=tmp_path, envoy=EnvoySettings(port=port)),
        tokens=MemoryTokenStore(),
    )

    async def ask() -> None:
        async with client:
            await client.get_status()

    with pytest.raises(MeshUnavailable, match=f"Envoy unreachable at 127.0.0.1:{port}"):
        asyncio.run(ask())
