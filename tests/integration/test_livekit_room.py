"""The emulator's LiveKit room with LiveKit's own Python SDK (PyPI ``livekit``): join with the
room's token, receive the inference participant's video from the start, publish a camera (H.264
as Decart's Python SDK does, or VP8) and see its pixels through the session's effect."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import gen_b_kit
import pytest
from livekit import rtc
from livekit_kit import (
    ColourCamera,
    InferenceView,
    on_emulator,
    open_room,
    publish_options,
    room_server,
    wait_for,
)
from test_emulator_kit import centre, close_to

from decart_widget.emulator import Emulator
from decart_widget.emulator._livekit import tokens
from decart_widget.emulator._livekit.inference import PLACEHOLDER_GREY

RED = (200, 40, 40)
INVERSE = (55, 215, 215)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.mark.parametrize(
    "codec, mime",
    [(rtc.VideoCodec.H264, "video/H264"), (rtc.VideoCodec.VP8, "video/VP8")],
    ids=["h264", "vp8"],
)
async def test_publish_and_receive_transformed_frames(
    emu: Emulator, codec: rtc.VideoCodec.ValueType, mime: str
) -> None:
    opened = await open_room(emu, frame_size=(320, 180))
    opened.set_prompt("invert the colours")
    room = rtc.Room()
    view = InferenceView(room)
    camera = ColourCamera(320, 180, RED)
    try:
        await room.connect(opened.url, opened.room.user_token())
        # The inference participant publishes from the start: a placeholder before the camera.
        placeholder = await view.frame_where(lambda p: p.shape[:2] == (180, 320))
        assert close_to(centre(placeholder), (PLACEHOLDER_GREY,) * 3, tol=12)
        assert view.identity is not None and view.identity.startswith("inference-server-")
        assert opened.states == []

        camera.start()
        await room.local_participant.publish_track(camera.track, publish_options(codec))
        await view.frame_where(lambda p: close_to(centre(p), INVERSE))
        await wait_for(lambda: opened.states == ["connected"])
        assert opened.room.publisher_codec == mime

        # A new effect changes the pixels the room sends back.
        opened.set_prompt("film noir")
        noir = await view.frame_where(lambda p: not close_to(centre(p), INVERSE, tol=40))
        r, g, b = centre(noir)
        assert max(r, g, b) - min(r, g, b) <= 12, "noir is grey"
        camera.colour = (40, 200, 40)
        opened.set_prompt(None)
        await view.frame_where(lambda p: close_to(centre(p), (40, 200, 40)))
        assert opened.received > 0 and opened.sent > 0

        await room.disconnect()
        await wait_for(lambda: opened.states == ["connected", "left"])
    finally:
        await camera.stop()
        await view.close()
        await room.disconnect()


async def test_room_close_disconnects_the_client(emu: Emulator) -> None:
    opened = await open_room(emu)
    room = rtc.Room()
    disconnected: list[rtc.DisconnectReason.ValueType] = []
    room.on("disconnected", lambda reason: disconnected.append(reason))
    view = InferenceView(room)
    try:
        await room.connect(opened.url, opened.room.user_token())
        await view.frame_where(lambda p: p.size > 0)

        async def close() -> None:
            await opened.room.close("session ended")

        await on_emulator(emu, close)
        await wait_for(lambda: bool(disconnected))
        assert disconnected == [rtc.DisconnectReason.ROOM_DELETED]
        assert opened.room.name not in room_server(emu).rooms
        assert "left" not in opened.states  # a close by the server is not the user leaving
    finally:
        await view.close()
        await room.disconnect()


@pytest.mark.parametrize(
    "case, status, body",
    [
        ("forged", 401, "invalid authorization token: error in cryptographic primitive"),
        ("expired", 401, "invalid authorization token: token is expired (exp)"),
        ("no_join_grant", 401, "permissions denied"),
        ("other_identity", 401, "permissions denied"),
        ("other_room", 404, "requested room does not exist"),
        ("garbage", 401, "invalid authorization token: malformed token"),
    ],
)
async def test_refused_tokens(emu: Emulator, case: str, status: int, body: str) -> None:
    opened = await open_room(emu)
    secret = room_server(emu).secret
    room = opened.room
    token = {
        "forged": tokens.mint(
            b"not the emulator's secret", identity=room.user_identity, room=room.name
        ),
        "expired": tokens.mint(
            secret, identity=room.user_identity, room=room.name, now=time.time() - 700
        ),
        "no_join_grant": tokens.mint(
            secret, identity=room.user_identity, room=room.name, room_join=False
        ),
        "other_identity": tokens.mint(secret, identity="someone-else", room=room.name),
        "other_room": tokens.mint(secret, identity=room.user_identity, room="room-elsewhere"),
        "garbage": "not-a-jwt",
    }[case]
    # The upgrade and /rtc/validate answer as LiveKit's server does ...
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{emu.port}/rtc"
        async with http.get(f"{base}/validate", params={"access_token": token}) as response:
            assert (response.status, await response.text()) == (status, body)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(base, headers={"Authorization": f"Bearer {token}"})
        assert refused.value.status == status
        async with http.get(
            f"{base}/validate", params={"access_token": room.user_token()}
        ) as response:
            assert (response.status, await response.text()) == (200, "success")
    # ... and LiveKit's client gives up with that reason.
    client = rtc.Room()
    with pytest.raises(rtc.ConnectError) as failed:
        await client.connect(opened.url, token)
    assert str(status) in str(failed.value) or body in str(failed.value)
    assert opened.states == []


async def test_gen_b_session_end_to_end(emu: Emulator) -> None:
    """Decart's Gen-B handshake on ``/v1/stream``, then the real room with LiveKit's client:
    the camera comes back transformed, a prompt on the control socket changes the pixels, and
    the session's end disconnects the room."""
    control = await gen_b_kit.connect(emu, early=True)
    room = rtc.Room()
    disconnected: list[object] = []
    room.on("disconnected", lambda reason: disconnected.append(reason))
    view = InferenceView(room)
    camera = ColourCamera(320, 180, RED)
    try:
        info = await gen_b_kit.join(control)
        assert info["livekit_url"] == f"ws://127.0.0.1:{emu.port}"
        await room.connect(info["livekit_url"], info["token"])
        camera.start()
        await room.local_participant.publish_track(
            camera.track, publish_options(rtc.VideoCodec.H264)
        )
        await view.frame_where(lambda p: close_to(centre(p), RED))
        await control.expect("generation_started")
        assert (await control.prompt("invert the colours"))["success"] is True
        await view.frame_where(lambda p: close_to(centre(p), INVERSE))
        await control.ws.close()
        await wait_for(lambda: bool(disconnected))
    finally:
        await camera.stop()
        await view.close()
        await room.disconnect()


