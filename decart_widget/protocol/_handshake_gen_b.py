"""Gen-B's handshake (``transport="livekit"``; docs/protocol.md, "Gen-B (LiveKit) handshake").

Once the socket opens the session asks for a room (``livekit_join``) and sends its initial state
as a frame of its own; its ack is awaited as in Gen-A, but the room does not wait for it. With no
prompt and no image the join is a passthrough one and there is nothing to ack. The server may
first put the session in its queue (``queue_position``): every deadline pauses there. The room is
joined (`JoinRoom`) when ``livekit_room_info`` comes, within ``room_info_timeout`` of the join
(time in the queue not counted), or the attempt is lost. Gen-A's media messages are ignored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._actions import Action, ClosePeer, Emit, JoinRoom, Send
from .messages import (
    Answer,
    IceCandidate,
    IceRestart,
    LivekitJoin,
    LivekitRoomInfo,
    QueuePosition,
    ServerMessage,
    SessionId,
)

if TYPE_CHECKING:
    from ._handshake import HandshakeHost
    from .messages import JSON

logger = logging.getLogger("decart_widget.protocol.handshake")

#: the room states that end it: a LiveKit client reports "disconnected" only after its own
#: reconnect attempts failed
_LOST = ("failed", "closed", "disconnected")


class GenBHandshake:
    """The ``"livekit"`` media handshake (a `MediaHandshake`; see the module docstring)."""

    name = "livekit"

    def __init__(self, host: HandshakeHost, *, room_info_timeout: float) -> None:
        self._host = host
        self._room_info_timeout = room_info_timeout
        self.started = False
        self._room_info_deadline: float | None = None
        self._queued_since: float | None = None
        self.queue: tuple[int, int | None] | None = None

    def begin(self, now: float) -> list[Action]:
        self._room_info_deadline = now + self._room_info_timeout
        skipped = self._host.skip_initial_state(now)
        if skipped is not None:
            return [Send(LivekitJoin(passthrough=True)), *skipped]
        return [Send(LivekitJoin()), self._host.send_initial_state(now)]

    def acked(self, now: float) -> list[Action]:
        return []  # the room is joined whenever its info comes

    def message(self, now: float, msg: ServerMessage) -> list[Action] | None:
        if isinstance(msg, LivekitRoomInfo):
            return self._on_room_info(now, msg)
        if isinstance(msg, QueuePosition):
            return self._on_queue_position(now, msg)
        if isinstance(msg, (Answer, IceCandidate, IceRestart, SessionId)):
            logger.debug("ignoring Gen-A %s on a LiveKit session", msg.type)
            return []
        return None

    def local_offer(self, sdp: str) -> list[Action]:
        return []

    def local_candidate(self, candidate: JSON | None) -> list[Action]:
        return []

    def lost(self, state: str) -> str | None:
        return f"room {state}" if state in _LOST else None

    def next_deadline(self) -> float | None:
        return self._room_info_deadline

    def expired(self, now: float) -> str | None:
        deadline = self._room_info_deadline
        if deadline is not None and now >= deadline:
            return f"no room info within {self._room_info_timeout:g} s"
        return None

    def close(self, now: float) -> list[Action]:
        actions: list[Action] = [ClosePeer()] if self.started else []
        self.started = False
        self._room_info_deadline = None
        return actions + self._leave_queue(now)

    def _on_queue_position(self, now: float, msg: QueuePosition) -> list[Action]:
        if self.started:
            logger.debug("ignoring queue_position after the room info")
            return []
        if self._queued_since is None:
            self._queued_since = now
        self.queue = (msg.position, msg.queue_size)
        return [Emit("queue", {"position": msg.position, "size": msg.queue_size})]

    def _leave_queue(self, now: float) -> list[Action]:
        """Out of the server's queue (the room info came, or the socket is gone): the core's paused
        deadlines resume where they stopped."""
        if self._queued_since is not None:
            self._host.postpone(now - self._queued_since)
            self._queued_since = None
        if self.queue is None:
            return []
        self.queue = None
        return [Emit("queue", None)]

    def _on_room_info(self, now: float, msg: LivekitRoomInfo) -> list[Action]:
        if self.started:
            logger.debug("ignoring a second livekit_room_info")
            return []
        actions = self._leave_queue(now)
        self._room_info_deadline = None
        self.started = True
        self._host.await_media(now)
        actions.append(JoinRoom(msg.livekit_url, msg.token, msg.room_name, msg.session_id))
        if msg.session_id is not None:
            actions += self._host.new_session_id(msg.session_id)
        return actions
