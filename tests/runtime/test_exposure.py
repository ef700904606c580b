"""Which edge configurations may start: loopback, or TLS with a usable certificate and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sutazai.ops.cli.certificates import issue_edge_certificate
from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.exposure import is_loopback, require_safe_edge
from sutazai.runtime.settings import EdgeSettings, MeshSettings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_tls(host: str) -> None:
    assert is_loopback(host)
    require_safe_edge(MeshSettings(host=host))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "edge.example"])
def test_off_loopback_without_tls_is_refused(host: str) -> None:
    with pytest.raises(ConfigurationError, match="SUTAZAI_EDGE__TLS_CERT_FILE"):
        require_safe_edge(MeshSettings(host=host))


def test_off_loopback_with_tls_starts(tmp_path: Path) -> None:
    issued = issue_edge_certificate(tmp_path, ["edge.example"])
    settings = MeshSettings(
        host="0.0.0.0",
        edge=EdgeSettings(tls_cert_file=issued.cert, tls_key_file=issued.key),
    )

    require_safe_edge(settings)

    assert settings.edge_tls
    assert settings.internal_host == "127.0.0.1"
    assert "127.0.0.1" in settings.nats_servers[0]


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    issued = issue_edge_certificate(tmp_path, [])
    issued.key.chmod(0o644)
    settings = MeshSettings(edge=EdgeSettings(tls_cert_file=issued.cert, tls_key_file=issued.key))

    with pytest.raises(ConfigurationError, match="chmod 600"):
        require_safe_edge(settings)


def test_a_missing_certificate_is_refused(tmp_path: Path) -> None:
    issued = issue_edge_certificate(tmp_path, [])
    settings = MeshSettings(
        edge=EdgeSettings(tls_cert_file=tmp_path / "nope.pem", tls_key_file=issued.key)
    )

    with pytest.raises(ConfigurationError, match="SUTAZAI_EDGE__TLS_CERT_FILE"):
        require_safe_edge(settings)


def test_a_certificate_needs_its_key() -> None:
    with pytest.raises(ValidationError, match="set both"):
        EdgeSettings(tls_cert_file=Path("/tmp/edge.pem"))  # noqa: S108