async def test_a_lost_signal_connection_is_rejoined_and_media_resumes(emu: Emulator) -> None:
    opened = await open_room(emu)
    room = rtc.Room()
    reconnected = asyncio.Event()
    room.on("reconnected", lambda: reconnected.set())
    view = InferenceView(room)
    camera = ColourCamera(320, 180, RED)
    try:
        await room.connect(opened.url, opened.room.user_token())
        camera.start()
        await room.local_participant.publish_track(
            camera.track, publish_options(rtc.VideoCodec.H264)
        )
        await view.frame_where(lambda p: close_to(centre(p), RED))

        async def drop() -> bool:
            return opened.room.drop_signal()

        assert await on_emulator(emu, drop)
        await asyncio.wait_for(reconnected.wait(), 30)
        camera.colour = (40, 40, 200)
        await view.frame_where(lambda p: close_to(centre(p), (40, 40, 200)), timeout=30)
        assert view.subscriptions == 2  # the inference track, subscribed again after the rejoin
        assert opened.states == ["connected"]  # a rejoin is neither a new start nor a leave
    finally:
        await camera.stop()
        await view.close()
        await room.disconnect()


async def test_a_simulcast_publication_arrives_as_its_full_size_layer(emu: Emulator) -> None:
    # LiveKit's Rust-based clients list their layers full size first, and a 640x360 track has
    # two ("h;q"): the room must take the full one, not the last one listed nor an absent "f".
    opened = await open_room(emu, frame_size=(640, 360))
    opened.set_prompt("invert the colours")
    room = rtc.Room()
    view = InferenceView(room)
    camera = ColourCamera(640, 360, RED)
    try:
        await room.connect(opened.url, opened.room.user_token())
        camera.start()
        await room.local_participant.publish_track(
            camera.track, publish_options(rtc.VideoCodec.H264, simulcast=True)
        )
        frame = await view.frame_where(lambda p: close_to(centre(p), INVERSE))
        assert frame.shape[:2] == (360, 640)
        assert opened.room.simulcast_layer == "h"
    finally:
        await camera.stop()
        await view.close()
        await room.disconnect()


async def test_the_client_gets_fresh_tokens_and_rejoins_with_one(emu: Emulator) -> None:
    # A short token lifetime: the first token has expired when the signal connection drops,
    # and the client rejoins with the refreshed one the room sent it.
    opened = await open_room(emu, ttl_seconds=4)
    room = rtc.Room()
    reconnected = asyncio.Event()
    room.on("reconnected", lambda: reconnected.set())
    view = InferenceView(room)
    try:
        first = opened.room.user_token()
        await room.connect(opened.url, first)
        await view.frame_where(lambda p: p.size > 0)
        await asyncio.sleep(4.5)  # the first token expires (no condition to wait on: time)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{emu.port}/rtc/validate"
            async with http.get(url, params={"access_token": first}) as response:
                assert response.status == 401

        async def drop() -> bool:
            return opened.room.drop_signal()

        assert await on_emulator(emu, drop)
        await asyncio.wait_for(reconnected.wait(), 30)
        await wait_for(lambda: view.subscriptions == 2)  # subscribed again in the new join
    finally:
        await view.close()
        await room.disconnect()
