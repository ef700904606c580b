"""The environment of child processes: enough to rebuild the supervisor's own MeshSettings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from sutazai.services.runtime.settings import MeshSettings

ENV_PREFIX = "SUTAZAI_"
NESTED = "__"


def settings_environment(settings: MeshSettings) -> dict[str, str]:
    """``SUTAZAI_*`` variables from which ``MeshSettings()`` in a child equals ``settings``.

    Settings built in code (the test harness picks free ports) reach children this way, not
    only those that came from the environment. Secret values are included: the environment of
    a process is private to its user, like the 0600 secrets file.
    """
    return _flatten(settings, ENV_PREFIX)


def child_environment(
    settings: MeshSettings, inherited: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a child process.

    The supervisor's own environment (``PATH``, locale, other ``SUTAZAI_*`` variables), overlaid
    with :func:`settings_environment`, which wins where both set a variable.
    """
    base = dict(os.environ if inherited is None else inherited)
    base.update(settings_environment(settings))
    return base


def _flatten(model: BaseModel, prefix: str) -> dict[str, str]:
    flat: dict[str, str] = {}
    for name in type(model).model_fields:
        value: Any = getattr(model, name)
        key = f"{prefix}{name.upper()}"
        if value is None:
            continue
        if isinstance(value, BaseModel):
            flat.update(_flatten(value, key + NESTED))
        elif isinstance(value, SecretStr):
            flat[key] = value.get_secret_value()
        elif isinstance(value, Path):
            flat[key] = str(value.resolve())
        else:
            flat[key] = str(value)
    return flat
