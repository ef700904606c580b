"""``sutazai status``: the mesh's health as the system service reports it, through Envoy."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import typer
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from rich import box
from rich.table import Table

from sutazai.client import CallFailed, ClientError, MeshClient, MeshUnavailable, TokenFileError
from sutazai.ops.cli.console import out
from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError
from sutazai.runtime.settings import MeshSettings
from sutazai.system.v1.system_service_pb2 import (
    ComponentKind,
    ComponentState,
    GetStatusResponse,
    OverallState,
)

_CALL_TIMEOUT = 5.0
_POLL_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class StatusOutcome:
    """The latest answer (if any) and, unless healthy, why the mesh is not healthy."""

    response: GetStatusResponse | None
    problem: str | None

    @property
    def healthy(self) -> bool:
        """Whether the system service reported the whole mesh healthy."""
        return self.problem is None


def status(
    ctx: typer.Context,
    wait: Annotated[
        float, typer.Option("--wait", help="Poll until healthy, for up to this many seconds.")
    ] = 0.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the response as proto JSON.")
    ] = False,
) -> None:
    """Show every component's health; exit 0 only when the whole mesh is healthy."""
    settings = mesh_settings(ctx)
    outcome = asyncio.run(poll_status(settings, wait))
    if outcome.response is not None:
        if as_json:
            # Plain stdout, not rich: scripts parse this, so no wrapping or markup.
            typer.echo(
                json_format.MessageToJson(
                    outcome.response,
                    preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                )
            )
        elif outcome.response.components:
            out.print(render_table(outcome.response))
        else:
            # Signed out, GetStatus answers with the summary only.
            out.print(
                f"mesh {_overall_label(outcome.response.overall)} "
                "(sign in with 'sutazai login' to see every component)"
            )
    if outcome.problem is not None:
        raise CliError(outcome.problem)


async def poll_status(settings: MeshSettings, wait: float) -> StatusOutcome:
    """Call ``GetStatus`` through Envoy until the mesh is healthy or ``wait`` seconds passed.

    Signed in (``sutazai login``; an expired access token is refreshed), the answer lists
    every component; signed out, only the overall state.
    """
    deadline = time.monotonic() + max(wait, 0.0)
    async with MeshClient(settings, call_timeout=_CALL_TIMEOUT) as client:
        while True:
            outcome = await _ask(client)
            remaining = deadline - time.monotonic()
            if outcome.healthy or remaining <= 0:
                return outcome
            await asyncio.sleep(min(_POLL_INTERVAL, remaining))


async def _ask(client: MeshClient) -> StatusOutcome:
    try:
        response = await client.get_status()
    except MeshUnavailable as exc:
        return StatusOutcome(None, str(exc))
    except TokenFileError as exc:
        raise CliError(str(exc)) from None
    except CallFailed as exc:
        return StatusOutcome(
            None,
            f"GetStatus through Envoy at {client.target} failed: {exc.code.name}: {exc.details}",
        )
    except ClientError as exc:
        return StatusOutcome(None, f"GetStatus through Envoy at {client.target} failed: {exc}")
    if response.overall == OverallState.HEALTHY:
        return StatusOutcome(response, None)
    unhealthy = [
        c.name for c in response.components if c.state != ComponentState.COMPONENT_STATE_HEALTHY
    ]
    detail = f" (not healthy: {', '.join(unhealthy)})" if unhealthy else ""
    return StatusOutcome(response, f"the mesh is {_overall_label(response.overall)}{detail}")


def render_table(response: GetStatusResponse) -> Table:
    """One row per component, under a title with the overall state."""
    overall = _overall_label(response.overall)
    color = "green" if response.overall == OverallState.HEALTHY else "red"
    table = Table(
        title=f"mesh [bold {color}]{overall}[/]",
        caption=f"reported by {response.reported_by or '?'} at {_time(response.checked_at)}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    # Identity and state never wrap; the free-text columns take what width is left.
    table.add_column("component", no_wrap=True)
    table.add_column("kind", no_wrap=True, min_width=7)
    table.add_column("state", no_wrap=True)
    table.add_column("address", no_wrap=True, min_width=15)
    table.add_column("latency", justify="right", no_wrap=True)
    table.add_column("since", no_wrap=True, min_width=8)
    table.add_column("version", overflow="fold")
    table.add_column("last error", overflow="fold")
    for component in response.components:
        healthy = component.state == ComponentState.COMPONENT_STATE_HEALTHY
        table.add_row(
            component.name,
            _kind_label(component.kind),
            f"[{'green' if healthy else 'red'}]{_state_label(component.state)}[/]",
            component.address,
            f"{component.latency_ms:.1f} ms",
            _time(component.since),
            component.version,
            component.last_error,
        )
    return table


def _overall_label(value: OverallState.ValueType) -> str:
    """``HEALTHY`` -> ``healthy``."""
    return OverallState.Name(value).removeprefix("OVERALL_STATE_").lower()


def _state_label(value: ComponentState.ValueType) -> str:
    """``COMPONENT_STATE_UNHEALTHY`` -> ``unhealthy``."""
    return ComponentState.Name(value).removeprefix("COMPONENT_STATE_").lower()


_KIND_LABELS = {
    ComponentKind.COMPONENT_KIND_INFRASTRUCTURE: "infra",
    ComponentKind.COMPONENT_KIND_SERVICE_INSTANCE: "service",
}


def _kind_label(value: ComponentKind.ValueType) -> str:
    """``COMPONENT_KIND_SERVICE_INSTANCE`` -> ``service``."""
    return _KIND_LABELS.get(value, "?")


def _time(stamp: Timestamp) -> str:
    """Local time of day, with the date only when it is not today."""
    if not stamp.seconds and not stamp.nanos:
        return "-"
    moment = stamp.ToDatetime(tzinfo=UTC).astimezone()
    if moment.date() == datetime.now().astimezone().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")
