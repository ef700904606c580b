"""How the text agent turns the inference service's answers into task outcomes."""

from __future__ import annotations

from typing import Any

import grpc
import nats.errors
import pytest
from google.rpc import code_pb2, status_pb2

from sutazai.inference.v1 import inference_service_pb2 as pb
from sutazai.sdk import TaskError
from sutazai.services.textagent.domain import Generation
from sutazai.services.textagent.handlers import call_inference


class Reply:
    def __init__(self, data: bytes) -> None:
        self.data = data


class FakeNats:
    """Answers every request the same way, and remembers what it was asked."""

    def __init__(self, answer: bytes | BaseException) -> None:
        self.answer = answer
        self.asked: list[tuple[str, pb.GenerateRequest, float, dict[str, str]]] = []

    async def request(
        self,
        subject: str,
        data: bytes,
        timeout: float,  # noqa: ASYNC109 - the nats-py signature
        headers: dict[str, str],
    ) -> Reply:
        self.asked.append((subject, pb.GenerateRequest.FromString(data), timeout, headers))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return Reply(self.answer)


def refused(code: int) -> bytes:
    return pb.GenerateReply(status=status_pb2.Status(code=code, message="no")).SerializeToString()


async def call(answer: bytes | BaseException, remaining: float = 30.0) -> Any:
    fake = FakeNats(answer)
    return await call_inference(fake, Generation(prompt="Hi", system="Be brief."), remaining)  # type: ignore[arg-type]


async def test_the_request_carries_the_conversation_and_the_time_left() -> None:
    fake = FakeNats(
        pb.GenerateReply(
            status=status_pb2.Status(code=code_pb2.OK), response=pb.GenerateResponse(text="Hello")
        ).SerializeToString()
    )

    response = await call_inference(fake, Generation(prompt="Hi", system="Be brief."), 10.0)  # type: ignore[arg-type]

    assert response.text == "Hello"
    subject, request, timeout, headers = fake.asked[0]
    assert subject == "sutazai.inference.generate"
    assert [(m.role, m.content) for m in request.messages] == [
        (pb.MESSAGE_ROLE_SYSTEM, "Be brief."),
        (pb.MESSAGE_ROLE_USER, "Hi"),
    ]
    assert timeout == pytest.approx(9.5)
    assert headers == {"Sutazai-Timeout-Ms": "9500"}


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (code_pb2.UNAVAILABLE, True),
        (code_pb2.RESOURCE_EXHAUSTED, True),
        (code_pb2.DEADLINE_EXCEEDED, True),
        (code_pb2.INVALID_ARGUMENT, False),
        (code_pb2.NOT_FOUND, False),
    ],
)
async def test_refusals_are_retryable_unless_the_request_was_wrong(
    code: int, retryable: bool
) -> None:
    with pytest.raises(TaskError) as raised:
        await call(refused(code))

    assert raised.value.retryable is retryable
    assert raised.value.status().code == code


async def test_no_inference_service_or_no_answer_can_be_retried() -> None:
    with pytest.raises(TaskError) as absent:
        await call(nats.errors.NoRespondersError())
    with pytest.raises(TaskError) as silent:
        await call(nats.errors.TimeoutError())
    with pytest.raises(TaskError) as late:
        await call(b"", remaining=0.2)

    assert absent.value.retryable
    assert absent.value.fault.code is grpc.StatusCode.UNAVAILABLE
    assert silent.value.retryable
    assert silent.value.fault.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert late.value.fault.code is grpc.StatusCode.DEADLINE_EXCEEDED
