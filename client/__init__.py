"""The Python client of the mesh: one place that knows channels, tokens, deadlines, reconnects.

The dashboard (``sutazai.tui``) and the CLI (``sutazai.ops.cli``) reach the mesh only through
it, through Envoy like any other client. :class:`MeshClient` is the entry point; see
``docs/client.md``.
"""

from sutazai.client.errors import (
    CallFailed,
    ClientError,
    MeshUnavailable,
    SessionEnded,
    TokenFileError,
)
from sutazai.client.mesh import MeshClient
from sutazai.client.streams import ConnectionState, ReconnectPolicy
from sutazai.client.tokens import (
    FileTokenStore,
    MemoryTokenStore,
    SessionTokens,
    SharedTokenStore,
    TokenStore,
)

__all__ = [
    "CallFailed",
    "ClientError",
    "ConnectionState",
    "FileTokenStore",
    "MemoryTokenStore",
    "MeshClient",
    "MeshUnavailable",
    "ReconnectPolicy",
    "SessionEnded",
    "SessionTokens",
    "SharedTokenStore",
    "TokenFileError",
    "TokenStore",
]
