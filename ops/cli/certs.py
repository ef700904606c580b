"""``sutazai certs``: a local CA and a certificate for the edge, to serve TLS off loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sutazai.ops.cli.certificates import issue_edge_certificate
from sutazai.ops.cli.console import out
from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError


def certs(
    ctx: typer.Context,
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="A name or IP address clients use to reach the edge (repeatable); "
            "localhost, 127.0.0.1 and ::1 are always included.",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Directory for the CA and the certificate; default <state dir>/tls.",
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Make a local CA (once) and a server certificate for the edge signed by it."""
    directory = out_dir or mesh_settings(ctx).state_dir / "tls"
    try:
        issued = issue_edge_certificate(directory.expanduser().resolve(), host or ())
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    out.print(f"certificate for {', '.join(issued.names)}")
    out.print("serve TLS at the edge with:")
    out.print(f"  SUTAZAI_EDGE__TLS_CERT_FILE={issued.cert}")
    out.print(f"  SUTAZAI_EDGE__TLS_KEY_FILE={issued.key}")
    out.print(f"clients trust {issued.ca_cert} (e.g. curl --cacert, SUTAZAI_EDGE__TLS_CA_FILE)")
