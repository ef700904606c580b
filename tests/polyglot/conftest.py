"""Fixtures of the polyglot tests: the pinned npm packages and a Node work directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.polyglot.nodejs import NodeToolError, install_node_modules, prepare_workdir


@pytest.fixture(scope="session")
async def node_modules(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The pinned npm packages (``node/package-lock.json``), cached across runs by lockfile."""
    cache = getattr(request.config, "cache", None)  # absent under `-p no:cacheprovider`
    root = cache.mkdir("polyglot-node") if cache else tmp_path_factory.mktemp("polyglot-node")
    try:
        return await install_node_modules(root)
    except NodeToolError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
async def node_workdir(node_modules: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the Node programs, the npm packages and code generated from ``protos/``."""
    try:
        return await prepare_workdir(node_modules, tmp_path_factory.mktemp("node"))
    except NodeToolError as error:
        pytest.fail(str(error))
