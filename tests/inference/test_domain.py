"""The request rules of the proto comments."""

import math

import pytest

from sutazai.services.inference.domain import (
    ChatMessage,
    Role,
    Sampling,
    embed_violations,
    message_violations,
    name_violation,
    option_violations,
    tokens_per_second,
    uint32_seed_violation,
)

USER = ChatMessage(Role.USER, "hello")


def test_a_plain_conversation_is_valid() -> None:
    system = ChatMessage(Role.SYSTEM, "be brief")
    assert message_violations([system, USER]) == {}


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([], "messages"),
        ([USER] * 257, "messages"),
        ([ChatMessage(Role.USER, "")], "messages[0].content"),
        ([ChatMessage(Role.USER, "   ")], "messages[0].content"),
        ([ChatMessage(Role.USER, "x" * 32_769)], "messages[0].content"),
        ([None, USER], "messages[0].role"),
        ([USER, ChatMessage(Role.ASSISTANT, "hi")], "messages[1].role"),
    ],
)
def test_bad_conversations_name_the_field(messages: list[ChatMessage | None], field: str) -> None:
    assert field in message_violations(messages)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (Sampling(temperature=-0.1), "options.temperature"),
        (Sampling(temperature=2.01), "options.temperature"),
        (Sampling(temperature=math.nan), "options.temperature"),
        (Sampling(top_p=0.0), "options.top_p"),
        (Sampling(top_p=1.5), "options.top_p"),
        (Sampling(top_k=0), "options.top_k"),
        (Sampling(top_k=1001), "options.top_k"),
        (Sampling(max_tokens=0), "options.max_tokens"),
        (Sampling(max_tokens=4097), "options.max_tokens"),
        (Sampling(repeat_penalty=0.4), "options.repeat_penalty"),
        (Sampling(repeat_penalty=math.inf), "options.repeat_penalty"),
        (Sampling(stop=("a",) * 5), "options.stop"),
        (Sampling(stop=("",)), "options.stop[0]"),
        (Sampling(stop=("ok", "x" * 65)), "options.stop[1]"),
    ],
)
def test_out_of_range_options_name_the_field(options: Sampling, field: str) -> None:
    assert set(option_violations(options)) == {field}


def test_edge_values_are_valid() -> None:
    options = Sampling(
        temperature=0.0,
        top_p=1.0,
        top_k=1000,
        max_tokens=4096,
        stop=("a", "b", "c", "d" * 64),
        seed=-5,
        repeat_penalty=2.0,
    )
    assert option_violations(options) == {}


def test_seeds_of_llama_cpp_backends_are_32_bit() -> None:
    assert uint32_seed_violation(Sampling(seed=2**32 - 2), "embedded") == {}
    assert "options.seed" in uint32_seed_violation(Sampling(seed=2**32 - 1), "embedded")
    assert "options.seed" in uint32_seed_violation(Sampling(seed=-1), "embedded")


def test_embed_inputs_are_bounded() -> None:
    assert embed_violations(["a"]) == {}
    assert "inputs" in embed_violations([])
    assert "inputs" in embed_violations(["a"] * 65)
    assert "inputs[1]" in embed_violations(["a", "x" * 8193])


def test_names_are_bounded_and_printable() -> None:
    assert name_violation("model", "llama3.2:1b") == {}
    assert "model" in name_violation("model", "x" * 257)
    assert "model" in name_violation("model", "a\nb")


def test_tokens_per_second_spans_first_to_last_token() -> None:
    assert tokens_per_second(11, 1.0, 2.0) == pytest.approx(10.0)
    assert tokens_per_second(1, 1.0, 2.0) == 0.0
    assert tokens_per_second(5, None, None) == 0.0
