"""Messages the screens send up to the app (they bubble from a screen to the app)."""

from __future__ import annotations

from textual.message import Message

from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.tui.source import ConnectionState


class SignedIn(Message):
    """Someone signed in (or a saved session was resumed)."""

    def __init__(self, user: auth_pb.User) -> None:
        super().__init__()
        self.user = user


class SessionLost(Message):
    """The session ended (refresh refused, signed out elsewhere): back to the sign-in screen."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class ConnectionChanged(Message):
    """The client lost or regained the mesh."""

    def __init__(self, state: ConnectionState) -> None:
        super().__init__()
        self.state = state
