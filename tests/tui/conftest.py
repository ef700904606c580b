"""Fixtures of the dashboard's unit tests: a fake mesh and an app built on it."""

from __future__ import annotations

import pytest

from sutazai.tui.app import SutazaiApp
from sutazai.tui.settings import DashboardSettings
from tests.tui.fake import FakeMesh, fixed_clock


@pytest.fixture
def fake() -> FakeMesh:
    """A fake mesh whose saved session is an admin's."""
    return FakeMesh()


def make_app(fake: FakeMesh, **settings: object) -> SutazaiApp:
    """The dashboard on ``fake``, with the fixed clock and the given settings."""
    return SutazaiApp(fake, DashboardSettings(**settings), clock=fixed_clock)  # type: ignore[arg-type]
