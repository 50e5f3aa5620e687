"""`Room`: one session's LiveKit room -- the user, the inference participant, and their media.

A room is opened by the control channel (`RoomServer.open_room`) and admits one user: the
identity its `user_token` names. The inference participant (``inference-server-<hex>``) is
there from the start with one published video track. A second join with the user's token (a
client's full reconnect) replaces the first connection, as LiveKit does for a duplicate
identity. The room reports to the control channel through ``on_state``:

* ``"connected"``: the first frame of the user's camera reached the room (once per room);
* ``"failed"``: a peer connection of the user failed;
* ``"left"``: the user left (a ``leave`` request, or the signal socket closed and no new join
  came within `REJOIN_GRACE_SECONDS`).

A room that nobody joins within its ``ttl_seconds`` (the token's lifetime) closes itself.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from livekit.protocol import models as lk

from .._effects import Effect
from . import tokens
from .connection import LEFT, UserConnection
from .participants import Participant, new_sid, room_info
from .publisher import PublisherPeer
from .signal import SignalSocket

log = logging.getLogger("decart_widget.emulator.livekit.room")

#: How long a user whose signal socket closed without a ``leave`` may take to join again.
REJOIN_GRACE_SECONDS = 10.0
#: The inference participant's frame size until the room is told the model's.
DEFAULT_FRAME_SIZE = (1280, 720)

EffectSource = Callable[[], Effect | None]


class Room:
    """One LiveKit room of the emulator."""

    def __init__(
        self,
        name: str,
        *,
        secret: bytes,
        node_id: str,
        effect: EffectSource,
        on_frame_received: Callable[[], None],
        on_frame_sent: Callable[[], None],
        on_state: Callable[[str], None],
        ttl_seconds: float = 600,
        frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE,
        ice_servers: Sequence[Mapping[str, Any]] = (),
        on_closed: Callable[[Room], None] | None = None,
    ) -> None:
        self.name = name
        self.sid = new_sid("RM")
        self.node_id = node_id
        self.created_at = time.time()
        self.effect = effect
        self.frame_size = frame_size
        #: for the room's peer connections, and offered to the user in its join response
        self.ice_servers = tuple(dict(server) for server in ice_servers)
        self.user_identity = "user-" + secrets.token_hex(4)
        self.inference = Participant(
            identity="inference-server-" + secrets.token_hex(4), state=lk.ParticipantInfo.ACTIVE
        )
        self.inference_track_sid = new_sid("TR")
        self.inference.tracks[self.inference_track_sid] = lk.TrackInfo(
            sid=self.inference_track_sid,
            type=lk.TrackType.VIDEO,
            name="inference",
            width=frame_size[0],
            height=frame_size[1],
            source=lk.TrackSource.CAMERA,
            mime_type="video/VP8",
            layers=[
                lk.VideoLayer(
                    quality=lk.VideoQuality.HIGH, width=frame_size[0], height=frame_size[1]
                )
            ],
        )
        self.closed = False
        self.publisher_codec: str | None = None
        self.simulcast_layer: str | None = None
        self._secret = secret
        self._ttl = ttl_seconds
        self._on_frame_received = on_frame_received
        self._on_frame_sent = on_frame_sent
        self._on_state = on_state
        self._on_closed = on_closed
        self._connection: UserConnection | None = None
        self._connected_reported = False
        self._left_reported = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = self._spawn(self._close_if_unjoined())
        self._rejoin: asyncio.Task[Any] | None = None

    # ---- the control channel's side -------------------------------------------------------------

    @property
    def token_refresh_seconds(self) -> float:
        """How often a connected user gets a fresh token (half a token's lifetime)."""
        return max(1.0, self._ttl / 2)

    def user_token(self) -> str:
        """An access token for the user: join, publish and subscribe, for ``ttl_seconds``."""
        return tokens.mint(
            self._secret, identity=self.user_identity, room=self.name, ttl_seconds=self._ttl
        )

    async def close(self, reason: str = "") -> None:
        """Send ``leave`` to the user (no reconnect) and close the peers; idempotent."""
        await self._close(lk.DisconnectReason.ROOM_DELETED, reason)

    async def _close(self, why: lk.DisconnectReason, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        log.info("room %s closed%s", self.name, f": {reason}" if reason else "")
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.leave(why)
        if self._on_closed is not None:
            self._on_closed(self)

    async def shutdown(self) -> None:
        """Close for the emulator's shutdown (the client hears "server shutdown")."""
        await self._close(lk.DisconnectReason.SERVER_SHUTDOWN, "server shutdown")

    def drop_signal(self) -> bool:
        """Abort the user's signal socket as a network loss would (a fault for tests: the
        client reconnects); False when the user is not connected."""
        if self._connection is None:
            return False
        self._connection.socket.abort()
        return True

    # ---- what connections report ----------------------------------------------------------------

    def info(self) -> lk.Room:
        return room_info(self.sid, self.name, self.created_at, 2 if self._connection else 1)

    def new_track_sid(self) -> str:
        return new_sid("TR")

    def frame_received(self) -> None:
        self._on_frame_received()
        if not self._connected_reported:
            self._connected_reported = True
            self._on_state("connected")

    def frame_sent(self) -> None:
        self._on_frame_sent()

    def media_state(self, state: str) -> None:
        if state == "failed" and not self.closed:
            self._on_state("failed")

    @property
    def media_path_up(self) -> bool:
        """Whether the user's publishing peer connection is connected (its first frame, which
        says ``"connected"``, may still be decoding on a busy machine)."""
        connection = self._connection
        return connection is not None and connection.publisher.connected

    def publisher_negotiated(self, publisher: PublisherPeer) -> None:
        self.publisher_codec = publisher.video_codec or self.publisher_codec
        self.simulcast_layer = publisher.simulcast_layer or self.simulcast_layer

    # ---- joins ----------------------------------------------------------------------------------

    async def serve(self, socket: SignalSocket, grant: tokens.Grant) -> None:
        """Serve one join of the user until it ends."""
        self._idle.cancel()
        if self._rejoin is not None:
            self._rejoin.cancel()
            self._rejoin = None
        previous = self._connection
        if previous is not None:
            log.info("room %s: the user joined again, replacing the previous connection", self.name)
            self._connection = None
            await previous.leave(lk.DisconnectReason.DUPLICATE_IDENTITY)
        participant = Participant(
            identity=grant.identity,
            can_publish=grant.can_publish,
            can_subscribe=grant.can_subscribe,
            can_publish_data=grant.can_publish_data,
        )
        connection = UserConnection(self, socket, participant)
        self._connection = connection
        log.info("room %s: %s joined", self.name, grant.identity)
        outcome = await connection.run()
        if self._connection is not connection or self.closed:
            return  # replaced by a newer join, or closed by the control channel
        self._connection = None
        if outcome == LEFT:
            self._report_left()
        else:
            self._rejoin = self._spawn(self._left_unless_rejoined())

    def _report_left(self) -> None:
        if not self._left_reported and not self.closed:
            self._left_reported = True
            self._on_state("left")

    async def _left_unless_rejoined(self) -> None:
        await asyncio.sleep(REJOIN_GRACE_SECONDS)
        self._report_left()

    async def _close_if_unjoined(self) -> None:
        await asyncio.sleep(self._ttl)
        log.info("room %s: nobody joined within %s s", self.name, self._ttl)
        await self._close(lk.DisconnectReason.ROOM_CLOSED, "nobody joined")

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __repr__(self) -> str:
        return f"Room({self.name!r}, user={'in' if self._connection else 'out'})"
