"""Which screens a role sees: the same rule the protos declare for the calls behind them.

Identity needs ``admin`` (``ListUsers``, ``SetUserRole``, audit events are admin-only); Logs
needs ``operator`` (``ListLogs``/``TailLogs``); Overview, Services, Chat, Models, Agents, Tasks
and Hardware need only a session. Within them, what needs ``operator`` (see
:func:`may_operate`): the Models screen's actions and cache figures (``LoadModel``,
``UnloadModel``, ``ResetBreaker``, ``GetCacheStats``, ``ClearCache``); the Agents screen's
coordinator figures, streams and strategy (``CoordinatorService``); the Tasks screen's
every-user view and dead letters (``ListDeadLetters``, ``RequeueDeadLetter``); the Hardware
screen's optimisations and quarantine (``CleanFiles`` ... ``ReclaimMemory``, ``ListQuarantine``,
``RestoreQuarantined``). Purging the quarantine (``PurgeQuarantine``) needs ``admin``
(:func:`may_administer`). A screen a role may not use is not installed at all, so its key,
footer entry and palette commands do not exist for that user.
"""

from __future__ import annotations

from dataclasses import dataclass

from sutazai.auth.v1 import access_pb2
from sutazai.tui.errors import NotPermittedError

_RANK: dict[int, int] = {
    access_pb2.ROLE_USER: 1,
    access_pb2.ROLE_OPERATOR: 2,
    access_pb2.ROLE_ADMIN: 3,
}


@dataclass(frozen=True, slots=True)
class ScreenEntry:
    """One switchable screen: its mode name, key, title and the least role that sees it."""

    name: str
    key: str
    title: str
    least_role: int


SCREENS: tuple[ScreenEntry, ...] = (
    ScreenEntry("overview", "1", "Overview", access_pb2.ROLE_USER),
    ScreenEntry("services", "2", "Services", access_pb2.ROLE_USER),
    ScreenEntry("identity", "3", "Identity", access_pb2.ROLE_ADMIN),
    ScreenEntry("logs", "4", "Logs", access_pb2.ROLE_OPERATOR),
    ScreenEntry("chat", "5", "Chat", access_pb2.ROLE_USER),
    ScreenEntry("models", "6", "Models", access_pb2.ROLE_USER),
    ScreenEntry("agents", "7", "Agents", access_pb2.ROLE_USER),
    ScreenEntry("tasks", "8", "Tasks", access_pb2.ROLE_USER),
    ScreenEntry("hardware", "9", "Hardware", access_pb2.ROLE_USER),
)
"""Every screen in key order."""


def may_use(role: int, entry: ScreenEntry) -> bool:
    """Whether ``role`` may open ``entry`` (an unknown role sees nothing)."""
    return _RANK.get(role, 0) >= _RANK[entry.least_role]


def may_operate(role: int) -> bool:
    """Whether ``role`` may take operator actions (the protos' ``ROLE_OPERATOR`` calls)."""
    return _RANK.get(role, 0) >= _RANK[access_pb2.ROLE_OPERATOR]


def may_administer(role: int) -> bool:
    """Whether ``role`` may take admin actions (the protos' ``ROLE_ADMIN`` calls)."""
    return _RANK.get(role, 0) >= _RANK[access_pb2.ROLE_ADMIN]


def screens_for(role: int) -> list[ScreenEntry]:
    """The screens ``role`` may open, in key order."""
    return [entry for entry in SCREENS if may_use(role, entry)]


def entry(name: str, role: int) -> ScreenEntry:
    """The screen called ``name``, checked against ``role``.

    Raises:
        NotPermittedError: ``role`` may not open it, or there is no such screen.

    """
    for candidate in SCREENS:
        if candidate.name == name:
            if not may_use(role, candidate):
                raise NotPermittedError(f"the {candidate.title} screen needs a higher role")
            return candidate
    raise NotPermittedError(f"no screen called {name!r}")
