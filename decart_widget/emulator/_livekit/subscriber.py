"""The user's subscriber peer connection: the room offers the inference track, the client answers.

The offer carries one send-only video section whose media stream id is
``"<inference participant sid>|<track sid>"`` (how LiveKit's clients tell whose track arrived)
and every candidate gathered (aiortc does not trickle). VP8 is offered first, H.264 second: the
client picks. The client's trickled candidates may come before or after its answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)

from .._media import RemoteCandidates, rtc_ice_servers

log = logging.getLogger("decart_widget.emulator.livekit.subscriber")


class SubscriberPeer:
    """Sends the inference participant's video to the user."""

    def __init__(
        self,
        track: MediaStreamTrack,
        *,
        participant_sid: str,
        track_sid: str,
        on_state: Callable[[str], None],
        ice_servers: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self._pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=rtc_ice_servers(ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
            )
        )
        transceiver = self._pc.addTransceiver(track, direction="sendonly")
        # aiortc writes a=msid from these two; LiveKit's clients parse the stream id.
        transceiver.sender._stream_id = f"{participant_sid}|{track_sid}"
        transceiver.sender._track_id = track_sid
        self._candidates = RemoteCandidates(self._pc, "subscriber")
        self._closed = False

        @self._pc.on("connectionstatechange")
        def _state_changed() -> None:
            state = self._pc.connectionState
            log.debug("subscriber peer connection %s", state)
            on_state(state)

    @property
    def video_codec(self) -> str | None:
        for transceiver in self._pc.getTransceivers():
            if transceiver._codecs:
                codec: str = transceiver._codecs[0].mimeType
                return codec
        return None

    async def offer(self) -> str:
        """The offer SDP, candidates included."""
        await self._pc.setLocalDescription(await self._pc.createOffer())
        sdp: str = self._pc.localDescription.sdp
        return sdp

    async def accept_answer(self, answer_sdp: str) -> None:
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        await self._candidates.remote_description_set()

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        await self._candidates.add(candidate)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._pc.close()
