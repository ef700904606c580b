"""``python -m sutazai.gateway``: run the xDS control plane with settings from the environment.

Settings come from ``SUTAZAI_*`` variables (see :class:`~sutazai.runtime.settings.
MeshSettings`); logs are JSON lines on stderr. A configuration problem (e.g. no key ring yet) is
logged as one ``gateway.misconfigured`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio

import structlog

from sutazai.gateway.server import run_gateway
from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.logging import configure_logging
from sutazai.runtime.settings import MeshSettings

EXIT_MISCONFIGURED = 2


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, then serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m sutazai.gateway",
        description="xDS control plane for the SutazAI Envoy edge.",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port (0: any free port; -1: off); "
        "overrides SUTAZAI_GATEWAY__METRICS_PORT",
    )
    args = parser.parse_args(argv)
    configure_logging("gateway")
    try:
        asyncio.run(run_gateway(MeshSettings(), metrics_port=args.metrics_port))
    except ConfigurationError as exc:
        structlog.get_logger(__name__).error("gateway.misconfigured", error=str(exc))
        raise SystemExit(EXIT_MISCONFIGURED) from None


if __name__ == "__main__":
    main()
