"""One user's signal connection to a room: join, both peer connections, and the requests.

On join the room sends ``join`` (the room, the user, the inference participant with its video
track, ``subscriber_primary`` as LiveKit does for a participant that may subscribe, ping
interval and timeout, server info, the ICE servers of its peers) and at once an ``offer`` on the
subscriber peer connection carrying the inference track. Then, in order, as the client sends them:

===================  ==================================================================
request              answer
===================  ==================================================================
``offer``            the publisher peer's ``answer`` (same ``id``)
``answer``           applied to the subscriber peer
``trickle``          added to the peer its ``target`` names
``add_track``        ``track_published`` (a ``TR_`` sid), then a participant ``update``
``mute``             the track's ``muted`` flag, then a participant ``update``
``ping``/``ping_req``  ``pong`` (server time, ms) / ``pong_resp``
``leave``            the user has left: peers closed, socket closed
anything else        ignored (subscription and quality settings have one layer to act on)
===================  ==================================================================

Like LiveKit's server, the room also sends ``refresh_token`` (a fresh access token) at join and
then every half token lifetime, so a client can rejoin after its first token expired.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from livekit.protocol import models as lk
from livekit.protocol import rtc as proto

from .._media import EffectTrack
from .inference import InferenceTrack
from .participants import (
    PING_INTERVAL_SECONDS,
    PING_TIMEOUT_SECONDS,
    SERVER_VERSION,
    Participant,
    server_info,
)
from .publisher import PublishedTracks, PublisherPeer
from .signal import SignalSocket
from .subscriber import SubscriberPeer

if TYPE_CHECKING:
    from .room import Room

log = logging.getLogger("decart_widget.emulator.livekit.connection")

LEFT = "left"
CLOSED = "closed"


def _candidate(init: str) -> dict[str, Any] | None:
    """The candidate object of a trickle's ``candidateInit`` JSON (None: end of candidates)."""
    try:
        value = json.loads(init) if init else None
    except ValueError:
        return None
    if not isinstance(value, dict) or not value.get("candidate"):
        return None
    return value


def _mime_type(request: proto.AddTrackRequest) -> str:
    for codec in request.simulcast_codecs:
        if codec.codec:
            name = codec.codec
            return name if "/" in name else f"video/{name.upper()}"
    return "audio/opus" if request.type == lk.TrackType.AUDIO else ""


