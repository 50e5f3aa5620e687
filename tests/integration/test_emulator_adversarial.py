"""The emulator against hostile input (issue 14's adversarial probe, kept as tests): an image bomb,
token requests nested too deep or carrying non-finite numbers. (A ``%0A`` in ``?model=`` forging
a log line is checked on the real command's stderr in ``test_log_hygiene.py``.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import zlib
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from test_emulator_kit import StreamClient, png

from decart_widget.emulator import Emulator
from decart_widget.emulator._images import MAX_IMAGE_PIXELS


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
async def http(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emu.api_url, trust_env=False) as client:
        yield client


# ---- defect 6: an image bomb --------------------------------------------------------------------


def png_bomb(width: int, height: int) -> bytes:
    """A valid greyscale PNG of ``width`` x ``height`` black pixels: a few hundred KB that
    decode to width x height x 3 bytes of RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + one byte a pixel
    parts = [compressor.compress(row) for _ in range(height)]
    idat = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


async def test_an_image_declaring_too_many_pixels_is_refused_and_says_so(emu: Emulator) -> None:
    side = 6000  # 36 M pixels (108 MB of RGB) in a ~40 KB file
    assert side * side > MAX_IMAGE_PIXELS
    bomb = png_bomb(side, side)
    assert len(bomb) < 1_000_000
    client = await StreamClient.connect(emu)
    try:
        ack = await client.set_image(bomb, prompt="Anime")
        assert ack["success"] is False
        assert f"{side}x{side}" in ack["error"] and "pixels" in ack["error"], ack["error"]
        # the session carries on, and an ordinary image still works
        assert (await client.set_image(png(size=64)))["success"] is True
    finally:
        await client.close()


# ---- defect 7: token requests that broke the JSON answer ----------------------------------------


async def _mint_raw(http: httpx.AsyncClient, key: str, content: bytes) -> httpx.Response:
    return await http.post(
        "/v1/client/tokens",
        headers={"X-API-KEY": key, "Content-Type": "application/json"},
        content=content,
    )


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 100_000 + b"]" * 100_000,  # beyond the C parser's recursion limit
        b'{"metadata": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
        b'{"metadata": ' + b'{"a": ' * 900 + b"1" + b"}" * 900 + b"}",  # parses; too deep
    ],
    ids=["array-100000-deep", "object-5000-deep", "metadata-900-deep"],
)
async def test_deeply_nested_json_is_422_not_500(
    emu: Emulator, http: httpx.AsyncClient, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    response = await _mint_raw(http, emu.api_key, content)
    assert response.status_code == 422, response.text[:300]
    detail = response.json()["detail"]
    assert "deep" in detail[0]["msg"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b'{"expiresIn": 1e400}', "finite_number"),
        (b'{"expiresIn": -1e400}', "finite_number"),
        (b'{"expiresIn": NaN}', "json_invalid"),
        (b'{"expiresIn": Infinity}', "json_invalid"),
        (b'{"constraints": {"realtime": {"maxSessionDuration": 1e999}}}', "finite_number"),
    ],
)
async def test_non_finite_numbers_get_a_422_that_is_valid_json(
    emu: Emulator, http: httpx.AsyncClient, content: bytes, kind: str
) -> None:
    response = await _mint_raw(http, emu.api_key, content)
    assert response.status_code == 422
    # strict JSON: no NaN / Infinity tokens
    body = json.loads(response.text, parse_constant=lambda name: pytest.fail(f"got {name}"))
    assert body["detail"][0]["type"] == kind


# ---- second pass: absurd numbers and text that is not text --------------------------------------


@pytest.mark.parametrize("value", [1e308, 10**30, 86_401])
async def test_an_absurd_max_session_duration_is_422(
    emu: Emulator, http: httpx.AsyncClient, value: float
) -> None:
    body = {"constraints": {"realtime": {"maxSessionDuration": value}}}
    response = await _mint_raw(http, emu.api_key, json.dumps(body).encode())
    assert response.status_code == 422, response.text[:300]
    [detail] = response.json()["detail"]
    assert detail["type"] == "less_than_equal" and "86400" in detail["msg"]
    ok = await _mint_raw(
        http, emu.api_key, b'{"constraints": {"realtime": {"maxSessionDuration": 86400}}}'
    )
    assert ok.json()["constraints"] == {"realtime": {"maxSessionDuration": 86400}}


async def test_a_prompt_that_is_not_unicode_text_is_refused_not_a_crash(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """``"\\ud800"`` is valid JSON but no text: it once ended the session with 1011 and a
    traceback (the effect hashed the prompt as UTF-8)."""
    caplog.set_level(logging.ERROR)
    client = await StreamClient.connect(emu)
    try:
        for frame in (
            '{"type": "prompt", "prompt": "a\\ud800b", "enhance_prompt": false}',
            '{"type": "set_image", "image_data": null, "prompt": "\\udfff"}',
        ):
            await client.ws.send(frame)
        prompt_ack = await client.expect("prompt_ack")
        image_ack = await client.expect("set_image_ack")
        for ack in (prompt_ack, image_ack):
            assert ack["success"] is False and "Unicode" in ack["error"], ack
        assert (await client.prompt("Anime"))["success"] is True  # the session carries on
    finally:
        await client.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ---- second pass: the emulator against slow upgrades (defect 1, the proxy's, here too) ----------


async def test_half_sent_upgrades_are_cut_and_cannot_crowd_out_real_clients() -> None:
    """Connections that never finish their upgrade are closed at the handshake deadline, and at
    the connection cap the oldest make room: /health and a real session still get in."""
    with Emulator(handshake_timeout=1.0, max_connections=20) as emu:
        half_sent = (
            f"GET /v1/stream?model=lucy-2.1&api_key={emu.api_key} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{emu.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        ).encode()  # no blank line: the request never completes
        streams = []
        for _ in range(60):
            reader, writer = await asyncio.open_connection("127.0.0.1", emu.port)
            writer.write(half_sent)
            await writer.drain()
            streams.append((reader, writer))
        async with httpx.AsyncClient(base_url=emu.api_url, trust_env=False) as http:
            assert (await http.get("/health")).status_code == 200
        client = await StreamClient.connect(emu)
        try:
            assert (await client.prompt("Anime"))["success"] is True

            async def cut(reader: asyncio.StreamReader) -> None:
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read() == b""

            await asyncio.wait_for(asyncio.gather(*(cut(r) for r, _ in streams)), 15)
            assert (await client.prompt("Noir"))["success"] is True  # a session is never cut
        finally:
            await client.close()
            for _, writer in streams:
                writer.close()
