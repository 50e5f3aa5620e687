"""What the headless client's media links need from `RealtimeSession`.

A media link carries out the session core's media actions (docs/architecture.md, "Actions"):
`PeerLink` (``_webrtc.py``, Gen-A: an aiortc peer connection negotiated over the control socket)
or `RoomLink` (``_livekit.py``, Gen-B: a LiveKit room). Both read the session's source track,
deliver the transformed video as `av.VideoFrame` objects and report their media state back to
the core through a `MediaHost`.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, ClassVar, Protocol

from av import VideoFrame

from ..protocol import AddRemoteCandidate, ApplyAnswer, JoinRoom, RestartIce, StartPeer

#: The session core's actions that a media link carries out.
MediaAction = StartPeer | RestartIce | ApplyAnswer | AddRemoteCandidate | JoinRoom


class MediaHost(Protocol):
    def media_state(self, state: str) -> None:
        """The media connection's state, for the core's ``peer_state`` input."""

    def local_offer(self, sdp: str) -> None:
        """Gen-A: the peer connection's offer, with every candidate in it."""

    def deliver(self, frame: VideoFrame) -> None:
        """One transformed frame, for the session's readers."""

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a task that the session cancels when it shuts down."""


class MediaLink(Protocol):
    """One media transport for `RealtimeSession`; the session never asks which one it holds."""

    #: what did not come up when a connect times out after the service answered
    MEDIA_NAME: ClassVar[str]

    async def handle(self, action: MediaAction) -> None:
        """Carry out one media action of the core (actions of the other transport are ignored)."""

    async def close(self) -> None:
        """Leave the room or close the peer connection; the source track stays open."""