class UserConnection:
    """Serves one signal WebSocket of the room's user."""

    def __init__(self, room: Room, socket: SignalSocket, participant: Participant) -> None:
        self.room = room
        self.socket = socket
        self.participant = participant
        self.effect_track = EffectTrack(room.effect, room.frame_received, room.frame_sent)
        width, height = room.frame_size
        self.inference_track = InferenceTrack(self.effect_track, width, height)
        self.publisher = PublisherPeer(self.effect_track, room.media_state, room.ice_servers)
        self.subscriber = SubscriberPeer(
            self.inference_track,
            participant_sid=room.inference.sid,
            track_sid=room.inference_track_sid,
            on_state=room.media_state,
            ice_servers=room.ice_servers,
        )
        self.outcome: str | None = None
        self._closed = False
        self._published = PublishedTracks()
        self._tasks: list[asyncio.Task[None]] = []

    # ---- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> str:
        """Serve until the user leaves (`LEFT`) or the socket closes (`CLOSED`)."""
        try:
            await self.socket.send(proto.SignalResponse(join=self._join_response()))
            offer = await self.subscriber.offer()
            await self.socket.send(
                proto.SignalResponse(offer=proto.SessionDescription(type="offer", sdp=offer, id=1))
            )
            refresher = asyncio.get_running_loop().create_task(self._refresh_token())
            self._tasks.append(refresher)
            while self.outcome is None:
                request = await self.socket.receive()
                if request is None:
                    self.outcome = self.outcome or CLOSED
                    break
                await self._handle(request)
        finally:
            await self.close()
        return self.outcome or CLOSED

    async def leave(self, reason: lk.DisconnectReason) -> None:
        """Tell the client to go (no reconnect), then close everything."""
        if self.outcome is None:
            self.outcome = CLOSED
        await self.socket.send(
            proto.SignalResponse(
                leave=proto.LeaveRequest(
                    can_reconnect=False, reason=reason, action=proto.LeaveRequest.DISCONNECT
                )
            )
        )
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        self.inference_track.stop()
        self.effect_track.stop()
        await self.socket.close()
        await asyncio.gather(self.publisher.close(), self.subscriber.close())
        await self.effect_track.wait_closed()

    async def _refresh_token(self) -> None:
        # As LiveKit's server does: a fresh token now and then, which the client keeps for its
        # next (re)join, so a session longer than the first token's lifetime can still rejoin.
        while True:
            await self.socket.send(proto.SignalResponse(refresh_token=self.room.user_token()))
            await asyncio.sleep(self.room.token_refresh_seconds)

    # ---- join -----------------------------------------------------------------------------------

    def _join_response(self) -> proto.JoinResponse:
        room = self.room
        return proto.JoinResponse(
            room=room.info(),
            participant=self.participant.info(),
            other_participants=[room.inference.info()],
            server_version=SERVER_VERSION,
            # as LiveKit's server offers its TURN servers: a client given none of its own uses
            # these (livekit-client and the Rust SDK both do)
            ice_servers=[
                proto.ICEServer(
                    urls=server["urls"],
                    username=server.get("username", ""),
                    credential=server.get("credential", ""),
                )
                for server in room.ice_servers
            ],
            subscriber_primary=self.participant.can_subscribe,
            ping_interval=PING_INTERVAL_SECONDS,
            ping_timeout=PING_TIMEOUT_SECONDS,
            server_info=server_info(room.node_id),
            client_configuration=lk.ClientConfiguration(
                # aiortc cannot restart ICE: a lost signal connection means a fresh join.
                resume_connection=lk.ClientConfigSetting.DISABLED,
            ),
        )

    # ---- requests -------------------------------------------------------------------------------

    async def _handle(self, request: proto.SignalRequest) -> None:
        kind = request.WhichOneof("message")
        if kind == "offer":
            answer = await self.publisher.answer(request.offer.sdp, self._published)
            self.room.publisher_negotiated(self.publisher)
            await self.socket.send(
                proto.SignalResponse(
                    answer=proto.SessionDescription(type="answer", sdp=answer, id=request.offer.id)
                )
            )
        elif kind == "answer":
            await self.subscriber.accept_answer(request.answer.sdp)
        elif kind == "trickle":
            candidate = _candidate(request.trickle.candidateInit)
            if request.trickle.target == proto.SignalTarget.SUBSCRIBER:
                await self.subscriber.add_candidate(candidate)
            else:
                await self.publisher.add_candidate(candidate)
        elif kind == "add_track":
            await self._add_track(request.add_track)
        elif kind == "mute":
            track = self.participant.tracks.get(request.mute.sid)
            if track is not None:
                track.muted = request.mute.muted
                await self._send_update()
        elif kind == "ping":
            await self.socket.send(proto.SignalResponse(pong=int(time.time() * 1000)))
        elif kind == "ping_req":
            await self.socket.send(
                proto.SignalResponse(
                    pong_resp=proto.Pong(
                        last_ping_timestamp=request.ping_req.timestamp,
                        timestamp=int(time.time() * 1000),
                    )
                )
            )
        elif kind == "leave":
            log.info("room %s: the user left", self.room.name)
            self.outcome = LEFT
        else:
            log.debug("room %s: ignored a %s request", self.room.name, kind)

    async def _add_track(self, request: proto.AddTrackRequest) -> None:
        sid = request.sid or self.room.new_track_sid()
        width, height = request.width, request.height
        for layer in request.layers:
            width, height = max(width, layer.width), max(height, layer.height)
        info = lk.TrackInfo(
            sid=sid,
            type=request.type,
            name=request.name,
            muted=request.muted,
            width=width,
            height=height,
            simulcast=len(request.layers) > 1,
            disable_dtx=request.disable_dtx,
            source=request.source,
            layers=list(request.layers),
            mime_type=_mime_type(request),
            stream=request.stream,
        )
        self.participant.tracks[sid] = info
        if request.type == lk.TrackType.VIDEO:
            if info.mime_type:
                self._published.codecs[request.cid] = info.mime_type
                self._published.latest_codec = info.mime_type
            full = max(request.layers, key=lambda layer: layer.width, default=None)
            if full is not None and full.rid:
                self._published.full_layers[request.cid] = full.rid
                self._published.latest_full_layer = full.rid
        log.info(
            "room %s: the user publishes %s track %r (%dx%d, %d layer(s), %s)",
            self.room.name,
            lk.TrackType.Name(request.type).lower(),
            request.name,
            width,
            height,
            len(request.layers),
            info.mime_type or "codec unknown",
        )
        await self.socket.send(
            proto.SignalResponse(
                track_published=proto.TrackPublishedResponse(cid=request.cid, track=info)
            )
        )
        await self._send_update()

    async def _send_update(self) -> None:
        await self.socket.send(
            proto.SignalResponse(
                update=proto.ParticipantUpdate(
                    participants=[self.participant.info(), self.room.inference.info()]
                )
            )
        )
