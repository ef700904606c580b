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
    # Every service answers memory reclamation requests (its allow_responses serves that and
    # nothing else: it receives no other request), but none may ask for one but hardware.
    assert chat.subscribe == ("_INBOX.chat.>", "sutazai.runtime.reclaim")
    assert "sutazai.inference.generate" not in chat.publish
    assert "sutazai.runtime.reclaim" not in chat.publish
    hardware = policy.permissions(Principal("hardware", "service"), **BUCKETS)
    assert {"sutazai.runtime.reclaim", "sutazai.inference.generate"} <= set(hardware.publish)


def test_allow_responses_must_be_a_bool() -> None:
    document = {
        "roles": {"service": ["g"]},
        "grants": {"g": {"subscribe": ["x"], "allow_responses": "yes"}},
    }

    with pytest.raises(SupervisorError, match="allow_responses"):
        Policy.parse(document)
