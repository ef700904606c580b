"""The ``/openai/v1`` handlers over an engine the test plays: deadlines, refusals, clean-up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from sutazai.services.inference.domain import (
    ChatMessage,
    Delta,
    Done,
    FinishReason,
    GenerationEvent,
    Sampling,
    Timing,
)
from sutazai.services.inference.errors import BusyError
from sutazai.services.inference.openai_api.calls import EngineCalls
from sutazai.services.inference.openai_api.handlers import OpenAIHandlers

MODEL = "m"
HELLO = [{"role": "user", "content": "hi"}]


class ScriptedEngine:
    """Deltas of ``script``; then, unless ``stall``, the end; records when it was closed."""

    def __init__(
        self, script: Sequence[str], *, stall: bool = False, refuse: Exception | None = None
    ) -> None:
        self.script = script
        self.stall = stall
        self.refuse = refuse
        self.closed = asyncio.Event()

    async def generate(
        self, model: str, messages: Sequence[ChatMessage], options: Sampling
    ) -> AsyncIterator[GenerationEvent]:
        try:
            if self.refuse is not None:
                raise self.refuse
            for text in self.script:
                yield Delta(text)
            if self.stall:
                await asyncio.Event().wait()  # a backend that never answers again
            yield Done(
                model=model,
                reason=FinishReason.STOP,
                prompt_tokens=1,
                completion_tokens=len(self.script),
                timing=Timing(0.0, 0.0, 0.0, 0.0),
            )
        finally:
            self.closed.set()


def client(engine: ScriptedEngine, generation_timeout: float = 60.0) -> httpx.AsyncClient:
    engine_calls: Any = engine  # the handlers only ever call generate()
    handlers = OpenAIHandlers(
        EngineCalls(engine_calls, None, unary_timeout=5.0),
        max_body_bytes=65536,
        generation_timeout=generation_timeout,
    )
    app = Starlette(routes=handlers.routes())
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test/openai/v1"
    )


def events_of(body: str) -> list[str]:
    return [e.removeprefix("data: ") for e in body.split("\n\n") if e.startswith("data: ")]


async def test_a_stream_past_its_deadline_ends_with_a_timeout_event_and_stops() -> None:
    engine = ScriptedEngine(["Hel", "lo"], stall=True)
    async with client(engine, generation_timeout=0.5) as http:
        reply = await http.post(
            "/chat/completions", json={"model": MODEL, "messages": HELLO, "stream": True}
        )

    events = events_of(reply.text)
    assert reply.status_code == 200
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "timeout"
    texts = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[1:-1]]
    assert texts == ["Hel", "lo"]
    assert engine.closed.is_set(), "the generation was stopped"


async def test_a_reply_past_its_deadline_is_a_504_and_stops() -> None:
    engine = ScriptedEngine([], stall=True)
    async with client(engine, generation_timeout=0.5) as http:
        streamed = await http.post(
            "/chat/completions", json={"model": MODEL, "messages": HELLO, "stream": True}
        )
        whole = await http.post("/chat/completions", json={"model": MODEL, "messages": HELLO})

    for reply in (streamed, whole):
        assert reply.status_code == 504
        assert reply.json()["error"]["code"] == "timeout"
    assert engine.closed.is_set()


async def test_a_refusal_before_the_first_token_keeps_its_status() -> None:
    engine = ScriptedEngine([], refuse=BusyError("embedded", retry_after_seconds=2.5))
    async with client(engine) as http:
        reply = await http.post(
            "/chat/completions", json={"model": MODEL, "messages": HELLO, "stream": True}
        )

    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "3"
    assert reply.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("stream", [True, False])
async def test_invalid_options_are_refused_before_the_engine_is_called(stream: bool) -> None:
    engine = ScriptedEngine(["never"])
    body = {"model": MODEL, "messages": HELLO, "stream": stream, "temperature": 3}
    async with client(engine) as http:
        reply = await http.post("/chat/completions", json=body)

    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "temperature"
    assert not engine.closed.is_set(), "the engine never started a generation"
