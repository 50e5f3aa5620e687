"""Gen-B media for the headless client: the session's LiveKit room, with PyPI ``livekit`` (rtc).

`RoomLink.join` carries out the session core's `JoinRoom` (docs/protocol.md, "The room"): it
connects to the room, publishes the source as one camera track at the model's size (H.264, as
Decart's Python SDK publishes; VP8 when H.264 cannot be published) and delivers the video of the
participant whose identity starts with ``inference-server-``, ignoring everyone else. The room's
state goes back to the core: ``connected`` once joined and published, ``failed`` when joining
or publishing fails, ``disconnected`` when the room drops the user (LiveKit's client reports that
only after its own reconnect attempts failed). `close` (the core's `ClosePeer`) leaves the room.

``ice_servers=`` reach the room's peer connections (`room_options`); given servers replace the
ones the LiveKit server lists in its join response, as in every LiveKit client. A function is
called before every join (fresh TURN credentials for each room).

``livekit`` is an optional dependency (a ~30 MB wheel the notebook widget does not need):
`require_livekit` names the extra that installs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
from collections.abc import Iterable
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from .._ice import IceServersSource, resolve_ice_servers
from ..models import RealtimeModel
from ..protocol import JoinRoom
from ..protocol._constants import WEBSOCKET_OPEN_TIMEOUT
from ..protocol._errors import MissingDependency
from ._media import MediaAction, MediaHost

log = logging.getLogger("decart_widget.client.livekit")

#: The identity prefix of the participant that publishes the model's output.
INFERENCE_PREFIX = "inference-server-"
#: Seconds to join the room and publish (then the core hears ``failed`` and retries).
JOIN_TIMEOUT = WEBSOCKET_OPEN_TIMEOUT
#: Seconds a room removed by the server waits for the control socket to say why the session
#: ended before the room's own "disconnected" counts as the loss.
SERVER_END_GRACE = 2.0
#: LiveKit's disconnect reasons (``rtc.DisconnectReason``) meaning the server removed the user.
SERVER_ENDED_REASONS = ("SERVER_SHUTDOWN", "PARTICIPANT_REMOVED", "ROOM_DELETED")
#: Seconds to leave a room before it is dropped.
LEAVE_TIMEOUT = 5.0
#: Decart's JS SDK caps its camera at 3.5 Mbps; the Python SDK leaves LiveKit's default.
MAX_BITRATE = 3_500_000
EXTRA = "livekit"
_TIME_BASE = fractions.Fraction(1, 90_000)


class _V1FallbackFilter(logging.Filter):
    """Drops LiveKit's two warnings about falling back from ``/rtc/v1`` to ``/rtc``.

    The emulator's room answers ``/rtc/v1`` with 404 on purpose (docs/emulator.md), and LiveKit's
    client then warns twice on every join; with no logging configured, Python prints warnings to
    stderr, so they would show under every notebook cell that joins a room.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("v1 path not found" in message or "failed on v1 path" in message)


_V1_FALLBACK_FILTER = _V1FallbackFilter()


def require_livekit() -> ModuleType:
    """``livekit.rtc``, or a `MissingDependency` that says how to install it."""
    try:
        from livekit import rtc
    except ImportError as exc:
        raise MissingDependency(
            "transport='livekit' needs LiveKit's Python SDK: "
            f"pip install 'decart-widget[{EXTRA}]' (or pass transport='webrtc')",
            name="livekit",
        ) from exc
    livekit_log = logging.getLogger("livekit")
    if _V1_FALLBACK_FILTER not in livekit_log.filters:
        livekit_log.addFilter(_V1_FALLBACK_FILTER)
    return rtc


def livekit_installed() -> bool:
    try:
        require_livekit()
    except MissingDependency:
        return False
    return True


def room_options(rtc: Any, ice_servers: Iterable[dict[str, Any]]) -> Any:
    """LiveKit's ``RoomOptions`` for a join: subscribe to everything; the given ICE servers (checked
    RTCIceServer-like dicts) in its ``rtc_config``, none given: the LiveKit server's."""
    servers = [
        rtc.IceServer(
            urls=server["urls"],
            username=server.get("username", ""),
            password=server.get("credential", ""),
        )
        for server in ice_servers
    ]
    if not servers:
        return rtc.RoomOptions(auto_subscribe=True)
    return rtc.RoomOptions(
        auto_subscribe=True, rtc_config=rtc.RtcConfiguration(ice_servers=servers)
    )


