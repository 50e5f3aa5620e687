"""Control messages against the emulator: the reference proxy's exchange, moderation, image checks,
and tolerance of odd input. (Media is in test_emulator_media.py.)"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from PIL import Image
from test_emulator_kit import StreamClient, b64, png

from decart_widget.emulator import Emulator
from decart_widget.protocol._errors import ModerationError, classify
from decart_widget.protocol.messages import parse_server


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(max_image_bytes=64 * 1024) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[StreamClient]:
    connected = await StreamClient.connect(emu)
    yield connected
    await connected.close()


def _black_512() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((512, 512, 3), np.uint8)).save(out, format="PNG")
    return out.getvalue()


async def test_the_reference_proxy_exchange(emu: Emulator) -> None:
    """Decart's ws-signaling-proxy e2e: set_image -> set_image_ack, prompt -> prompt_ack."""
    client = await StreamClient.connect(emu, model="lucy_2_rt")
    try:
        await client.send(
            {
                "type": "set_image",
                "image_data": b64(_black_512()),
                "prompt": "Test prompt",
                "enhance_prompt": False,
            }
        )
        assert (await client.expect("set_image_ack"))["success"] is True
        await client.send(
            {"type": "prompt", "prompt": "Cyberpunk neon city", "enhance_prompt": True}
        )
        ack = await client.expect("prompt_ack")
        assert ack == {
            "type": "prompt_ack",
            "prompt": "Cyberpunk neon city",
            "success": True,
            "error": None,
        }
        for raw in client.messages:  # every frame parses with the protocol core
            parse_server(json.dumps(raw))
        record = emu.sessions[0]
        assert record.prompts_applied == ["Test prompt", "Cyberpunk neon city"]
        assert record.images_applied == [hashlib.sha256(_black_512()).hexdigest()]
    finally:
        await client.close()


async def test_set_image_ack_has_exact_shape(client: StreamClient) -> None:
    ack = await client.set_image(png(), prompt="Anime")
    assert ack == {"type": "set_image_ack", "success": True, "error": None}


async def test_a_blocked_prompt_is_refused_and_the_state_kept(
    emu: Emulator, client: StreamClient
) -> None:
    assert (await client.prompt("Anime style"))["success"] is True
    ack = await client.prompt("Some VIOLENCE please")
    assert ack == {
        "type": "prompt_ack",
        "prompt": "Some VIOLENCE please",
        "success": False,
        "error": "Prompt rejected by moderation",
    }
    assert isinstance(classify(ack["error"]), ModerationError)
    ack = await client.set_image(None, prompt="forbidden fruit")
    assert ack["success"] is False and ack["error"] == "Prompt rejected by moderation"
    record = emu.sessions[0]
    assert record.prompts_applied == ["Anime style"]
    assert record.images_applied == []
    assert record.rejected == [
        ("prompt", "Prompt rejected by moderation"),
        ("prompt", "Prompt rejected by moderation"),
    ]


async def test_an_image_carrying_a_blocked_word_is_refused(
    emu: Emulator, client: StreamClient
) -> None:
    good = png((10, 200, 10))
    assert (await client.set_image(good, prompt="a"))["success"] is True
    ack = await client.set_image(png(text="this is forbidden"), prompt="b")
    assert ack == {
        "type": "set_image_ack",
        "success": False,
        "error": "Image rejected by moderation",
    }
    record = emu.sessions[0]
    assert record.prompts_applied == ["a"]
    assert record.images_applied == [hashlib.sha256(good).hexdigest()]


async def test_a_custom_blocklist() -> None:
    with Emulator(blocklist=["llama"]) as emu:
        client = await StreamClient.connect(emu)
        try:
            assert (await client.prompt("violence"))["success"] is True
            assert (await client.prompt("a Llama"))["success"] is False
        finally:
            await client.close()


async def test_an_image_over_the_limit_is_refused(emu: Emulator, client: StreamClient) -> None:
    big = png(size=8) + b"\0" * (64 * 1024)  # a valid PNG header, 64 KiB over
    ack = await client.set_image(big)
    assert ack["success"] is False
    assert ack["error"] == f"Image too large: {len(big)} bytes (limit {64 * 1024} bytes)"
    assert emu.sessions[0].images_applied == []


async def test_the_default_limit_is_10_mb_decoded() -> None:
    with Emulator() as emu:
        client = await StreamClient.connect(emu)
        try:
            over = b"\x89PNG\r\n\x1a\n" + b"\0" * (10 * 1024 * 1024)
            ack = await client.set_image(over)
            assert ack["success"] is False and "Image too large" in ack["error"]
            assert (await client.prompt("still alive"))["success"] is True
        finally:
            await client.close()


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b64(b"hello, I am plain text and no image"), "Invalid image data: not an image"),
        ("!!!not base64!!!", "Invalid image data: not valid base64"),
        (b64(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10), "Image could not be decoded"),
    ],
)
async def test_not_an_image_is_refused_clearly(
    client: StreamClient, payload: str, error: str
) -> None:
    await client.send({"type": "set_image", "image_data": payload, "prompt": None})
    ack = await client.expect("set_image_ack")
    assert ack["success"] is False
    assert ack["error"].startswith(error)


async def test_a_data_url_prefix_is_tolerated(client: StreamClient) -> None:
    await client.send(
        {"type": "set_image", "image_data": "data:image/png;base64," + b64(png()), "prompt": "x"}
    )
    assert (await client.expect("set_image_ack"))["success"] is True


async def test_acks_come_in_order(client: StreamClient) -> None:
    for text in ("one", "two", "forbidden three", "four"):
        await client.send({"type": "prompt", "prompt": text})
    acks = [await client.expect("prompt_ack") for _ in range(4)]
    assert [(a["prompt"], a["success"]) for a in acks] == [
        ("one", True),
        ("two", True),
        ("forbidden three", False),
        ("four", True),
    ]


async def test_odd_input_is_tolerated(emu: Emulator, client: StreamClient) -> None:
    await client.send({"type": "some_future_message", "x": 1})  # unknown: ignored
    await client.ws.send("{not json")
    error = await client.expect("error")
    assert error["error"].startswith("Invalid message:")
    # A malformed join is refused and does not make the session Gen-B (test_emulator_gen_b*).
    await client.send({"type": "livekit_join", "passthrough": 1})
    assert "boolean 'passthrough'" in (await client.expect("error"))["error"]
    # Candidates before any offer are kept for it, not refused.
    await client.send({"type": "ice-candidate", "candidate": None})
    assert (await client.prompt("still here"))["success"] is True
    assert emu.sessions[0].remote_candidates == 1
    assert emu.sessions[0].end_reason is None
    assert emu.sessions[0].transport is None


async def test_an_unusable_offer_gets_an_error_and_1011(emu: Emulator) -> None:
    client = await StreamClient.connect(emu)
    await client.send({"type": "offer", "sdp": "v=0\r\nthis is no sdp\r\n"})
    error = await client.expect("error")
    assert error["error"].startswith("Invalid offer:")
    assert await client.wait_closed() == (1011, "invalid offer")
    await emu.wait_until_async(lambda: emu.sessions[0].end_reason == "invalid_offer")
