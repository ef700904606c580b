"""The environment of child processes: the supervisor's settings, without a single secret.

A child rebuilds the supervisor's :class:`MeshSettings` from ``SUTAZAI_*`` variables, except
secret values (external DSNs and URLs, passwords): those reach a child, if it is the principal
they belong to, through its own credentials file (:mod:`.credentials`), never through its
environment or command line, where other processes of the same user could read them.
"""

from __future__ import annotations

import json
import os
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import to_jsonable_python

from sutazai.runtime.settings import MeshSettings

ENV_PREFIX = "SUTAZAI_"
NESTED = "__"
NATS_USER = f"{ENV_PREFIX}NATS{NESTED}USER"
"""The variable naming the NATS principal a child connects as."""
PRINCIPAL = f"{ENV_PREFIX}PRINCIPAL"
"""The variable naming the principal a child is."""
CREDENTIALS_FILE = f"{ENV_PREFIX}CREDENTIALS_FILE"
"""The variable holding the path of a child's own credentials file."""


def settings_environment(settings: MeshSettings) -> dict[str, str]:
    """``SUTAZAI_*`` variables from which ``MeshSettings()`` equals ``settings``, secrets aside.

    Settings built in code (the test harness picks free ports) reach children this way, not
    only those that came from the environment. Secret values are left out: a process started
    with these variables as an administrator reads them from ``secrets.json`` (embedded
    servers) or from its own environment (external ones); a child from its credentials file.
    """
    return _flatten(settings, ENV_PREFIX)


def child_environment(
    settings: MeshSettings, inherited: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a child process.

    The supervisor's own environment (``PATH``, locale, other ``SUTAZAI_*`` variables), without
    the variables of secret settings (an operator's ``SUTAZAI_POSTGRES__DSN``…) and without a
    credentials file of its own, overlaid with :func:`settings_environment`, which wins where
    both set a variable.
    """
    base = dict(os.environ if inherited is None else inherited)
    for name in (*_secret_variables(MeshSettings, ENV_PREFIX), CREDENTIALS_FILE):
        base.pop(name, None)
    base.update(settings_environment(settings))
    return base


def principal_environment(
    settings: MeshSettings, env: Mapping[str, str], principal: str, credentials: Path
) -> dict[str, str]:
    """``env`` for the child of ``principal``, whose own credentials are in ``credentials``.

    The child connects to NATS as that principal (an external NATS keeps its one configured
    user), to PostgreSQL as its role and to Redis as its user, and knows no other secret.
    """
    return {
        **env,
        PRINCIPAL: principal,
        NATS_USER: settings.as_principal(principal).nats.user,
        CREDENTIALS_FILE: str(credentials.resolve()),
    }


def _secret_variables(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, info in model.model_fields.items():
        annotation = info.annotation
        key = f"{prefix}{name.upper()}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _secret_variables(annotation, key + NESTED)
        elif annotation is SecretStr or SecretStr in typing.get_args(annotation):
            yield key


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
            continue
        elif isinstance(value, Path):
            flat[key] = str(value.resolve())
        elif isinstance(value, str | int | float):
            flat[key] = str(value)
        else:
            # Collections (e.g. the CORS origins): pydantic-settings reads these as JSON.
            flat[key] = json.dumps(to_jsonable_python(value))
    return flat
