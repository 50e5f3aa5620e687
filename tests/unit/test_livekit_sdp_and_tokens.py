"""The room's pure parts: access tokens, and the SDP adjustments made before aiortc answers."""

from __future__ import annotations

import base64
import json

import pytest

from decart_widget.emulator._livekit import tokens
from decart_widget.emulator._livekit.bitrate import with_bitrate_floor
from decart_widget.emulator._livekit.codecs import prefer_codecs
from decart_widget.emulator._livekit.simulcast import narrow_offer

SECRET = b"k" * 32

OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103",
        "a=mid:0",
        "a=sendonly",
        "a=msid:stream track-1",
        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rtpmap:102 H264/90000",
        "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f",
        "a=rtpmap:103 rtx/90000",
        "a=fmtp:103 apt=102",
        "a=rid:q send",
        "a=rid:h send",
        "a=rid:f send",
        "a=simulcast:send q;h;f",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "a=mid:1",
        "",
    ]
)


def test_a_minted_token_carries_livekits_claims_and_verifies() -> None:
    token = tokens.mint(SECRET, identity="user-1", room="room-a", ttl_seconds=60, now=1000)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == "user-1" and claims["iss"] == tokens.API_KEY
    assert (claims["nbf"], claims["exp"]) == (1000, 1060)
    assert claims["video"] == {
        "room": "room-a",
        "roomJoin": True,
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
    }
    grant = tokens.verify(token, SECRET, now=1030)
    assert (grant.identity, grant.room, grant.can_publish) == ("user-1", "room-a", True)


@pytest.mark.parametrize(
    "token, now, message",
    [
        (tokens.mint(b"other", identity="u", room="r", now=1000), 1001, "cryptographic"),
        (tokens.mint(SECRET, identity="u", room="r", ttl_seconds=10, now=1000), 1010, "expired"),
        (tokens.mint(SECRET, identity="u", room="r", now=1000), 999, "not valid yet"),
        (tokens.mint(SECRET, identity="u", room="r", room_join=False, now=1000), 1001, "denied"),
        (tokens.mint(SECRET, identity="u", room="r", api_key="APIother", now=1000), 1001, "API"),
        ("a.b", 1001, "malformed"),
    ],
)
def test_tokens_that_must_not_join(token: str, now: float, message: str) -> None:
    with pytest.raises(tokens.TokenRefused) as refused:
        tokens.verify(token, SECRET, now=now)
    assert message in refused.value.message and refused.value.status == 401


def test_a_simulcast_offer_is_narrowed_to_its_highest_layer() -> None:
    narrowed = narrow_offer(OFFER)
    assert narrowed.layer == "f"
    assert "a=rid:" not in narrowed.sdp and "a=simulcast:" not in narrowed.sdp
    answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\nm=application 9 x\r\na=mid:1\r\n"
    restored = narrowed.restore(answer).splitlines()
    video = restored[restored.index("m=video 9 UDP/TLS/RTP/SAVPF 96") :]
    assert video[2:5] == [
        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "a=rid:f recv",
        "a=simulcast:recv f",
    ]
    assert narrow_offer(narrowed.sdp).layer is None  # nothing left to narrow
    # the full-size layer add_track described wins over the names and the order
    assert narrow_offer(OFFER, {"track-1": "h"}, None).layer == "h"
    assert narrow_offer(OFFER.replace("q;h;f", "f;h;q")).layer == "f"
    assert narrow_offer(OFFER.replace("q;h;f", "h;q")).layer == "h"


def test_the_requested_codec_moves_first_in_the_m_line_and_the_rtpmap_lines() -> None:
    preferred = prefer_codecs(OFFER, {"track-1": "video/H264"}, None).splitlines()
    assert "m=video 9 UDP/TLS/RTP/SAVPF 102 103 96 97" in preferred
    rtpmaps = [line for line in preferred if line.startswith("a=rtpmap:")]
    assert rtpmaps[:2] == ["a=rtpmap:102 H264/90000", "a=rtpmap:103 rtx/90000"]
    # the latest request applies when the track id does not match; VP8 stays as it was
    assert prefer_codecs(OFFER, {}, "video/VP8").splitlines()[5].endswith(" 96 97 102 103")


def test_the_answer_gets_a_bitrate_floor_on_video_codecs_only() -> None:
    answer = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=10",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 102",
            "a=rtpmap:96 VP8/90000",
            "a=rtpmap:102 H264/90000",
            "a=fmtp:102 packetization-mode=1",
            "",
        ]
    )
    lines = with_bitrate_floor(answer).splitlines()
    assert "a=fmtp:111 minptime=10" in lines
    assert "a=fmtp:96 x-google-min-bitrate=1500;x-google-start-bitrate=2500" in lines
    assert (
        "a=fmtp:102 packetization-mode=1;x-google-min-bitrate=1500;x-google-start-bitrate=2500"
        in lines
    )
