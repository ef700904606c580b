"""``sutazai chat "PROMPT"``: ask a model through the mesh and print the reply as it streams.

The reply's text goes to stdout as each piece arrives (nothing else does, so it can be piped);
which conversation and model answered, and whether the reply was cached, go to stderr, so the
conversation can be continued with ``--conversation``. A failure ends the command with the
status (e.g. ``NOT_FOUND: model ...``) and a non-zero exit; Ctrl-C cancels the call, which
stops generation at once.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
from rich.text import Text

from sutazai.chat.v1 import chat_service_pb2 as chat_pb
from sutazai.client import ClientError, MeshClient
from sutazai.inference.v1.inference_service_pb2 import FinishReason, SamplingOptions
from sutazai.ops.cli.console import err
from sutazai.ops.cli.context import mesh_settings
from sutazai.ops.cli.errors import CliError
from sutazai.ops.cli.mesh_calls import CALL_TIMEOUT, cli_error
from sutazai.runtime.settings import MeshSettings

MAX_MESSAGE = 32_768
"""``ChatStreamRequest.message``: at most 32,768 characters (the service checks it too)."""
MAX_SYSTEM = 8_192
"""``ChatStreamRequest.system_prompt``: at most 8,192 characters."""


def chat(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="Your message ('-' reads it from stdin).")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="The model (default: the mesh's default).")
    ] = "",
    conversation: Annotated[
        str, typer.Option("--conversation", "-c", help="Continue this conversation (its id).")
    ] = "",
    temperature: Annotated[
        float | None, typer.Option("--temperature", "-t", min=0.0, max=2.0, help="0 to 2.")
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", min=1, max=4096, help="Most tokens to generate (1-4096)."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the reply cache.")
    ] = False,
    system: Annotated[
        str, typer.Option("--system", help="Instructions for the model (new conversations).")
    ] = "",
) -> None:
    """Send a message to a model and stream its reply to stdout."""
    settings = mesh_settings(ctx)
    message = sys.stdin.read() if prompt == "-" else prompt
    if not message.strip():
        raise CliError("the message is empty")
    if len(message) > MAX_MESSAGE:
        raise CliError(f"the message is longer than {MAX_MESSAGE:,} characters")
    if len(system) > MAX_SYSTEM:
        raise CliError(f"--system is longer than {MAX_SYSTEM:,} characters")
    options = SamplingOptions(temperature=temperature, max_tokens=max_tokens)
    request = chat_pb.ChatStreamRequest(
        message=message,
        model=model,
        conversation_id=conversation,
        options=options,
        system_prompt=system,
        no_cache=no_cache,
    )
    try:
        asyncio.run(stream_reply(settings, request))
    except KeyboardInterrupt:
        # asyncio.run cancelled the reading task, which closed the stream: the call is over.
        sys.stdout.write("\n")
        raise CliError("cancelled", exit_code=130) from None


async def stream_reply(settings: MeshSettings, request: chat_pb.ChatStreamRequest) -> None:
    """Stream the reply to ``request``: text to stdout as it arrives, the rest to stderr.

    Raises:
        CliError: the call failed (before or during the reply), with its status.

    """
    wrote_text = False
    async with MeshClient(settings, call_timeout=CALL_TIMEOUT) as client:
        try:
            async for event in client.chat_stream(
                request.message,
                model=request.model,
                conversation_id=request.conversation_id,
                options=request.options,
                system_prompt=request.system_prompt,
                no_cache=request.no_cache,
            ):
                kind = event.WhichOneof("event")
                if kind == "started":
                    started = event.started
                    cached = ", cached" if started.cached else ""
                    err.print(
                        Text(
                            f"conversation {started.conversation_id} ({started.model}{cached})",
                            style="dim",
                        )
                    )
                elif kind == "delta" and event.delta.text:
                    sys.stdout.write(event.delta.text)
                    sys.stdout.flush()
                    wrote_text = True
                elif kind == "done":
                    if wrote_text:
                        sys.stdout.write("\n")
                        sys.stdout.flush()
                        wrote_text = False
                    err.print(Text(_summary(event.done), style="dim"))
        except ClientError as exc:
            if wrote_text:
                sys.stdout.write("\n")
                sys.stdout.flush()
            raise cli_error(exc) from None


def _summary(done: chat_pb.ChatDone) -> str:
    reason = FinishReason.Name(done.finish_reason).removeprefix("FINISH_REASON_").lower()
    return (
        f"{done.usage.completion_tokens} tokens, {reason}, "
        f"first token {done.time_to_first_token_ms:.0f} ms, total {done.latency_ms:.0f} ms"
    )
