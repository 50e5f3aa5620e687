"""A LiveKit-compatible room inside the emulator: Gen-B media (docs/emulator.md, "Gen-B rooms").

Decart's current SDKs get a LiveKit room from the control channel (``livekit_room_info``), join
it with LiveKit's own client SDKs and publish their camera; the model's output is the video
track of a participant named ``inference-server-*``. This package is that room, served on the
emulator's own port: LiveKit's client signalling (protobuf ``SignalRequest``/``SignalResponse``
of the ``livekit-protocol`` package over a WebSocket at ``/rtc``), two aiortc peer connections
per user (publisher: the client offers; subscriber: the room offers), and the emulator's effects
engine for the "model".

The API the control channel uses::

    server = RoomServer(secret=None)          # one per emulator; a random signing key
    server.add_routes(app)                    # /rtc and /rtc/validate on the aiohttp app
    room = server.open_room(                  # on the emulator's loop
        session_id,
        effect=lambda: current_effect,        # Effect | None, read per frame
        on_frame_received=..., on_frame_sent=...,   # () -> None, per video frame
        on_state=...,                         # (str) -> None: "connected" | "failed" | "left"
        ttl_seconds=600,                      # token lifetime; an unjoined room closes after it
        frame_size=(1280, 720),               # the inference track's size before the camera's
    )
    room.name                                 # livekit_room_info.room_name
    room.user_token()                         # livekit_room_info.token (a LiveKit access JWT)
    livekit_url_for(request)                  # livekit_room_info.livekit_url ("ws://host:port")
    await room.close(reason)                  # the user gets leave (no reconnect), peers close
    room.drop_signal()                        # fault: abort the user's signal socket (it rejoins)
    await server.close()                      # emulator shutdown: every room

``on_state("connected")`` fires once, on the first frame of the user's camera; ``"failed"``
when a peer connection of the user fails; ``"left"`` when the user leaves (or its signal socket
closed and it did not join again within `room.REJOIN_GRACE_SECONDS`).

What is emulated: one user and one inference participant per room; join (``subscriber_primary``
as LiveKit does), publisher and subscriber peer connections with trickle both ways,
``add_track``/``track_published``, participant updates, mute flags, the client's data channels
(accepted, contents ignored), ``ping``/``ping_req``, ``leave`` both ways, a rejoin with the same
token replacing the previous connection. Codecs: the user publishes in the codec its
``add_track`` asks for, as LiveKit's server answers (`codecs`): H.264 (decoded through PyAV) or
VP8; others fall back to VP8. The inference track is offered VP8 first, then H.264. A simulcast
publication is narrowed to its full-size layer (`simulcast`: the client then sends that layer
alone), and the answer sets a bitrate floor so the browser's bandwidth
estimate does not halve that size (`bitrate`). Audio is received and discarded.

Not emulated: ``/rtc/v1`` single-peer-connection signalling (404; clients fall back), session
resume (clients are told to reconnect in full -- aiortc has no ICE restart -- and do: LiveKit's
Python client rejoins, republishes and is subscribed again), data packets, RPC,
data tracks, dynacast and adaptive-stream layer selection, speaker and connection-quality
updates, JSON signalling, TURN/ICE servers, more participants.

Modules: `server` (routes, rooms), `room` (one room), `connection` (one signal socket),
`signal` (protobuf framing), `publisher` and `subscriber` (the two peers), `inference` (the
inference track), `simulcast`, `codecs` and `bitrate` (SDP adjustments), `participants` (protocol
objects), `tokens` (access JWTs).
"""

from __future__ import annotations

from .room import Room
from .server import RoomServer, livekit_url, livekit_url_for

__all__ = ["Room", "RoomServer", "livekit_url", "livekit_url_for"]
