"""The coordinator's exception tree.

CoordinatorError            root of every error raised by :mod:`sutazai.services.coordinator`
└── LeaseLostError          engine: another instance holds the leader lease now

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""

from __future__ import annotations


class CoordinatorError(Exception):
    """Root of every error raised by :mod:`sutazai.services.coordinator`."""


class LeaseLostError(CoordinatorError):
    """The leader lease could not be renewed: this instance stops assigning."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the coordinator's leader lease is lost: {reason}")
        self.reason = reason
