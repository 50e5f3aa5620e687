"""The Gen-B (LiveKit) half of a ``/v1/stream`` session: join, queue, room info, room states.

A session becomes Gen-B with its first ``livekit_join`` (docs/protocol.md, "Gen-B (LiveKit)
handshake"). `RoomLink.join` then, in order:

1. applies the join's ``initial_state`` (a ``prompt`` or ``set_image`` message) if it has one:
   it is acked like any other;
2. waits in the `RoomQueue` when ``room_capacity`` is reached, sending ``queue_position``;
3. holds the room info back until the initial state is answered when the join says one is coming
   (``passthrough: false``) and the client did not ask for early room info
   (``livekit_early_room_info=true``, which Decart's Python SDK sends because it sends its
   initial state only after the room info); ``STATE_HOLD_SECONDS`` at most;
4. opens the session's room in the emulator's room server and sends
   ``livekit_room_info {livekit_url, token, room_name, session_id}``.

The room reports its media state: ``connected`` (the user's video reached the room) starts
generation exactly as a connected Gen-A peer does, ``failed`` ends the session like a failed
peer, ``left`` (the user left the room) ends it as a disconnect. Whatever ends the session
closes the room (the user is disconnected from it) and frees its place in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .. import models
from ..protocol._urls import url_host
from ..protocol.messages import LivekitJoin, LivekitRoomInfo, QueuePosition
from ._effects import Effect

if TYPE_CHECKING:
    from ._stream import StreamSession

log = logging.getLogger("decart_widget.emulator.gen_b")

#: The URL parameter of Decart's Python SDK: room info right after the join.
EARLY_ROOM_INFO_PARAM = "livekit_early_room_info"
#: How long room info waits for an announced initial state (the JS SDK gives up after 15 s).
STATE_HOLD_SECONDS = 10.0
ROOM_CLOSE_TIMEOUT = 5.0


class Room(Protocol):
    """One session's LiveKit room in the emulator's room server."""

    @property
    def name(self) -> str: ...

    def user_token(self) -> str: ...

    async def close(self, reason: str = "") -> None: ...


class RoomHost(Protocol):
    """The emulator's LiveKit-compatible room server (serves ``/rtc`` on the emulator's port)."""

    def open_room(
        self,
        session_id: str,
        *,
        effect: Callable[[], Effect | None],
        on_frame_received: Callable[[], None],
        on_frame_sent: Callable[[], None],
        on_state: Callable[[str], None],
        ttl_seconds: float = 600,
        frame_size: tuple[int, int] = ...,
        ice_servers: Sequence[Mapping[str, Any]] = (),
    ) -> Room: ...


def early_room_info(query: object) -> bool:
    """True when the stream URL asked for room info before the initial state."""
    get = getattr(query, "get", None)
    value = get(EARLY_ROOM_INFO_PARAM) if get is not None else None
    return isinstance(value, str) and value.strip().lower() in ("1", "true", "yes")


class RoomLink:
    """The Gen-B side of one session (created on its ``livekit_join``)."""

    def __init__(self, session: StreamSession) -> None:
        self.session = session
        self.room: Room | None = None
        self._queued = False

    async def join(self, message: LivekitJoin) -> None:
        session = self.session
        if message.initial_state is not None:
            await session.apply_state(message.initial_state)
        hold = (
            message.passthrough is False
            and not message.has_initial_state
            and not early_room_info(session.request.query)
            and not session.state_answered.is_set()
        )
        session.spawn(self._open(hold))

    async def _open(self, hold_for_state: bool) -> None:
        session = self.session
        services = session.services
        rooms = services.rooms
        if rooms is None:
            await session.fail_join(
                "livekit_join: this emulator has no LiveKit room server "
                "(install the 'livekit-protocol' package)"
            )
            return
        self._queued = True
        ticket = services.queue.enter(session.id)
        async for position, size in ticket.updates():
            session.log.queued(position)
            await session.send(QueuePosition(position=position, queue_size=size))
        if hold_for_state:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(session.state_answered.wait(), STATE_HOLD_SECONDS)
        model = models.get(session.admission.model)
        room = rooms.open_room(
            session.id,
            effect=session.current_effect,
            on_frame_received=session.log.frame_received,
            on_frame_sent=session.log.frame_sent,
            on_state=self._room_state,
            frame_size=(model.width, model.height),  # the placeholder's, until the camera's
            ice_servers=session.ice_servers,
        )
        self.room = room
        session.log.room(room.name)
        log.info("session %s: room %s opened", session.id, room.name)
        await session.send(
            LivekitRoomInfo(
                livekit_url=self.livekit_url(),
                token=room.user_token(),
                room_name=room.name,
                session_id=session.id,
            )
        )
        session.media_address_sent()

    def livekit_url(self) -> str:
        """The room server's address: this emulator, as the client reached it.

        The control request's host (what the client, or the proxy in front, dialled) on the
        emulator's own port; the bound host when the request names none.
        """
        session = self.session
        host = session.request.url.host or session.services.config.host
        return f"ws://{url_host(host)}:{session.services.port}"

    def _room_state(self, state: str) -> None:
        log.debug("session %s: room %s", self.session.id, state)
        if state == "left":
            self.session.left_room()
        else:
            self.session.media_state(state)

    async def close(self, reason: str) -> None:
        """Disconnect the user and close the room; give back the place in the queue."""
        room, self.room = self.room, None
        if room is not None:
            try:
                await asyncio.wait_for(room.close(reason), ROOM_CLOSE_TIMEOUT)
            except Exception:
                log.warning("session %s: closing room failed", self.session.id, exc_info=True)
        if self._queued:
            self._queued = False
            self.session.services.queue.leave(self.session.id)
