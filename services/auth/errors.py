"""The auth service's exception tree, and its refusals (built by :mod:`sutazai.runtime.faults`).

AuthError     root of every error raised by :mod:`sutazai.services.auth`
└── Taken     store: a new account's username or e-mail address is already in use

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""

from __future__ import annotations

from sutazai.runtime.faults import RpcStatusError, already_exists, unauthenticated


class AuthError(Exception):
    """Root of every error raised by :mod:`sutazai.services.auth`."""


INVALID_CREDENTIALS = "invalid username or password"
"""The one answer to every failed sign-in: wrong password, unknown, locked or inactive."""


def invalid_credentials() -> RpcStatusError:
    """UNAUTHENTICATED for a failed sign-in, saying nothing about whether the account exists."""
    return unauthenticated(INVALID_CREDENTIALS)


ACCOUNT_TAKEN = "that username or e-mail address cannot be registered"
"""The one answer to a taken username or e-mail: it must not tell which (e-mails are private)."""


def account_taken() -> RpcStatusError:
    """ALREADY_EXISTS for a registration whose username or e-mail address is in use."""
    return already_exists(ACCOUNT_TAKEN, reason="ACCOUNT_EXISTS", domain="sutazai.auth")
