"""The auth service's entries in the mesh's audit log, and paging through the log for admins.

The server interceptor already audits every call of an RPC marked ``audited`` and every
PERMISSION_DENIED; these are the domain actions only the service can see (a failed sign-in and
why, a lock-out, a reused refresh token, who changed whose role).
"""

from __future__ import annotations

import structlog

from sutazai.runtime import context as rpc_context
from sutazai.runtime.audit import OK, AuditEvent, AuditLog
from sutazai.runtime.faults import invalid_argument
from sutazai.services.auth.domain import PageLimits, decode_page_token, encode_page_token

log = structlog.get_logger(__name__)

LOGIN = "auth.login"
LOCKOUT = "auth.lockout"
REFRESH_REUSED = "auth.refresh_reused"
LOGOUT = "auth.logout"
REGISTER = "auth.register"
CREATED_BY_CLI = "auth.user_created_by_cli"
PASSWORD_CHANGED = "auth.password_changed"  # noqa: S105 - an action name
ROLE_CHANGED = "auth.role_changed"
DEACTIVATED = "auth.user_deactivated"
SESSIONS_REVOKED = "auth.sessions_revoked"
UNLOCKED = "auth.user_unlocked"

AUDIT_PAGE = PageLimits(default=100, maximum=500)
MAX_FILTER = 256
_LISTING = "audit"


class Trail:
    """Writes the service's audit events and pages through the whole log."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    async def record(
        self, action: str, outcome: str = OK, *, actor: str = "", target: str = "", detail: str = ""
    ) -> None:
        """Append one event, tagged with the current request id.

        A failed write is logged loudly rather than failing the call: the action it describes
        has already happened (a sign-in, a revocation) and must not be reported as failed.
        """
        event = AuditEvent(
            action=action,
            outcome=outcome,
            actor=actor,
            target=target,
            detail=detail,
            request_id=rpc_context.request_id.get() or "",
        )
        try:
            await self._audit.record(event)
        except Exception:
            log.exception("audit.write_failed", action=action, outcome=outcome)

    async def page(
        self, *, page_size: int, page_token: str, actor: str, action: str
    ) -> tuple[list[AuditEvent], str]:
        """One page of events, newest first, and the token of the next (older) page.

        Raises:
            RpcStatusError: INVALID_ARGUMENT naming each bad field.

        """
        violations = {}
        size = AUDIT_PAGE.size(page_size)
        if size is None:
            violations["page_size"] = AUDIT_PAGE.problem()
        before = decode_page_token(_LISTING, page_token) if page_token else None
        if page_token and not isinstance(before, int):
            violations["page_token"] = "not from a previous ListAuditEvents response"  # noqa: S105
        for field, value in (("actor", actor), ("action", action)):
            if len(value) > MAX_FILTER:
                violations[field] = f"must be at most {MAX_FILTER} characters"
        if violations or size is None:
            raise invalid_argument(violations)
        # One more than asked tells whether another page follows.
        events = await self._audit.page(
            limit=size + 1,
            before=before if isinstance(before, int) else None,
            actor=actor,
            action=action,
        )
        if len(events) <= size:
            return events, ""
        shown = events[:size]
        return shown, encode_page_token(_LISTING, shown[-1].event_id)
