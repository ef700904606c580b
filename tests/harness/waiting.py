"""Condition waits for tests: poll a predicate until true or a deadline; never bare sleeps."""

from sutazai.ops.supervisor.waiting import wait_for

__all__ = ["wait_for"]
