"""The coordinator's decisions with fixed inputs: order, eligibility, strategies, back-off."""

from __future__ import annotations

import pytest

from sutazai.runtime.deployment import TaskTypes
from sutazai.services.coordinator.domain import (
    AgentView,
    Chooser,
    Held,
    HoldingQueue,
    Need,
    RecentCounter,
    Strategy,
    backoff_seconds,
    eligible,
    load,
    next_step,
    prefer_others,
    waiting_reason,
    weighted_score,
)

SUMMARIZE = Need("text.summarize")


def agent(agent_id: str, *caps: str, max_concurrency: int = 4, **fields: object) -> AgentView:
    return AgentView(
        agent_id=agent_id,
        capabilities=frozenset(caps or ("text.summarize",)),
        max_concurrency=max_concurrency,
        **fields,  # type: ignore[arg-type]
    )


def held(task_id: str, priority: int, created_at: float, not_before: float = 0.0) -> Held[None]:
    return Held(task_id, 1, priority, created_at, SUMMARIZE, not_before=not_before)


def test_the_queue_serves_the_highest_priority_first_and_fifo_within_one() -> None:
    queue: HoldingQueue[None] = HoldingQueue()
    for entry in (
        held("low", 0, 1.0),
        held("high-late", 3, 5.0),
        held("mid", 1, 0.5),
        held("high-early", 3, 2.0),
        held("high-early-too", 3, 2.0),  # same created_at: arrival order
    ):
        queue.add(entry)
    assert [h.task_id for h in queue.ready(now=10)] == [
        "high-early",
        "high-early-too",
        "high-late",
        "mid",
        "low",
    ]
    assert queue.depth_by_priority() == [1, 1, 0, 3]
    assert queue.depth_by_type() == {"text.summarize": 5}
    queue.remove("high-early")
    assert "high-early" not in queue
    assert next(h.task_id for h in queue.ready(now=10)) == "high-early-too"


def test_a_task_in_back_off_waits_until_not_before() -> None:
    queue: HoldingQueue[None] = HoldingQueue()
    queue.add(held("later", 3, 1.0, not_before=100.0))
    queue.add(held("now", 0, 2.0))
    assert [h.task_id for h in queue.ready(now=50)] == ["now"]
    assert queue.next_wakeup(now=50) == 100.0
    assert [h.task_id for h in queue.ready(now=100)] == ["later", "now"]
    assert queue.next_wakeup(now=100) is None


def test_holding_a_task_again_replaces_its_entry() -> None:
    queue: HoldingQueue[None] = HoldingQueue()
    queue.add(held("t", 0, 1.0))
    queue.add(Held("t", 2, 3, 1.0, SUMMARIZE))
    assert len(queue) == 1
    entry = queue.get("t")
    assert entry is not None
    assert entry.attempt == 2


def test_eligible_agents_are_online_offer_every_capability_and_have_a_free_slot() -> None:
    agents = [
        agent("a.1"),
        agent("b.1", "text.summarize", "gpu"),
        agent("c.1", online=False),
        agent("d.1", "text.generate"),
        agent("e.1", max_concurrency=2, running=2),
        agent("f.1", max_concurrency=2),
    ]
    assigned = {"f.1": 2, "a.1": 1}
    assert [a.agent_id for a in eligible(agents, SUMMARIZE, assigned)] == ["a.1", "b.1"]
    needs_gpu = Need("text.summarize", frozenset({"gpu"}))
    assert [a.agent_id for a in eligible(agents, needs_gpu, assigned)] == ["b.1"]


def test_the_waiting_reason_says_what_is_missing() -> None:
    busy = [agent("a.1", max_concurrency=1, running=1)]
    assert waiting_reason([], SUMMARIZE) == "no online agent offers text.summarize"
    assert waiting_reason([agent("a.1", online=False)], SUMMARIZE) == (
        "no online agent offers text.summarize"
    )
    assert waiting_reason(busy, Need("text.summarize", frozenset({"gpu"}))) == (
        "no online agent offers text.summarize with gpu"
    )
    assert waiting_reason(busy, SUMMARIZE) == "every agent offering text.summarize is busy"


def test_an_agent_gets_only_the_task_types_its_deployment_lets_it_run() -> None:
    # Each claims text.summarize; only "a" may run it (a compromised "b" claims it anyway).
    agents = [
        agent("a.1", task_types=TaskTypes.parse(["text.*"])),
        agent("b.1", task_types=TaskTypes.parse(["hardware.*"])),
        agent("c.1", task_types=TaskTypes()),
    ]
    assert [a.agent_id for a in eligible(agents, SUMMARIZE, {})] == ["a.1"]
    assert waiting_reason(agents[1:], SUMMARIZE) == "no online agent offers text.summarize"


