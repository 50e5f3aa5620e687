"""Gen-A's handshake (``transport="webrtc"``; docs/protocol.md, "Gen-A (WebRTC) handshake").

Once the socket opens the initial state goes out; once it is answered (accepted or not) the peer
connection starts (`StartPeer`), and its SDP offer and answer and its ICE candidates travel over
the same socket. Candidates that arrive before the answer wait for it (a peer connection cannot
take them earlier); an ``ice-restart`` rebuilds ICE with the server's TURN relay and re-offers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._actions import (
    Action,
    AddRemoteCandidate,
    ApplyAnswer,
    ClosePeer,
    RestartIce,
    Send,
    StartPeer,
)
from .messages import JSON, Answer, IceCandidate, IceRestart, Offer, ServerMessage, SessionId

if TYPE_CHECKING:
    from ._handshake import HandshakeHost

logger = logging.getLogger("decart_widget.protocol.handshake")

#: the peer connection states that end it ("disconnected" is not one: ICE often recovers from it)
_LOST = ("failed", "closed")


class GenAHandshake:
    """The ``"webrtc"`` media handshake (a `MediaHandshake`; see the module docstring)."""

    name = "webrtc"
    queue = None  # Gen-A has no server queue

    def __init__(self, host: HandshakeHost) -> None:
        self._host = host
        self.started = False
        self._answered = False
        self._early_candidates: list[JSON | None] = []

    def begin(self, now: float) -> list[Action]:
        return [self._host.send_initial_state(now)]

    def acked(self, now: float) -> list[Action]:
        self.started = True
        self._host.await_media(now)
        return [StartPeer()]

    def message(self, now: float, msg: ServerMessage) -> list[Action] | None:
        if isinstance(msg, Answer):
            return self._on_answer(msg)
        if isinstance(msg, IceCandidate):
            if not self._answered:
                self._early_candidates.append(msg.candidate)
                return []
            return [AddRemoteCandidate(msg.candidate)]
        if isinstance(msg, IceRestart):
            if not self.started:
                return []
            self._answered = False
            return [RestartIce(msg.turn_config)]
        if isinstance(msg, SessionId):
            return self._host.new_session_id(msg.session_id)
        return None

    def local_offer(self, sdp: str) -> list[Action]:
        return [Send(Offer(sdp))] if self.started else []

    def local_candidate(self, candidate: JSON | None) -> list[Action]:
        return [Send(IceCandidate(candidate))] if self.started else []

    def lost(self, state: str) -> str | None:
        return f"peer connection {state}" if state in _LOST else None

    def next_deadline(self) -> float | None:
        return None

    def expired(self, now: float) -> str | None:
        return None

    def close(self, now: float) -> list[Action]:
        actions: list[Action] = [ClosePeer()] if self.started else []
        self.started = False
        self._answered = False
        self._early_candidates.clear()
        return actions

    def _on_answer(self, msg: Answer) -> list[Action]:
        if not self.started or self._answered:
            logger.debug("ignoring an unexpected answer")
            return []
        self._answered = True
        early, self._early_candidates = self._early_candidates, []
        return [ApplyAnswer(msg.sdp), *(AddRemoteCandidate(c) for c in early)]
