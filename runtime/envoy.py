"""Names in Envoy's configuration that processes other than the gateway read back.

The gateway sets them (``gateway/names.py`` re-exports them for the xDS resources); the system
service finds the edge's statistics by them in Envoy's admin ``/stats``.
"""

from __future__ import annotations

from typing import Final

EDGE_STAT_PREFIX: Final = "edge"
"""Stat prefix of the edge's HTTP connection manager (``http.edge.*`` in Envoy stats)."""
