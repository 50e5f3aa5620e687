"""Gen-A media for the headless client: one aiortc peer connection at a time.

The session core asks for it once the initial state is answered (`StartPeer`), feeds it the
server's answer and candidates, and closes it on a loss (docs/protocol.md, "Gen-A (WebRTC)
handshake"). VP8 is preferred, as the service expects; aiortc gathers every candidate before the
offer, so the offer goes out complete and is followed by the end of candidates.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any, ClassVar

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import candidate_from_sdp
from av import VideoFrame

from .._ice import IceServersSource, resolve_ice_servers
from ..protocol import AddRemoteCandidate, ApplyAnswer, RestartIce, StartPeer
from ._media import MediaAction, MediaHost
from ._sources import BorrowedTrack

log = logging.getLogger("decart_widget.client.webrtc")


class PeerLink:
    """The session's peer connection (Gen-A); events of a replaced one are dropped."""

    #: what did not come up when a connect times out after the service answered
    MEDIA_NAME: ClassVar[str] = "the video connection"

    def __init__(
        self,
        host: MediaHost,
        track: MediaStreamTrack,
        ice_servers: Iterable[dict[str, Any]] | IceServersSource,
    ) -> None:
        self._host = host
        self._track = track
        # a function is called before every peer connection (fresh TURN credentials)
        self._ice_source = ice_servers if callable(ice_servers) else list(ice_servers)
        self._ice_servers: list[dict[str, Any]] = []
        self._peer: RTCPeerConnection | None = None

    async def handle(self, action: MediaAction) -> None:
        """Gen-A's media actions: start (or restart) the peer, apply the answer, add candidates."""
        if isinstance(action, StartPeer):
            self._host.spawn(self.start(None))
        elif isinstance(action, RestartIce):
            self._host.spawn(self.start(action.turn_config))
        elif isinstance(action, ApplyAnswer):
            await self.apply_answer(action.sdp)
        elif isinstance(action, AddRemoteCandidate):
            await self.add_candidate(action.candidate)

    async def start(self, turn_config: dict[str, Any] | None) -> None:
        """Create the peer connection (again, after an ``ice-restart``) and make its offer."""
        await self.close()
        if callable(self._ice_source):
            self._ice_servers = await resolve_ice_servers(self._ice_source)
        else:
            self._ice_servers = [dict(server) for server in self._ice_source]
        peer = RTCPeerConnection(RTCConfiguration(iceServers=self._servers(turn_config)))
        self._peer = peer
        # aiortc stops a closed sender's track: the source outlives this peer, so lend it
        transceiver = peer.addTransceiver(BorrowedTrack(self._track), direction="sendrecv")
        vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
        if vp8:
            transceiver.setCodecPreferences(vp8)

        @peer.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._host.spawn(self._read(track))

        @peer.on("connectionstatechange")
        def on_state() -> None:
            if peer is self._peer:
                self._host.media_state(peer.connectionState)

        await peer.setLocalDescription(await peer.createOffer())
        if peer is self._peer:
            self._host.local_offer(peer.localDescription.sdp)

    def _servers(self, turn_config: dict[str, Any] | None) -> list[RTCIceServer]:
        servers = [RTCIceServer(**server) for server in self._ice_servers]
        if turn_config and turn_config.get("server_url"):
            servers.append(
                RTCIceServer(
                    urls=turn_config["server_url"],
                    username=turn_config.get("username"),
                    credential=turn_config.get("credential"),
                )
            )
        return servers

    async def apply_answer(self, sdp: str) -> None:
        peer = self._peer
        if peer is None:
            return
        try:
            await peer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:
            log.warning("the answer could not be applied: %s", exc)
            if peer is self._peer:
                self._host.media_state("failed")

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        peer = self._peer
        if peer is None or candidate is None or not candidate.get("candidate"):
            return
        line = str(candidate["candidate"])
        try:
            parsed = candidate_from_sdp(line.removeprefix("candidate:"))
        except (ValueError, IndexError):
            log.debug("ignoring an unparsable candidate %r", line)
            return
        parsed.sdpMid = candidate.get("sdpMid")
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
        await peer.addIceCandidate(parsed)

    async def close(self) -> None:
        peer, self._peer = self._peer, None
        if peer is not None:
            with contextlib.suppress(Exception):
                await peer.close()

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, VideoFrame):
                self._host.deliver(frame)
