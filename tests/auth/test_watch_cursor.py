"""The audit watcher's cursor: every event once, late commits included, in a bounded window."""

from sutazai.services.auth.domain import REORDER_WINDOW, WatchCursor


def test_new_events_advance_and_repeats_are_dropped() -> None:
    cursor = WatchCursor(10)
    assert cursor.advance([11, 12]) == [11, 12]
    assert cursor.advance([12, 13]) == [13]
    assert cursor.last == 13
    assert cursor.gaps() == []


def test_an_event_that_commits_after_a_later_one_is_still_sent_once() -> None:
    cursor = WatchCursor(10)
    assert cursor.advance([11, 13]) == [11, 13]
    assert cursor.gaps() == [12]
    assert cursor.advance([12, 14]) == [12, 14]
    assert cursor.gaps() == []
    assert cursor.advance([12]) == []


def test_ids_before_the_start_are_never_sent() -> None:
    cursor = WatchCursor(10)
    assert cursor.advance([5, 10]) == []
    assert cursor.advance([20]) == [20]
    assert cursor.gaps() == list(range(11, 20))


def test_the_window_bounds_what_is_looked_for_and_remembered() -> None:
    cursor = WatchCursor(0)
    cursor.advance([1, 1000])
    assert len(cursor.gaps()) == REORDER_WINDOW - 1
    assert cursor.advance([2]) == []  # far below the newest: too late to be a late commit
