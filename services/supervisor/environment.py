"""The environment of child processes: enough to rebuild the supervisor's own MeshSettings."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import to_jsonable_python

from sutazai.services.runtime.settings import MeshSettings

ENV_PREFIX = "SUTAZAI_"
NESTED = "__"
NATS_USER = f"{ENV_PREFIX}NATS{NESTED}USER"
"""The variable naming the NATS principal a child connects as."""


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


def principal_environment(
    settings: MeshSettings, env: Mapping[str, str], principal: str
) -> dict[str, str]:
    """``env`` for a child that connects to NATS as ``principal`` (``SUTAZAI_NATS__USER``).

    The child then authenticates with that principal's password from the secrets file and gets
    only its permissions. An external NATS keeps its one configured user
    (:meth:`MeshSettings.as_nats_principal`).
    """
    return {**env, NATS_USER: settings.as_nats_principal(principal).nats.user}


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
        elif isinstance(value, str | int | float):
            flat[key] = str(value)
        else:
            # Collections (e.g. the CORS origins): pydantic-settings reads these as JSON.
            flat[key] = json.dumps(to_jsonable_python(value))
    return flat
