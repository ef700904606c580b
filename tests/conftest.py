"""Shared fixtures and the test tiers.

The real-infrastructure fixtures are in :mod:`tests.harness.fixtures`; the tiers (unit and
``integration``) and the guard that keeps servers out of the unit tier in
:mod:`tests.harness.tiers`.
"""

import os
from collections.abc import Iterator

# Before grpc is imported: the suite runs supervisors in this process, which fork children
# (see sutazai.ops.cli, which does the same for `sutazai up`).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import pytest

from tests.harness.tiers import install_guards, mark_integration, tier_of

pytest_plugins = ["tests.harness.fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    install_guards()


# First, so that `-m "not integration"` deselects what this marks.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_integration(items)


# Set-up and call only: session fixtures are torn down after whichever test ran last.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with tier_of(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with tier_of(item):
        return (yield)