def test_a_retry_prefers_another_agent_than_the_one_it_failed_on() -> None:
    one, two = agent("a.1"), agent("a.2")
    assert prefer_others([one, two], "a.1") == [two]
    assert prefer_others([one], "a.1") == [one], "no other: the same one rather than waiting"
    assert prefer_others([one, two], "") == [one, two]
    assert prefer_others([one, two], "b.1") == [one, two]


def test_round_robin_takes_turns_even_as_the_set_changes() -> None:
    chooser = Chooser(Strategy.ROUND_ROBIN)
    two = [agent("b.1"), agent("a.1")]
    picks = [chooser.choose(two, SUMMARIZE, {}) for _ in range(4)]
    assert [p.agent_id for p in picks if p] == ["a.1", "b.1", "a.1", "b.1"]
    three = [*two, agent("c.1")]
    picks = [chooser.choose(three, SUMMARIZE, {}) for _ in range(4)]
    assert [p.agent_id for p in picks if p] == ["c.1", "a.1", "b.1", "c.1"]
    # a.1 busy now: the turn passes to the next eligible one after the cursor.
    picks = [chooser.choose([agent("b.1"), agent("c.1")], SUMMARIZE, {}) for _ in range(2)]
    assert [p.agent_id for p in picks if p] == ["b.1", "c.1"]
    assert chooser.choose([], SUMMARIZE, {}) is None


def test_least_loaded_picks_the_idle_agent_then_the_lowest_id() -> None:
    chooser = Chooser(Strategy.LEAST_LOADED)
    agents = [agent("a.1", running=3), agent("b.1", running=1), agent("c.1", max_concurrency=8)]
    choice = chooser.choose(agents, SUMMARIZE, {"c.1": 4})
    assert choice is not None
    assert choice.agent_id == "b.1"  # 1/4 beats 3/4 and 4/8
    tie = chooser.choose([agent("b.1"), agent("a.1")], SUMMARIZE, {})
    assert tie is not None
    assert tie.agent_id == "a.1"


def test_capability_match_prefers_the_most_specialised_agent() -> None:
    chooser = Chooser(Strategy.CAPABILITY_MATCH)
    agents = [
        agent("a.1", "text.summarize", "text.generate", "gpu"),
        agent("b.1", "text.summarize", "text.generate", running=2),
        agent("c.1", "text.summarize", "text.generate", running=1),
    ]
    choice = chooser.choose(agents, SUMMARIZE, {})
    assert choice is not None
    assert choice.agent_id == "c.1"  # one extra capability, less loaded than b.1


def test_the_weighted_score_follows_the_formula() -> None:
    # 0.4 x (1 - 2/4) + 0.4 x 3/4 + 0.2 x 1 / max(1, 120 s / 60) = 0.2 + 0.3 + 0.1
    slow = agent("a.1", running=2, succeeded=3, failed=1, mean_duration_ms=120_000)
    assert weighted_score(slow, 0) == pytest.approx(0.6)
    # Nothing finished: success rate 1; fast: speed 1; idle: free capacity 1.
    fresh = agent("b.1")
    assert weighted_score(fresh, 0) == pytest.approx(1.0)
    # The coordinator's own unfinished assignments count when larger than the report.
    assert load(fresh, 3) == 0.75
    assert weighted_score(fresh, 3) == pytest.approx(0.4 * 0.25 + 0.4 + 0.2)
    # Failures weigh 40 %: a reliable busy agent beats an idle unreliable one.
    reliable = agent("c.1", running=1, succeeded=10)
    unreliable = agent("d.1", succeeded=1, failed=9)
    assert weighted_score(reliable, 0) == pytest.approx(0.4 * 0.75 + 0.4 + 0.2)
    assert weighted_score(unreliable, 0) == pytest.approx(0.4 + 0.04 + 0.2)
    chooser = Chooser(Strategy.WEIGHTED_SCORE)
    choice = chooser.choose([unreliable, reliable, slow], SUMMARIZE, {})
    assert choice is not None
    assert choice.agent_id == "c.1"


@pytest.mark.parametrize(
    ("attempt", "wait"), [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (1000, 60.0)]
)
def test_backoff_doubles_up_to_a_minute(attempt: int, wait: float) -> None:
    assert backoff_seconds(attempt) == wait


def test_attempts_end_at_max_attempts() -> None:
    assert next_step(1, 3) == (True, 2)
    assert next_step(2, 3) == (True, 3)
    assert next_step(3, 3) == (False, 4)


def test_the_recent_counter_forgets_after_a_minute() -> None:
    counter = RecentCounter()
    for at in (0.0, 10.0, 59.0):
        counter.add(at)
    assert counter.recent(59.5) == 3
    assert counter.recent(65.0) == 2
    assert counter.recent(200.0) == 0
    assert counter.total == 3
