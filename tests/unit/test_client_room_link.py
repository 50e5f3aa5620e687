"""The headless client's LiveKit room link (`decart_widget.client._livekit.RoomLink`): how it
publishes. The real room is tested end to end in tests/integration/test_client_livekit.py; what
cannot be provoked there is LiveKit's own client refusing H.264, so the fallback to VP8 is shown
with a stand-in participant that refuses it (LiveKit's real options and error types)."""

from __future__ import annotations

from typing import Any

import pytest

rtc = pytest.importorskip("livekit.rtc")

from decart_widget.client._livekit import MAX_BITRATE, RoomLink, room_options  # noqa: E402
from decart_widget.client._sources import SyntheticTrack  # noqa: E402
from decart_widget.models import RealtimeModel  # noqa: E402

MODEL = RealtimeModel("lucy-2.1", 320, 192, 15)


class Host:
    def media_state(self, state: str) -> None: ...

    def local_offer(self, sdp: str) -> None: ...

    def deliver(self, frame: Any) -> None: ...

    def spawn(self, coro: Any) -> None:
        coro.close()


class Participant:
    def __init__(self, refuse: set[int]) -> None:
        self.refuse = refuse
        self.tried: list[Any] = []

    async def publish_track(self, track: Any, options: Any) -> None:
        self.tried.append(options)
        if options.video_codec in self.refuse:
            raise rtc.participant.PublishTrackError("codec not supported")


class Room:
    def __init__(self, refuse: set[int]) -> None:
        self.local_participant = Participant(refuse)


def link() -> RoomLink:
    return RoomLink(Host(), SyntheticTrack(MODEL.width, MODEL.height, MODEL.fps), MODEL, 15.0)


async def test_h264_first_as_decarts_python_sdk_one_layer_at_full_size() -> None:
    room = Room(refuse=set())
    assert await link()._publish(room, track=None) == "h264"
    [options] = room.local_participant.tried
    assert options.video_codec == rtc.VideoCodec.H264
    assert options.source == rtc.TrackSource.SOURCE_CAMERA and not options.simulcast
    assert options.video_encoding.max_bitrate == MAX_BITRATE
    assert options.video_encoding.max_framerate == 15
    assert options.degradation_preference == rtc.DegradationPreference.MAINTAIN_RESOLUTION


async def test_vp8_when_h264_cannot_be_published() -> None:
    room = Room(refuse={rtc.VideoCodec.H264})
    assert await link()._publish(room, track=None) == "vp8"
    assert [o.video_codec for o in room.local_participant.tried] == [
        rtc.VideoCodec.H264,
        rtc.VideoCodec.VP8,
    ]


async def test_neither_codec_is_the_publish_error() -> None:
    room = Room(refuse={rtc.VideoCodec.H264, rtc.VideoCodec.VP8})
    with pytest.raises(rtc.participant.PublishTrackError, match="codec not supported"):
        await link()._publish(room, track=None)


def test_ice_servers_reach_the_rooms_rtc_config_and_none_leaves_the_servers_choice() -> None:
    turn = {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}
    stun = {"urls": ["stun:stun.example.org:3478", "stun:stun2.example.org:3478"]}
    options = room_options(rtc, [turn, stun])
    assert options.auto_subscribe
    given = [(list(s.urls), s.username, s.password) for s in options.rtc_config.ice_servers]
    assert given == [
        (["turn:turn.example.org:3478"], "u", "p"),
        (["stun:stun.example.org:3478", "stun:stun2.example.org:3478"], "", ""),
    ]
    # no list: no rtc_config, so the room uses the ICE servers of LiveKit's join response
    bare = room_options(rtc, [])
    assert bare.auto_subscribe and bare.rtc_config is None
