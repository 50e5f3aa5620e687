"""The sans-I/O protocol core: typed errors, messages, and the session state machine.

Nothing here does I/O. Transports (browser WebSocket, widget comm, websockets, aiohttp) are thin
adapters that feed `SessionCore` inputs and carry out its actions.
"""

from . import messages
from ._constants import MAX_IMAGE_BYTES
from ._errors import (
    ERROR_KINDS,
    AckTimeout,
    AuthenticationError,
    ConcurrencyLimit,
    ConnectionLost,
    DecartError,
    InsufficientCredits,
    InvalidInput,
    MissingDependency,
    ModerationError,
    ProtocolError,
    SessionEnded,
    classify,
    from_kind,
    is_permanent,
)
from ._session import (
    Action,
    AddRemoteCandidate,
    ApplyAnswer,
    ClosePeer,
    CloseSocket,
    ConnectionState,
    Emit,
    Fail,
    JoinRoom,
    OpenSocket,
    Resolve,
    RestartIce,
    RetryPolicy,
    Send,
    SessionCore,
    StartPeer,
    StateChanged,
)
from ._urls import build_stream_url, redact
from .messages import encode, parse_client, parse_server

__all__ = [
    "ERROR_KINDS",
    "MAX_IMAGE_BYTES",
    "AckTimeout",
    "Action",
    "AddRemoteCandidate",
    "ApplyAnswer",
    "AuthenticationError",
    "ClosePeer",
    "CloseSocket",
    "ConcurrencyLimit",
    "ConnectionLost",
    "ConnectionState",
    "DecartError",
    "Emit",
    "Fail",
    "InsufficientCredits",
    "InvalidInput",
    "JoinRoom",
    "MissingDependency",
    "ModerationError",
    "OpenSocket",
    "ProtocolError",
    "Resolve",
    "RestartIce",
    "RetryPolicy",
    "Send",
    "SessionCore",
    "SessionEnded",
    "StartPeer",
    "StateChanged",
    "build_stream_url",
    "classify",
    "encode",
    "from_kind",
    "is_permanent",
    "messages",
    "parse_client",
    "parse_server",
    "redact",
]
