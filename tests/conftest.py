"""Shared fixtures: see :mod:`tests.harness.fixtures` for the real-infrastructure ones."""

pytest_plugins = ["tests.harness.fixtures"]
