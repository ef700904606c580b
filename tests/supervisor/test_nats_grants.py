"""Grants beyond the roles: the inference responder's, rendered into the server's users."""

from __future__ import annotations

import pytest

from sutazai.ops.supervisor.errors import SupervisorError
from sutazai.ops.supervisor.nats_auth import Policy, Principal

BUCKETS = {"bucket": "sutazai_registry", "revocations": "sutazai_revocations"}


def test_inference_answers_generation_requests_and_nothing_else_can() -> None:
    policy = Policy.packaged()

    inference = policy.permissions(Principal("inference", "service"), **BUCKETS)
    chat = policy.permissions(Principal("chat", "service"), **BUCKETS)

    assert "sutazai.inference.generate" in inference.subscribe
    assert inference.config()["allow_responses"] is True
    assert "sutazai.inference.generate" not in chat.subscribe
    assert "allow_responses" not in chat.config()
    assert "sutazai.inference.generate" not in chat.publish


def test_every_service_answers_memory_reclamation_and_only_hardware_asks() -> None:
    policy = Policy.packaged()
    chat = policy.permissions(Principal("chat", "service"), **BUCKETS)
    hardware = policy.permissions(Principal("hardware", "service"), **BUCKETS)

    assert chat.subscribe == ("_INBOX.chat.>", "sutazai.runtime.reclaim")
    assert "sutazai.runtime.reclaimed" in chat.publish
    assert "sutazai.runtime.reclaim" not in chat.publish
    assert "sutazai.runtime.reclaimed" not in chat.subscribe
    assert {"sutazai.runtime.reclaim", "sutazai.inference.generate"} <= set(hardware.publish)
    assert "sutazai.runtime.reclaimed" in hardware.subscribe


def test_allow_responses_must_be_a_bool() -> None:
    document = {
        "roles": {"service": ["g"]},
        "grants": {"g": {"subscribe": ["x"], "allow_responses": "yes"}},
    }

    with pytest.raises(SupervisorError, match="allow_responses"):
        Policy.parse(document)
