"""The user's publisher peer connection: the client offers, the room answers and receives.

The first video track the user publishes feeds the room's `EffectTrack` (whatever its name or
source); audio and further video tracks are consumed and discarded, as are messages on the data
channels the client opens (``_reliable``, ``_lossy``, ``_data_track``): they are accepted so the
client's data channels open, but neither Decart SDK sends anything on them. The answer keeps the
offer's codec order, so a client that prefers H.264 gets H.264 (decoded by PyAV) and VP8 is used
otherwise. A simulcast offer is narrowed to its full-size layer first (`simulcast`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaBlackhole

from .._media import EffectTrack, RemoteCandidates, rtc_ice_servers
from .bitrate import with_bitrate_floor
from .codecs import prefer_codecs
from .simulcast import narrow_offer

log = logging.getLogger("decart_widget.emulator.livekit.publisher")


@dataclass
class PublishedTracks:
    """What the user's ``add_track`` requests said, by track id (the request's ``cid``, which
    is the track id of the offer's ``a=msid``): the codec's MIME type and the RID of the
    full-size simulcast layer; ``latest_*`` apply to a section whose track id matches none."""

    codecs: dict[str, str] = field(default_factory=dict)
    full_layers: dict[str, str] = field(default_factory=dict)
    latest_codec: str | None = None
    latest_full_layer: str | None = None


class PublisherPeer:
    """Receives what the user publishes."""

    def __init__(
        self,
        effect_track: EffectTrack,
        on_state: Callable[[str], None],
        ice_servers: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        # LiveKit's offers carry several sections per kind (receive-only ones included); with
        # aiortc's default "balanced" policy the later ones keep a transport BUNDLE discards.
        self._pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=rtc_ice_servers(ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
            )
        )
        self._effect_track = effect_track
        self._blackholes: list[MediaBlackhole] = []
        self._channels: list[RTCDataChannel] = []
        self._candidates = RemoteCandidates(self._pc, "publisher")
        self._closed = False
        self.video_codec: str | None = None
        self.simulcast_layer: str | None = None

        @self._pc.on("connectionstatechange")
        def _state_changed() -> None:
            state = self._pc.connectionState
            log.debug("publisher peer connection %s", state)
            on_state(state)

        @self._pc.on("track")
        def _track_arrived(track: MediaStreamTrack) -> None:
            log.debug("the user's %s track arrived", track.kind)
            if track.kind == "video" and not self._video_attached:
                effect_track.attach(track)
            else:
                hole = MediaBlackhole()
                hole.addTrack(track)
                self._blackholes.append(hole)
                asyncio.get_running_loop().create_task(hole.start())

        @self._pc.on("datachannel")
        def _channel_opened(channel: RTCDataChannel) -> None:
            log.debug("data channel %r opened by the client", channel.label)
            self._channels.append(channel)

    @property
    def _video_attached(self) -> bool:
        return self._effect_track._reader is not None

    @property
    def connected(self) -> bool:
        """Whether the user's publishing peer connection is connected (the media path is up)."""
        return bool(self._pc.connectionState == "connected")

    async def answer(self, offer_sdp: str, tracks: PublishedTracks | None = None) -> str:
        """Apply an offer (the first or a renegotiation) and return the answer SDP, with the
        codec and the simulcast layer the user's ``add_track`` requests described."""
        tracks = tracks or PublishedTracks()
        narrowed = narrow_offer(
            prefer_codecs(offer_sdp, tracks.codecs, tracks.latest_codec),
            tracks.full_layers,
            tracks.latest_full_layer,
        )
        if narrowed.layer is not None:
            self.simulcast_layer = narrowed.layer
            log.info("simulcast offer: receiving layer %r only", narrowed.layer)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=narrowed.sdp, type="offer"))
        answer = await self._pc.createAnswer()
        await self._pc.setLocalDescription(answer)
        await self._candidates.remote_description_set()
        for transceiver in self._pc.getTransceivers():
            receiving = transceiver.currentDirection in ("recvonly", "sendrecv")
            if transceiver.kind == "video" and receiving and transceiver._codecs:
                self.video_codec = transceiver._codecs[0].mimeType
        sdp: str = self._pc.localDescription.sdp
        return with_bitrate_floor(narrowed.restore(sdp))

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        await self._candidates.add(candidate)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for hole in self._blackholes:
            await hole.stop()
        await self._pc.close()
