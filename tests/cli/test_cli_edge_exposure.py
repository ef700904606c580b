"""`sutazai certs`, and `sutazai up` refusing to expose a plaintext edge off loopback."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from tests.harness.cli import run_cli

pytestmark = pytest.mark.integration


async def test_certs_makes_a_ca_and_an_edge_certificate(tmp_path: Path) -> None:
    out = tmp_path / "tls"

    run = await run_cli(
        "certs",
        "--out",
        str(out),
        "--host",
        "edge.example",
        "--host",
        "192.0.2.10",
        env={"SUTAZAI_STATE_DIR": str(tmp_path)},
    )

    assert run.code == 0, run.stderr
    assert f"SUTAZAI_EDGE__TLS_CERT_FILE={out / 'edge.pem'}" in run.stdout
    assert f"SUTAZAI_EDGE__TLS_KEY_FILE={out / 'edge-key.pem'}" in run.stdout
    for key in ("ca-key.pem", "edge-key.pem"):
        assert stat.S_IMODE((out / key).stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((out / "edge.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"edge.example", "localhost"}
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} == {
        "192.0.2.10",
        "127.0.0.1",
        "::1",
    }


async def test_certs_again_keeps_the_ca(tmp_path: Path) -> None:
    env = {"SUTAZAI_STATE_DIR": str(tmp_path)}
    assert (await run_cli("certs", env=env)).code == 0
    ca = (tmp_path / "tls" / "ca.pem").read_bytes()
    first = (tmp_path / "tls" / "edge.pem").read_bytes()

    assert (await run_cli("certs", "--host", "other.example", env=env)).code == 0

    assert (tmp_path / "tls" / "ca.pem").read_bytes() == ca
    renewed = x509.load_pem_x509_certificate((tmp_path / "tls" / "edge.pem").read_bytes())
    assert (tmp_path / "tls" / "edge.pem").read_bytes() != first
    renewed.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))


async def test_up_off_loopback_without_tls_refuses_and_says_what_to_set(tmp_path: Path) -> None:
    run = await run_cli("up", env={"SUTAZAI_STATE_DIR": str(tmp_path), "SUTAZAI_HOST": "0.0.0.0"})

    assert run.code == 1
    assert "SUTAZAI_HOST=0.0.0.0" in run.stderr
    assert "SUTAZAI_EDGE__TLS_CERT_FILE" in run.stderr
    assert "SUTAZAI_EDGE__TLS_KEY_FILE" in run.stderr
    assert "Traceback" not in run.stderr
    # Refused before anything was prepared, let alone started.
    assert _contents(tmp_path) == []


def _contents(directory: Path) -> list[Path]:
    return list(directory.iterdir())
