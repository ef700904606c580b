"""One exception tree per package root, drawn in its ``errors`` module and complete.

Every exception class a package root defines (the runtime, the gateway, the dashboard, each
operator tool under ``ops``, each service) must derive from that root's one root exception and
appear in the tree its ``errors`` module's docstring draws, under its real parent. A new
exception that skips the tree, or a drawing that has gone stale, fails here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import pytest

import sutazai.ops
import sutazai.services

# The root is the first line that starts with a name ending in "Error"; branches follow it,
# each indented by four characters per level ("│   ├── Name"), up to the next blank line.
ROOT_LINE = re.compile(r"^(?P<name>[A-Z]\w*Error)\b")
BRANCH_LINE = re.compile(r"^(?P<prefix>(?:[│ ]   )*[├└]── )(?P<name>[A-Z]\w*)\b")


def package_roots() -> list[str]:
    """The packages that each own one exception tree; new services and tools are found."""
    nested = [
        info.name
        for parent in (sutazai.ops, sutazai.services)
        for info in pkgutil.iter_modules(parent.__path__, f"{parent.__name__}.")
        if info.ispkg
    ]
    return [
        "sutazai.runtime",
        "sutazai.client",
        "sutazai.sdk",
        "sutazai.gateway",
        "sutazai.tui",
        *nested,
    ]


def modules_of(root: str) -> list[ModuleType]:
    """The root package and all its modules, except ``__main__`` (importing it runs it)."""
    package = importlib.import_module(root)
    names = [
        info.name
        for info in pkgutil.walk_packages(package.__path__, f"{root}.")
        if not info.name.endswith(".__main__")
    ]
    return [package, *(importlib.import_module(name) for name in names)]


def defined_exceptions(root: str) -> dict[str, type[BaseException]]:
    """Exception classes defined (not merely imported) in the modules of ``root``."""
    found: dict[str, type[BaseException]] = {}
    for module in modules_of(root):
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[name] = value
    return found


def drawn_tree(doc: str) -> dict[str, str | None]:
    """Each class drawn in ``doc`` with the class drawn as its parent (``None`` for the root)."""
    parents: dict[str, str | None] = {}
    path: list[str] = []
    for line in doc.splitlines():
        if not path:
            root = ROOT_LINE.match(line)
            if root is not None:
                parents[root["name"]] = None
                path.append(root["name"])
            continue
        if not line.strip():
            break
        branch = BRANCH_LINE.match(line)
        assert branch is not None, f"not a line of the tree: {line!r}"
        depth = len(branch["prefix"]) // 4
        del path[depth:]
        parents[branch["name"]] = path[-1]
        path.append(branch["name"])
    return parents


@pytest.mark.parametrize("root", package_roots())
def test_every_exception_is_in_its_package_tree(root: str) -> None:
    exceptions = defined_exceptions(root)
    if not exceptions:
        return  # nothing raised of its own: no tree to draw
    errors = importlib.import_module(f"{root}.errors")
    drawn = drawn_tree(errors.__doc__ or "")
    roots = [name for name, parent in drawn.items() if parent is None]
    assert len(roots) == 1, f"{root}.errors must draw one root, drew {roots}"
    base = exceptions.get(roots[0])
    assert base is not None, f"{root}.errors draws {roots[0]}, which {root} does not define"
    assert base.__bases__ == (Exception,), f"{roots[0]} must derive from Exception directly"
    for name, cls in exceptions.items():
        assert issubclass(cls, base), f"{cls.__module__}.{name} does not derive from {roots[0]}"
        assert name in drawn, f"{cls.__module__}.{name} is missing from {root}.errors' tree"
        if cls is not base:
            parent = drawn[name]
            assert cls.__bases__ == (exceptions[parent or ""],), (
                f"{name} is drawn under {parent}, but derives from "
                f"{', '.join(b.__name__ for b in cls.__bases__)}"
            )
    stale = set(drawn) - set(exceptions)
    assert not stale, f"{root}.errors draws classes {root} does not define: {sorted(stale)}"


def test_the_tree_reader_sees_branches_and_depth() -> None:
    doc = "\n".join(
        [
            "The Example tree, in prose first.",
            "",
            "RootError       the root",
            "├── Alpha       one",
            "│   └── Beta    under alpha",
            "│       └── Pi  under beta",
            "└── Gamma       two",
            "",
            "Delta is prose again.",
        ]
    )
    assert drawn_tree(doc) == {
        "RootError": None,
        "Alpha": "RootError",
        "Beta": "Alpha",
        "Pi": "Beta",
        "Gamma": "RootError",
    }
