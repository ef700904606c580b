"""The text agent's handlers: validate the payload, ask the inference service over NATS.

The inference service answers ``sutazai.inference.generate`` (request-reply, protobuf
``GenerateRequest`` → ``GenerateReply``); the agent's principal needs the ``inference_call``
grant to publish there. A refusal the task caused (bad input, unknown model) fails the task for
good; the service being away or busy fails the attempt, and the coordinator tries again.
"""

from __future__ import annotations

from typing import Any

import grpc
import nats.errors
from google.protobuf.message import DecodeError
from google.rpc import code_pb2
from nats.aio.client import Client

from sutazai.inference.v1 import inference_service_pb2 as pb
from sutazai.sdk import InvalidPayloadError, TaskContext, TaskError
from sutazai.sdk.subjects import INFERENCE_GENERATE, TIMEOUT_HEADER
from sutazai.services.textagent.domain import (
    Generation,
    parse_generate,
    parse_summarize,
    word_count,
)

MAX_CALL_SECONDS = 600.0
"""The longest one inference call may take, whatever the task's deadline."""
MARGIN_SECONDS = 0.5
"""Kept from the deadline, so the task reports a timeout of its own rather than being cut."""
FINAL_CODES = frozenset(
    {
        code_pb2.INVALID_ARGUMENT,
        code_pb2.NOT_FOUND,
        code_pb2.FAILED_PRECONDITION,
        code_pb2.OUT_OF_RANGE,
        code_pb2.PERMISSION_DENIED,
        code_pb2.UNIMPLEMENTED,
    }
)
"""Refusals another attempt cannot change: the task fails for good."""
_FINISH = {pb.FINISH_REASON_STOP: "stop", pb.FINISH_REASON_LENGTH: "length"}


async def generate(task: TaskContext) -> dict[str, Any]:
    """``text.generate``: the model's answer to a prompt."""
    generation, violations = parse_generate(task.payload)
    if generation is None:
        raise InvalidPayloadError(violations)
    await task.report_progress(0.1, "generating")
    response = await call_inference(task.nats, generation, task.time_remaining())
    return {"text": response.text, **_about(response)}


async def summarize(task: TaskContext) -> dict[str, Any]:
    """``text.summarize``: a summary of a text in at most ``max_words`` words."""
    generation, violations = parse_summarize(task.payload)
    if generation is None:
        raise InvalidPayloadError(violations)
    await task.report_progress(0.1, "summarizing")
    response = await call_inference(task.nats, generation, task.time_remaining())
    summary = response.text.strip()
    if not summary:
        raise TaskError("the model answered with an empty summary", code=grpc.StatusCode.UNKNOWN)
    return {"summary": summary, "words": word_count(summary), **_about(response)}


async def call_inference(
    nc: Client, generation: Generation, remaining_seconds: float
) -> pb.GenerateResponse:
    """One generation on the inference service, within the time the task has left.

    Raises:
        TaskError: the service refused (retryable unless the request itself was wrong),
            did not answer in time, or is not running.

    """
    timeout = min(remaining_seconds - MARGIN_SECONDS, MAX_CALL_SECONDS)
    if timeout <= 0:
        raise TaskError(
            "no time left for the inference call", code=grpc.StatusCode.DEADLINE_EXCEEDED
        )
    request = _request(generation)
    try:
        message = await nc.request(
            INFERENCE_GENERATE,
            request.SerializeToString(),
            timeout=timeout,
            headers={TIMEOUT_HEADER: str(max(1, int(timeout * 1000)))},
        )
    except nats.errors.NoRespondersError:
        raise TaskError(
            "the inference service is not running", code=grpc.StatusCode.UNAVAILABLE
        ) from None
    except TimeoutError:
        raise TaskError(
            "the inference service did not answer in time",
            code=grpc.StatusCode.DEADLINE_EXCEEDED,
        ) from None
    try:
        reply = pb.GenerateReply.FromString(message.data)
    except DecodeError:
        raise TaskError(
            "the inference service answered with something else than a GenerateReply",
            code=grpc.StatusCode.UNAVAILABLE,
        ) from None
    if reply.status.code != code_pb2.OK:
        raise TaskError(
            f"inference: {reply.status.message}",
            retryable=reply.status.code not in FINAL_CODES,
            code=_status_code(reply.status.code),
        )
    return reply.response


def _request(generation: Generation) -> pb.GenerateRequest:
    messages = []
    if generation.system:
        messages.append(pb.Message(role=pb.MESSAGE_ROLE_SYSTEM, content=generation.system))
    messages.append(pb.Message(role=pb.MESSAGE_ROLE_USER, content=generation.prompt))
    options = pb.SamplingOptions()
    if generation.max_tokens is not None:
        options.max_tokens = generation.max_tokens
    if generation.temperature is not None:
        options.temperature = generation.temperature
    return pb.GenerateRequest(model=generation.model, messages=messages, options=options)


def _about(response: pb.GenerateResponse) -> dict[str, Any]:
    return {
        "model": response.model,
        "finish_reason": _FINISH.get(response.finish_reason, "unspecified"),
        "usage": {
            "prompt_tokens": response.usage.prompt_tokens,
            "completion_tokens": response.usage.completion_tokens,
        },
    }


def _status_code(code: int) -> grpc.StatusCode:
    return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
