"""A local certificate authority and the edge's server certificate, for TLS off loopback.

``sutazai certs`` keeps both in one directory (default ``<state dir>/tls``)::

    ca.pem        the CA certificate: give it to clients (curl --cacert, grpc root certs)
    ca-key.pem    the CA's private key (0600); reused, so re-issuing keeps clients' trust
    edge.pem      the edge's certificate, signed by the CA
    edge-key.pem  its private key (0600): SUTAZAI_EDGE__TLS_KEY_FILE

Keys are ECDSA P-256: every TLS client (curl, browsers, grpc) accepts them and they are cheap
to handshake.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sutazai.runtime.files import replace_file

CA_CERT: Final = "ca.pem"
CA_KEY: Final = "ca-key.pem"
EDGE_CERT: Final = "edge.pem"
EDGE_KEY: Final = "edge-key.pem"
ALWAYS_NAMES: Final = ("localhost", "127.0.0.1", "::1")
"""Names every edge certificate covers, so local tools reach the edge over TLS."""
CA_LIFETIME: Final = datetime.timedelta(days=3650)
EDGE_LIFETIME: Final = datetime.timedelta(days=397)
"""Browsers refuse server certificates valid for longer."""


@dataclass(frozen=True, slots=True)
class EdgeCertificate:
    """Paths of what :func:`issue_edge_certificate` wrote."""

    ca_cert: Path
    cert: Path
    key: Path
    names: tuple[str, ...]
    """The subject alternative names of :attr:`cert`."""


def issue_edge_certificate(directory: Path, hosts: Iterable[str]) -> EdgeCertificate:
    """Write a server certificate for ``hosts`` (names or IP addresses), signed by the CA.

    The CA of ``directory`` is created on first use and reused afterwards; the edge
    certificate and key are replaced. Private keys are written mode 0600.

    Raises:
        ValueError: a host is empty.
    """
    names = _names(hosts)
    ca_key, ca_cert = _certificate_authority(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + EDGE_LIFETIME)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = EdgeCertificate(
        ca_cert=directory / CA_CERT,
        cert=directory / EDGE_CERT,
        key=directory / EDGE_KEY,
        names=names,
    )
    replace_file(paths.key, _private_pem(key))
    replace_file(paths.cert, cert.public_bytes(serialization.Encoding.PEM).decode())
    return paths


def _certificate_authority(
    directory: Path,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, cert_path = directory / CA_KEY, directory / CA_CERT
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        return key, x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SutazAI local CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    replace_file(key_path, _private_pem(key))
    replace_file(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode())
    return key, cert


def _names(hosts: Iterable[str]) -> tuple[str, ...]:
    names: list[str] = []
    for host in (*hosts, *ALWAYS_NAMES):
        host = host.strip()
        if not host:
            raise ValueError("a host name or address is empty")
        if host not in names:
            names.append(host)
    return tuple(names)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
