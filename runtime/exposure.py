"""Refuse to expose the edge beyond this machine without TLS.

Off loopback, passwords and tokens would cross the network in clear: :func:`require_safe_edge`
stops ``sutazai up`` and the gateway before anything binds, with a message naming the settings
to set. Every other server binds loopback whatever the edge address is
(:attr:`~sutazai.runtime.settings.MeshSettings.internal_host`).
"""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path

from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.settings import MeshSettings

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP literal or a name) can only be reached from this machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() in _LOOPBACK_NAMES


def require_safe_edge(settings: MeshSettings) -> None:
    """Raise unless the edge is on loopback or serves TLS with a usable certificate and key.

    Raises:
        ConfigurationError: the edge would accept plaintext off loopback, or a configured
            certificate or key file is missing, unreadable or (the key) readable by others.
    """
    cert, key = settings.edge.tls_cert_file, settings.edge.tls_key_file
    if cert is None or key is None:
        if is_loopback(settings.host):
            return
        raise ConfigurationError(
            f"SUTAZAI_HOST={settings.host} exposes the edge beyond this machine, and it has no "
            "TLS: set SUTAZAI_EDGE__TLS_CERT_FILE and SUTAZAI_EDGE__TLS_KEY_FILE to a PEM "
            "certificate and key (`sutazai certs --host <name or address>` makes them), "
            "or bind loopback with SUTAZAI_HOST=127.0.0.1"
        )
    _require_readable(cert, "SUTAZAI_EDGE__TLS_CERT_FILE")
    _require_readable(key, "SUTAZAI_EDGE__TLS_KEY_FILE")
    mode = key.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"SUTAZAI_EDGE__TLS_KEY_FILE {key} is readable by other "
            f"users (mode {stat.S_IMODE(mode):o}): chmod 600 it"
        )


def _require_readable(path: Path, setting: str) -> None:
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ConfigurationError(f"{setting} {path} is not a readable file")
