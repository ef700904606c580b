"""The gateway's exception tree: every exception :mod:`sutazai.gateway` defines, by module.

GatewayError          root of every error raised by the gateway
└── WatchEndedError   registry_watch: the registry watch stopped without an error

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error raised by :mod:`sutazai.gateway`."""
