"""Real media through the emulator: an aiortc client sends a solid colour, the pixels it gets back
show the prompt's effect, and change when the prompt or the reference image changes."""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Iterator

import numpy as np
import pytest
from aiortc import MediaStreamTrack
from av import VideoFrame
from test_emulator_kit import ColorTrack, StreamClient, centre, close_to, png

from decart_widget.emulator import Emulator
from decart_widget.emulator._effects import build_effect
from decart_widget.emulator._media import EffectTrack

RED = (200, 40, 40)
INVERSE = (55, 215, 215)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(tick_seconds=0.2) as emulator:
        yield emulator


async def test_invert_then_passthrough_then_reference_colour(emu: Emulator) -> None:
    client = await StreamClient.connect(emu)
    try:
        ack = await client.prompt("Invert the colours")
        assert ack == {
            "type": "prompt_ack",
            "prompt": "Invert the colours",
            "success": True,
            "error": None,
        }
        await client.offer(ColorTrack(RED))
        await client.frame_where(lambda p: close_to(centre(p), INVERSE))

        # set_image replaces the whole state: no image and no prompt is a passthrough.
        assert (await client.set_image(None))["success"] is True
        await client.frame_where(lambda p: close_to(centre(p), RED))

        # A reference image steers colour: a solid input takes the reference's colour.
        blue = (20, 60, 220)
        assert (await client.set_image(png(blue), prompt=""))["success"] is True
        await client.frame_where(lambda p: close_to(centre(p), blue))

        record = emu.sessions[0]
        assert record.prompts_applied == ["Invert the colours", ""]
        assert record.images_applied[0] is None and isinstance(record.images_applied[1], str)
        await emu.wait_until_async(
            lambda: emu.sessions[0].frames_sent > 0 and emu.sessions[0].frames_received > 0
        )
    finally:
        await client.close()


async def test_set_image_without_a_prompt_key_keeps_the_prompt(emu: Emulator) -> None:
    client = await StreamClient.connect(emu)
    try:
        await client.prompt("invert")
        track = ColorTrack(RED)
        await client.offer(track)
        await client.frame_where(lambda p: close_to(centre(p), INVERSE))
        await client.send({"type": "set_image", "image_data": None})  # as the JS SDK does
        assert (await client.expect("set_image_ack"))["success"] is True
        track.color = (40, 200, 40)  # frames from now on: the inverse proves "invert" stayed
        await client.frame_where(lambda p: close_to(centre(p), (215, 55, 215)))
        assert emu.sessions[0].prompts_applied == ["invert"]
        assert emu.sessions[0].images_applied == [None]
    finally:
        await client.close()


async def test_handshake_messages_ticks_and_counts(emu: Emulator) -> None:
    client = await StreamClient.connect(emu)
    try:
        await client.set_image(None)  # the explicit passthrough initial state
        await client.offer()
        session_id = await client.expect("session_id")
        assert session_id["session_id"] == emu.sessions[0].id
        assert session_id["server_port"] == emu.port
        kinds = [m["type"] for m in client.messages]
        assert kinds.index("session_id") > kinds.index("answer")
        await client.expect("generation_started")
        await client.until(lambda: len(client.of_type("generation_tick")) >= 3)
        seconds = [m["seconds"] for m in client.of_type("generation_tick")]
        assert all(type(s) is int for s in seconds)
        assert seconds[:3] == [1, 2, 3]
        await client.frame()
    finally:
        await client.close()
    await emu.wait_until_async(lambda: emu.sessions[0].end_reason == "disconnect")
    record = emu.sessions[0]
    assert record.generation_seconds >= 3
    assert record.frames_received > 0 and record.frames_sent > 0
    assert record.ended_at is not None and record.started_at <= record.ended_at


async def test_offer_first_with_trickled_candidates_then_prompt(emu: Emulator) -> None:
    client = await StreamClient.connect(emu)
    try:
        answer = await client.offer(ColorTrack(RED), trickle=True)
        assert "VP8/90000" in answer
        assert "a=candidate:" in answer  # aiortc answers with its gathered candidates
        await client.frame_where(lambda p: close_to(centre(p), RED))  # passthrough before a prompt
        assert (await client.prompt("negative"))["success"] is True
        await client.frame_where(lambda p: close_to(centre(p), INVERSE))
        assert emu.sessions[0].remote_candidates >= 2  # the candidates and the final null
    finally:
        await client.close()


async def test_several_sessions_at_once_keep_their_own_state(emu: Emulator) -> None:
    inverted = await StreamClient.connect(emu)
    plain = await StreamClient.connect(emu)
    try:
        await inverted.prompt("invert")
        await plain.set_image(None)
        await asyncio.gather(inverted.offer(ColorTrack(RED)), plain.offer(ColorTrack(RED)))
        await asyncio.gather(
            inverted.frame_where(lambda p: close_to(centre(p), INVERSE)),
            plain.frame_where(lambda p: close_to(centre(p), RED)),
        )
        assert len({s.id for s in emu.sessions}) == 2
    finally:
        await asyncio.gather(inverted.close(), plain.close())


class _OneFrame(MediaStreamTrack):
    kind = "video"

    def __init__(self, frame: VideoFrame) -> None:
        super().__init__()
        self._frame: VideoFrame | None = frame

    async def recv(self) -> VideoFrame:
        if self._frame is None:
            await asyncio.Event().wait()  # no more frames
        frame, self._frame = self._frame, None
        assert frame is not None
        return frame


async def test_effect_track_keeps_timestamps_and_transforms() -> None:
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[...] = RED
    source = VideoFrame.from_ndarray(pixels, format="rgb24")
    source.pts = 123_456
    source.time_base = fractions.Fraction(1, 90_000)
    counts = {"in": 0, "out": 0}
    effect = build_effect("invert", None)
    track = EffectTrack(
        lambda: effect,
        lambda: counts.__setitem__("in", counts["in"] + 1),
        lambda: counts.__setitem__("out", counts["out"] + 1),
    )
    track.attach(_OneFrame(source))
    out = await asyncio.wait_for(track.recv(), 5)
    track.stop()
    await track.wait_closed()
    assert (out.pts, out.time_base) == (123_456, fractions.Fraction(1, 90_000))
    assert tuple(out.to_ndarray(format="rgb24")[0, 0]) == INVERSE
    assert counts == {"in": 1, "out": 1}
