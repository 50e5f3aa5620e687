"""The far ends that `bench/pipeline.py` measures, each run in its own process.

``python bench/_peers.py echo``
    A bare aiortc echo: ``POST /offer`` with ``{"sdp": ...}`` answers ``{"sdp": ...}``; every
    video frame received is sent back inverted, nothing else. The inversion is a ``bitwise_not``
    of the decoded yuv420p planes (255 - Y, 255 - U, 255 - V: RGB inversion up to rounding), done
    inline on the loop: no colour conversion, no executor, no frame dropping. It is the floor
    that aiortc itself sets (VP8 decode + encode, RTP, the event loop).
``python bench/_peers.py emulator``
    The decart-widget emulator (`decart_widget.emulator.Emulator`) with a session limit high
    enough for the concurrency ramp.

Each prints one line ``READY <port> <api_key>`` on stdout, serves on 127.0.0.1 only, and exits
when its stdin reaches end of file, so it never outlives the bench that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from av import VideoFrame

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MAX_SESSIONS = 256


def _stdin_closed(loop: asyncio.AbstractEventLoop, done: asyncio.Event) -> None:
    """Block (in a daemon thread) until stdin closes, then set ``done`` on ``loop``."""

    def watch() -> None:
        with contextlib.suppress(Exception):
            sys.stdin.buffer.read()
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


class InvertTrack(MediaStreamTrack):
    """The echo's outgoing track: each received frame, planes inverted, same pts."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self._source = source

    async def recv(self) -> VideoFrame:
        frame = await self._source.recv()
        assert isinstance(frame, VideoFrame)
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        planes = frame.to_ndarray()
        np.bitwise_not(planes, out=planes)
        out = VideoFrame.from_ndarray(planes, format="yuv420p")
        out.pts = frame.pts
        out.time_base = frame.time_base
        return out


async def _echo() -> None:
    peers: set[RTCPeerConnection] = set()

    async def offer(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peers.add(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                pc.addTrack(InvertTrack(track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                peers.discard(pc)
                await pc.close()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp})

    app = web.Application()
    app.router.add_post("/offer", offer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    done = asyncio.Event()
    _stdin_closed(asyncio.get_running_loop(), done)
    print(f"READY {port} -", flush=True)
    try:
        await done.wait()
    finally:
        await asyncio.gather(*(pc.close() for pc in list(peers)), return_exceptions=True)
        await runner.cleanup()


def _emulator() -> None:
    sys.path.insert(0, str(ROOT))
    from decart_widget.emulator import Emulator

    emulator = Emulator(host=HOST, port=0, max_concurrent_sessions=MAX_SESSIONS).start()
    try:
        print(f"READY {emulator.port} {emulator.api_key}", flush=True)
        with contextlib.suppress(Exception):
            sys.stdin.buffer.read()
    finally:
        emulator.stop()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    if argv == ["echo"]:
        asyncio.run(_echo())
    elif argv == ["emulator"]:
        _emulator()
    else:
        sys.stderr.write("usage: python bench/_peers.py echo|emulator\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
