"""The inference service, asked over NATS (``sutazai.inference.generate``) for GetAdvice.

The same request-reply the agents use (docs/agents.md, "The inference service over NATS"):
the hardware service's principal has the ``inference_call`` grant. Its refusals keep their
status; no responder or no answer in time is UNAVAILABLE or DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import grpc
import nats.errors
from google.protobuf.message import DecodeError
from google.rpc import code_pb2
from nats.aio.client import Client

from sutazai.inference.v1 import inference_service_pb2 as inference_pb
from sutazai.runtime.faults import RpcStatusError, deadline_exceeded, unavailable
from sutazai.sdk.subjects import INFERENCE_GENERATE, TIMEOUT_HEADER
from sutazai.services.hardware.advice import TEMPERATURE, AdvicePrompt

DEFAULT_TIMEOUT_SECONDS = 60.0
"""A call without a deadline waits this long for the model (the inference service's own
default for a request without one)."""
MARGIN_SECONDS = 0.5
"""Kept from the caller's deadline, so the answer (even a refusal) arrives before it."""


class InferenceAsker:
    """Asks the inference service for one generation at a time, over NATS."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc

    async def generate(
        self, prompt: AdvicePrompt, remaining_seconds: float | None
    ) -> inference_pb.GenerateResponse:
        """The model's answer to ``prompt`` within ``remaining_seconds`` (None: the default).

        Raises:
            RpcStatusError: the inference service's refusal (its code and message), or
                UNAVAILABLE / DEADLINE_EXCEEDED when it did not answer.

        """
        timeout = (
            DEFAULT_TIMEOUT_SECONDS
            if remaining_seconds is None
            else min(DEFAULT_TIMEOUT_SECONDS, remaining_seconds - MARGIN_SECONDS)
        )
        if timeout <= 0:
            raise deadline_exceeded("no time left to ask the inference service")
        request = inference_pb.GenerateRequest(
            model=prompt.model,
            messages=[
                inference_pb.Message(role=inference_pb.MESSAGE_ROLE_SYSTEM, content=prompt.system),
                inference_pb.Message(role=inference_pb.MESSAGE_ROLE_USER, content=prompt.prompt),
            ],
            options=inference_pb.SamplingOptions(
                max_tokens=prompt.max_tokens, temperature=TEMPERATURE
            ),
        )
        try:
            message = await self._nc.request(
                INFERENCE_GENERATE,
                request.SerializeToString(),
                timeout=timeout,
                headers={TIMEOUT_HEADER: str(max(1, int(timeout * 1000)))},
            )
        except nats.errors.NoRespondersError:
            raise unavailable("the inference service is not running", 5.0) from None
        except TimeoutError:
            raise deadline_exceeded("the inference service did not answer in time") from None
        try:
            reply = inference_pb.GenerateReply.FromString(message.data)
        except DecodeError:
            raise unavailable("the inference service answered with something else") from None
        if reply.status.code != code_pb2.OK:
            code = next(
                (c for c in grpc.StatusCode if c.value[0] == reply.status.code),
                grpc.StatusCode.UNKNOWN,
            )
            raise RpcStatusError(code, f"inference: {reply.status.message}")
        return reply.response
