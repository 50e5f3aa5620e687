"""Test kit for the emulator's integration tests (no tests here).

A raw protocol client (`websockets`) with a real aiortc peer sending a solid-colour track, so the
tests talk to the emulator exactly as a Gen-A client does, and check returned frames by pixels.
Every wait is a condition with a timeout; nothing sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import base64
import fractions
import io
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import websockets
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame
from PIL import Image, PngImagePlugin

from decart_widget.emulator import Emulator
from decart_widget.protocol._urls import build_stream_url

RGB = npt.NDArray[np.uint8]
WAIT = 10.0
TIME_BASE = fractions.Fraction(1, 90_000)


class ColorTrack(MediaStreamTrack):
    """A paced solid-colour video track; set ``color`` at any time."""

    kind = "video"

    def __init__(
        self, color: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (160, 120)
    ) -> None:
        super().__init__()
        self.color = color
        self.size = size
        self.sent = 0
        self._pts = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await asyncio.sleep(1 / 30)
        width, height = self.size
        pixels = np.empty((height, width, 3), np.uint8)
        pixels[...] = self.color
        frame = VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        self._pts += 3000
        self.sent += 1
        return frame


def png(color: tuple[int, int, int] = (20, 60, 220), size: int = 32, text: str = "") -> bytes:
    pixels = np.empty((size, size, 3), np.uint8)
    pixels[...] = color
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", text)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def centre(pixels: RGB) -> tuple[int, int, int]:
    """The mean colour of the middle of a frame (edges of a VP8 frame can ring)."""
    h, w, _ = pixels.shape
    patch = pixels[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3)
    r, g, b = (round(float(v)) for v in patch.mean(axis=0))
    return (r, g, b)


def close_to(color: tuple[int, int, int], expected: tuple[int, int, int], tol: int = 20) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(color, expected, strict=True))


def strip_candidates(sdp: str) -> tuple[str, list[str]]:
    """An SDP without its candidate lines (for trickling them), and those lines."""
    candidates = re.findall(r"^a=(candidate:[^\r\n]+)", sdp, flags=re.M)
    stripped = re.sub(r"^a=(candidate:|end-of-candidates)[^\r\n]*\r\n", "", sdp, flags=re.M)
    return stripped, candidates


class StreamClient:
    """A Gen-A protocol client: one WebSocket, optionally one peer connection."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._taken: set[int] = set()
        self._changed = asyncio.Condition()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = asyncio.Event()
        self.pc: RTCPeerConnection | None = None
        self.track: ColorTrack | None = None
        self._remote: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(
        cls,
        emu: Emulator,
        api_key: str | None = None,
        model: str = "lucy-2.1",
        *,
        origin: str | None = None,
        **params: str,
    ) -> StreamClient:
        url = build_stream_url(emu.realtime_url, api_key or emu.api_key, model, **params)
        headers = {"Origin": origin} if origin is not None else None
        ws = await websockets.connect(
            url, additional_headers=headers, proxy=None, max_size=None, open_timeout=WAIT
        )
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                async with self._changed:
                    self.messages.append(json.loads(frame))
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    async def until(self, predicate: Callable[[], object], timeout: float = WAIT) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def expect(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        """The oldest not-yet-taken message of this type, waiting for it if needed."""

        def first() -> int | None:
            for index, message in enumerate(self.messages):
                if index not in self._taken and message["type"] == kind:
                    return index
            return None

        try:
            await self.until(lambda: first() is not None or self.closed.is_set(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {kind!r} within {timeout} s; got {self.messages}") from None
        index = first()
        if index is None:
            raise AssertionError(
                f"socket closed ({self.close_code} {self.close_reason!r}) before a {kind!r}; "
                f"got {self.messages}"
            )
        self._taken.add(index)
        return self.messages[index]

    async def wait_closed(self, timeout: float = WAIT) -> tuple[int | None, str | None]:
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code, self.close_reason

    # ---- requests -------------------------------------------------------------------------------

    async def prompt(self, text: str) -> dict[str, Any]:
        await self.send({"type": "prompt", "prompt": text, "enhance_prompt": False})
        return await self.expect("prompt_ack")

    async def set_image(self, image: bytes | None, prompt: str | None = None) -> dict[str, Any]:
        await self.send(
            {
                "type": "set_image",
                "image_data": b64(image) if image is not None else None,
                "prompt": prompt,
                "enhance_prompt": False,
            }
        )
        return await self.expect("set_image_ack")

    # ---- media ----------------------------------------------------------------------------------

    async def offer(self, track: ColorTrack | None = None, *, trickle: bool = False) -> str:
        """Create the peer, send the offer (trickled or not), apply the answer; returns it."""
        self.track = track or ColorTrack()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc = pc

        @pc.on("track")
        def _on_track(remote: MediaStreamTrack) -> None:
            if not self._remote.done():
                self._remote.set_result(remote)

        pc.addTrack(self.track)
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        if not trickle:
            await self.send({"type": "offer", "sdp": sdp})
        else:
            stripped, candidates = strip_candidates(sdp)
            await self.send({"type": "offer", "sdp": stripped})
            for index, line in enumerate(candidates):
                if index % 2:  # some clients send the bare candidate line
                    await self.send(
                        {
                            "type": "ice-candidate",
                            "candidate": line,
                            "sdpMid": "0",
                            "sdpMLineIndex": 0,
                        }
                    )
                else:
                    await self.send(
                        {
                            "type": "ice-candidate",
                            "candidate": {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0},
                        }
                    )
            await self.send({"type": "ice-candidate", "candidate": None})
        answer = await self.expect("answer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        return str(answer["sdp"])

    async def frame(self, timeout: float = WAIT) -> RGB:
        remote = await asyncio.wait_for(asyncio.shield(self._remote), timeout)
        frame = await asyncio.wait_for(remote.recv(), timeout)
        assert isinstance(frame, VideoFrame)
        pixels: RGB = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
        return pixels

    async def frame_where(self, predicate: Callable[[RGB], bool], timeout: float = WAIT) -> RGB:
        """The first returned frame that satisfies ``predicate`` (effects apply a frame late)."""

        async def scan() -> RGB:
            while True:
                pixels = await self.frame(timeout)
                if predicate(pixels):
                    return pixels

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            raise AssertionError("no returned frame matched within the timeout") from None

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        await self.ws.close()
        await self._reader


async def mint(emu: Emulator, **body: Any) -> str:
    """A client token from the emulator's HTTP endpoint."""
    import httpx

    async with httpx.AsyncClient(base_url=emu.api_url, trust_env=False) as http:
        response = await http.post(
            "/v1/client/tokens", headers={"X-API-KEY": emu.api_key}, json=body
        )
    assert response.status_code == 200, response.text
    key: str = response.json()["apiKey"]
    return key
