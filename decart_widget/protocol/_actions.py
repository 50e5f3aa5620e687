"""The actions the session core returns, and the connection state it publishes.

Adapters carry actions out in order (docs/architecture.md, "Actions"). Shared by the session core
(`SessionCore`) and the update queue (`UpdateQueue`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from ._constants import CLOSE_NORMAL
from ._errors import DecartError
from .messages import JSON, ClientMessage


class ConnectionState(str, Enum):
    """The published ``connection_state``."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    GENERATING = "generating"
    RECONNECTING = "reconnecting"

    def __str__(self) -> str:
        return self.value


# ---- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenSocket:
    """Open the WebSocket (fresh token / URL). ``attempt``: 0 first, k for the k-th retry."""

    attempt: int


@dataclass(frozen=True)
class CloseSocket:
    code: int = CLOSE_NORMAL
    reason: str = ""


@dataclass(frozen=True)
class Send:
    message: ClientMessage


@dataclass(frozen=True)
class StartPeer:
    """Create the peer connection, add the local track, make an offer, call `local_offer`."""


@dataclass(frozen=True)
class ClosePeer:
    """Close the peer connection (Gen-A) or leave the room (Gen-B)."""


@dataclass(frozen=True)
class JoinRoom:
    """Gen-B: join the LiveKit room at ``url`` with ``token``, publish the input video, take the
    video of the participant whose identity starts with ``inference-server-``; report the room's
    state through `SessionCore.peer_state` (``connected`` once joined and published)."""

    url: str
    token: str
    room_name: str | None
    session_id: str | None


@dataclass(frozen=True)
class ApplyAnswer:
    sdp: str


@dataclass(frozen=True)
class AddRemoteCandidate:
    candidate: JSON | None


@dataclass(frozen=True)
class RestartIce:
    """Rebuild ICE with the given TURN server and re-offer (call `local_offer` again)."""

    turn_config: JSON | None


@dataclass(frozen=True)
class StateChanged:
    state: ConnectionState


@dataclass(frozen=True)
class Resolve:
    request_id: int
    superseded: bool = False


@dataclass(frozen=True)
class Fail:
    """The request failed: refused by the server, its ack timed out, invalid input, or the session
    ended before it was sent (``error`` says which)."""

    request_id: int
    error: DecartError


@dataclass(frozen=True)
class Emit:
    """``generation_tick`` (int seconds), ``session_id`` (str), ``error`` (a `DecartError`),
    ``generation_ended`` (the reason), ``queue`` (Gen-B: ``{"position": int, "size": int |
    None}`` while the session waits in line, None once it left the line)."""

    name: str
    value: object


Action: TypeAlias = (
    OpenSocket
    | CloseSocket
    | Send
    | StartPeer
    | ClosePeer
    | JoinRoom
    | ApplyAnswer
    | AddRemoteCandidate
    | RestartIce
    | StateChanged
    | Resolve
    | Fail
    | Emit
)