class RoomLink:
    """The session's LiveKit room (Gen-B); events of a room already left are dropped."""

    #: what did not come up when a connect times out after the service answered
    MEDIA_NAME: ClassVar[str] = "the room"

    def __init__(
        self,
        host: MediaHost,
        track: MediaStreamTrack,
        model: RealtimeModel,
        fps: float,
        ice_servers: Iterable[dict[str, Any]] | IceServersSource = (),
    ) -> None:
        self._rtc = require_livekit()
        self._host = host
        self._track = track
        self._model = model
        self._fps = fps
        # a function is called before every join (fresh TURN credentials)
        self._ice_source = ice_servers if callable(ice_servers) else list(ice_servers)
        self._room: Any = None
        self._source: Any = None
        self._pump: asyncio.Task[None] | None = None
        #: the codec of the last publication: "h264", or "vp8" after a fallback
        self.codec: str | None = None

    async def _report_disconnect_later(self, room: Any) -> None:
        await asyncio.sleep(SERVER_END_GRACE)
        if room is self._room:  # the control socket did not end the session meanwhile
            self._host.media_state("disconnected")

    async def handle(self, action: MediaAction) -> None:
        """Gen-B's one media action: join the room the service named (in the background)."""
        if isinstance(action, JoinRoom):
            self._host.spawn(self.join(action.url, action.token))

    async def join(self, url: str, token: str) -> None:
        """Connect, publish, and report ``connected`` (or ``failed``)."""
        await self.close()
        rtc = self._rtc
        room = rtc.Room()
        self._room = room
        server_ended = {rtc.DisconnectReason.Value(name) for name in SERVER_ENDED_REASONS}

        def on_track(track: Any, publication: Any, participant: Any) -> None:
            if room is not self._room or track.kind != rtc.TrackKind.KIND_VIDEO:
                return
            if participant.identity.startswith(INFERENCE_PREFIX):
                self._host.spawn(self._read(room, track))

        def on_disconnected(reason: Any = None) -> None:
            if room is not self._room:
                return
            log.info("the room disconnected the user (reason %s)", reason)
            if reason in server_ended:
                # The service ended the session: its control socket says why (credits, a
                # platform's ledger...), and that reason must win over "room disconnected".
                self._host.spawn(self._report_disconnect_later(room))
            else:
                self._host.media_state("disconnected")

        room.on("track_subscribed", on_track)
        room.on("disconnected", on_disconnected)
        try:
            await asyncio.wait_for(self._enter(room, url, token), JOIN_TIMEOUT)
        except Exception as exc:
            if room is self._room:
                log.warning("could not join the room: %s", str(exc) or type(exc).__name__)
                self._host.media_state("failed")  # the core closes it (ClosePeer) and retries
            else:
                await _leave(room)
            return
        if room is self._room:
            self._host.media_state("connected")
        else:  # left while joining
            await _leave(room)

    async def _enter(self, room: Any, url: str, token: str) -> None:
        rtc = self._rtc
        ice_servers = await resolve_ice_servers(self._ice_source)
        if room is not self._room:
            return
        await room.connect(url, token, room_options(rtc, ice_servers))
        if room is not self._room:
            return
        source = rtc.VideoSource(self._model.width, self._model.height)
        self._source = source
        self._pump = asyncio.ensure_future(self._feed(source))
        track = rtc.LocalVideoTrack.create_video_track("camera", source)
        self.codec = await self._publish(room, track)

    async def _publish(self, room: Any, track: Any) -> str:
        rtc = self._rtc
        failure: Exception | None = None
        for name, codec in (("h264", rtc.VideoCodec.H264), ("vp8", rtc.VideoCodec.VP8)):
            options = rtc.TrackPublishOptions(
                source=rtc.TrackSource.SOURCE_CAMERA,
                video_codec=codec,
                simulcast=False,
                video_encoding=rtc.VideoEncoding(max_framerate=self._fps, max_bitrate=MAX_BITRATE),
                # The model works at its own size: WebRTC's encoder would otherwise scale the
                # picture down when the CPU or the network is short (and the model would see,
                # and return, a smaller frame). Under load, drop frames, never pixels.
                degradation_preference=int(rtc.DegradationPreference.MAINTAIN_RESOLUTION),
            )
            try:
                await room.local_participant.publish_track(track, options)
            except rtc.participant.PublishTrackError as exc:
                log.info("publishing %s failed: %s", name, exc)
                failure = exc
                continue
            log.debug("published the source as %s", name)
            return name
        assert failure is not None
        raise failure

    async def _feed(self, source: Any) -> None:
        """The source's frames into the room's video source, as they come."""
        rtc = self._rtc
        while True:
            try:
                frame = await self._track.recv()
            except MediaStreamError:
                log.info("the source ended")
                return
            if isinstance(frame, VideoFrame):
                source.capture_frame(_to_livekit(rtc, frame))

    async def _read(self, room: Any, track: Any) -> None:
        stream = self._rtc.VideoStream(track, format=self._rtc.VideoBufferType.RGB24)
        try:
            async for event in stream:
                if room is not self._room:
                    break
                self._host.deliver(_to_av(event))
        finally:
            await stream.aclose()

    async def close(self) -> None:
        """Leave the room (if any) and stop feeding it."""
        room, self._room = self._room, None
        pump, self._pump = self._pump, None
        source, self._source = self._source, None
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        if room is not None:
            await _leave(room)
        if source is not None:
            with contextlib.suppress(Exception):
                await source.aclose()


async def _leave(room: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(room.disconnect(), LEAVE_TIMEOUT)


def _to_livekit(rtc: Any, frame: VideoFrame) -> Any:
    """An `av.VideoFrame` as LiveKit's: I420 planes as they are (even sizes), else RGBA."""
    width, height = frame.width, frame.height
    if width % 2 == 0 and height % 2 == 0:
        planes = frame.to_ndarray(format="yuv420p")
        return rtc.VideoFrame(width, height, rtc.VideoBufferType.I420, planes.tobytes())
    rgba = frame.to_ndarray(format="rgba")
    return rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, rgba.tobytes())


def _to_av(event: Any) -> VideoFrame:
    """A LiveKit frame event (RGB24) as an `av.VideoFrame` with a 90 kHz ``pts``."""
    lk = event.frame
    rgb = np.frombuffer(lk.data, dtype=np.uint8).reshape(lk.height, lk.width, 3)
    frame = VideoFrame.from_ndarray(rgb, format="rgb24")
    frame.pts = event.timestamp_us * 9 // 100
    frame.time_base = _TIME_BASE
    return frame
