"""The media side of one session: an aiortc peer that sends back what it receives, transformed.

`MediaPeer.answer(offer_sdp)` builds an `RTCPeerConnection` (no ICE servers: loopback), with one
send-and-receive video transceiver prepared before the offer is applied, so VP8 can be preferred
when the offer carries it. The client's video track feeds an `EffectTrack`: a reader task keeps
only the newest decoded frame (under load, stale frames are dropped rather than queued, so latency
stays flat); each frame the sender asks for is run through the current effect in the loop's
executor and keeps its ``pts``/``time_base``. The answer carries every gathered candidate (aiortc
does not trickle); remote candidates may arrive trickled, before or after the offer, or not at
all. Audio the client sends is consumed and discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaBlackhole
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp
from av import VideoFrame

from ._effects import Effect

log = logging.getLogger("decart_widget.emulator.media")

EffectSource = Callable[[], Effect | None]
Callback = Callable[[], None]
StateCallback = Callable[[str], None]


def _transform(effect: Effect, frame: VideoFrame) -> VideoFrame:
    # In place, and wrapped without a copy: to_ndarray gives a fresh array per frame.
    pixels: npt.NDArray[np.uint8] = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
    effect(pixels, out=pixels)
    out = VideoFrame.from_numpy_buffer(pixels, format="rgb24")
    out.pts = frame.pts
    out.time_base = frame.time_base
    return out


class EffectTrack(MediaStreamTrack):
    """The video track the emulator sends: the client's frames through the current effect."""

    kind = "video"

    def __init__(self, effect: EffectSource, on_received: Callback, on_sent: Callback) -> None:
        super().__init__()
        self._effect = effect
        self._on_received = on_received
        self._on_sent = on_sent
        self._latest: VideoFrame | None = None
        self._fresh = asyncio.Event()
        self._source_ended = False
        self._reader: asyncio.Task[None] | None = None

    def attach(self, source: MediaStreamTrack) -> None:
        """Start reading the client's track (called once, from the ``track`` event)."""
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read(source))

    async def _read(self, source: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await source.recv()
                if not isinstance(frame, VideoFrame):
                    continue
                self._on_received()
                self._latest = frame
                self._fresh.set()
        except MediaStreamError:
            pass
        finally:
            self._source_ended = True
            self._fresh.set()

    async def recv(self) -> VideoFrame:
        while self._latest is None:
            if self._source_ended or self.readyState != "live":
                raise MediaStreamError
            self._fresh.clear()
            await self._fresh.wait()
        frame, self._latest = self._latest, None
        effect = self._effect()
        if effect is not None and not effect.is_identity:
            loop = asyncio.get_running_loop()
            frame = await loop.run_in_executor(None, _transform, effect, frame)
        self._on_sent()
        return frame

    def stop(self) -> None:
        super().stop()
        self._fresh.set()
        if self._reader is not None:
            self._reader.cancel()

    async def wait_closed(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def parse_candidate(candidate: dict[str, Any]) -> Any | None:
    """An `RTCIceCandidate` from a protocol candidate object; None for end-of-candidates ("")."""
    line = candidate.get("candidate") or ""
    if line.startswith("a="):
        line = line[2:]
    if line.startswith("candidate:"):
        line = line[len("candidate:") :]
    if not line.strip():
        return None
    parsed = candidate_from_sdp(line)
    parsed.sdpMid = candidate.get("sdpMid")
    index = candidate.get("sdpMLineIndex")
    parsed.sdpMLineIndex = index if isinstance(index, int) else None
    if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
        parsed.sdpMLineIndex = 0
    return parsed


class RemoteCandidates:
    """A peer connection's remote ICE candidates: held until its remote description is set (they
    may arrive trickled before it), then added; a bad or late candidate never ends the session.

    The end of the candidates is not passed on to ICE. A browser without camera permission
    names its host candidates by mDNS, which the emulator cannot resolve from another host; it
    then learns the browser's address only from the browser's own checks (a peer-reflexive
    candidate), which may come after the end of the candidates. Told the end first, aioice fails
    at once with nothing to check: whether media connected depended on that race. The session's
    media bound (`EmulatorConfig.media_connect_seconds`) ends a peer that never connects.
    """

    def __init__(self, pc: RTCPeerConnection, name: str) -> None:
        self._pc = pc
        self._name = name
        self._ready = False
        self._held: list[dict[str, Any]] = []

    async def add(self, candidate: dict[str, Any] | None) -> None:
        """A remote candidate (None: end of candidates)."""
        if candidate is None:
            return  # see the class docstring
        if not self._ready:
            self._held.append(candidate)
            return
        try:
            parsed = parse_candidate(candidate)
            if parsed is not None:  # an empty one also ends the candidates: not passed on either
                await self._pc.addIceCandidate(parsed)
        except Exception as exc:  # a bad or late candidate must not end the session
            log.debug("ignored a %s candidate: %s", self._name, exc)

    async def remote_description_set(self) -> None:
        """Add the candidates held so far, and every later one at once."""
        self._ready = True
        held, self._held = self._held, []
        for candidate in held:
            await self.add(candidate)


def rtc_ice_servers(servers: Sequence[Mapping[str, Any]]) -> list[RTCIceServer]:
    """aiortc's form of checked RTCIceServer-like dicts (`decart_widget._ice`)."""
    return [RTCIceServer(**server) for server in servers]


class MediaPeer:
    """One RTCPeerConnection answering one offer."""

    def __init__(
        self,
        *,
        effect: EffectSource,
        on_frame_received: Callback,
        on_frame_sent: Callback,
        on_state: StateCallback,
        ice_servers: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=rtc_ice_servers(ice_servers)))
        self._track = EffectTrack(effect, on_frame_received, on_frame_sent)
        self._blackholes: list[MediaBlackhole] = []
        self._candidates = RemoteCandidates(self._pc, "remote")
        self._closed = False
        self._on_state = on_state

        @self._pc.on("connectionstatechange")
        def _state_changed() -> None:
            state = self._pc.connectionState
            log.debug("peer connection %s", state)
            self._on_state(state)

        @self._pc.on("track")
        def _track_arrived(track: MediaStreamTrack) -> None:
            if track.kind == "video" and self._track._reader is None:
                self._track.attach(track)
            else:  # audio, or a second video track: consume and discard
                hole = MediaBlackhole()
                hole.addTrack(track)
                self._blackholes.append(hole)
                asyncio.get_running_loop().create_task(hole.start())

    async def answer(self, offer_sdp: str) -> str:
        """Apply the client's offer and return the answer SDP (with gathered candidates)."""
        transceiver = self._pc.addTransceiver(self._track, direction="sendrecv")
        if "vp8/90000" in offer_sdp.lower():
            codecs = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences(
                [c for c in codecs if c.mimeType.lower() in ("video/vp8", "video/rtx")]
            )
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        if self._track._reader is None:
            raise ValueError("the offer carries no video the emulator can receive")
        answer = await self._pc.createAnswer()
        await self._pc.setLocalDescription(answer)
        await self._candidates.remote_description_set()
        sdp: str = self._pc.localDescription.sdp
        return sdp

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        """A remote candidate (None: end of candidates); buffered until the offer is applied."""
        await self._candidates.add(candidate)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._track.stop()
        for hole in self._blackholes:
            await hole.stop()
        await self._pc.close()
        await self._track.wait_closed()
