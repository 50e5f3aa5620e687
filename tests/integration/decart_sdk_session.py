"""One realtime session with Decart's own Python SDK (PyPI ``decart[realtime]``), unmodified.

``python decart_sdk_session.py <api_url> <realtime_url> <api_key>`` connects as the SDK's README
shows, pointed at the given service (the emulator), publishes a red camera track with LiveKit's
client, and checks the pixels of the model's output: the initial prompt "invert" (which the SDK
sends after the room info), then ``set_prompt("noir")``; and that ticks reach the SDK. It prints
one JSON line per step and exits 0 when every step passed. Run by test_decart_sdk.py in an
interpreter that has the SDK (never a dependency of this project); useful by hand too.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from decart import DecartClient, models
from decart.realtime import RealtimeClient, RealtimeConnectOptions
from decart.types import ModelState, Prompt
from livekit import rtc

WIDTH, HEIGHT = 320, 180
RED = (200, 40, 40)
STEP_TIMEOUT = 30.0


def report(step: str, **fields: Any) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


Colour = tuple[int, int, int]


def close_to(colour: Colour, expected: Colour, tol: int = 25) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(colour, expected, strict=True))


def grey(colour: Colour) -> bool:
    return max(colour) - min(colour) <= 12 and not close_to(colour, RED)


class Frames:
    """The centre colour of each frame of the model's output, waited on by condition."""

    def __init__(self) -> None:
        self.latest: Colour | None = None
        self.changed = asyncio.Condition()

    async def read(self, track: rtc.RemoteVideoTrack) -> None:
        stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGB24)
        async for event in stream:
            frame = event.frame
            pixels = np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 3)
            h, w, _ = pixels.shape
            patch = pixels[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3)
            r, g, b = (round(float(v)) for v in patch.mean(axis=0))
            async with self.changed:
                self.latest = (r, g, b)
                self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[Colour], bool]) -> Colour:
        def matches() -> bool:
            return self.latest is not None and predicate(self.latest)

        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(matches), STEP_TIMEOUT)
            except TimeoutError:
                raise AssertionError(f"no matching frame; last centre {self.latest}") from None
            assert self.latest is not None
            return self.latest


async def publish(source: rtc.VideoSource) -> None:
    rgba = np.full((HEIGHT, WIDTH, 4), 255, np.uint8)
    rgba[..., :3] = RED
    data = rgba.tobytes()
    while True:
        source.capture_frame(rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.RGBA, data))
        await asyncio.sleep(1 / 30)


async def main(api_url: str, realtime_url: str, api_key: str) -> None:
    client = DecartClient(api_key=api_key, base_url=api_url, realtime_base_url=realtime_url)
    source = rtc.VideoSource(WIDTH, HEIGHT)
    track = rtc.LocalVideoTrack.create_video_track("camera", source)
    pump = asyncio.ensure_future(publish(source))
    frames = Frames()
    readers: list[asyncio.Task[None]] = []
    states: list[str] = []
    ticks: list[int] = []
    ticked = asyncio.Event()

    def on_tick(message: Any) -> None:
        ticks.append(message.seconds)
        ticked.set()

    def on_remote_stream(remote: rtc.RemoteVideoTrack) -> None:
        readers.append(asyncio.ensure_future(frames.read(remote)))

    started = time.monotonic()
    realtime = await RealtimeClient.connect(
        base_url=client.realtime_base_url,
        api_key=client.api_key,
        local_track=track,
        options=RealtimeConnectOptions(
            model=models.realtime("lucy-2.1"),
            on_remote_stream=on_remote_stream,
            initial_state=ModelState(prompt=Prompt(text="invert", enhance=False)),
        ),
    )
    realtime.on("connection_change", states.append)
    realtime.on("generation_tick", on_tick)
    report(
        "connected",
        seconds=round(time.monotonic() - started, 2),
        session_id=realtime.session_id,
        state=realtime.get_connection_state(),
    )
    try:
        inverted = (255 - RED[0], 255 - RED[1], 255 - RED[2])
        colour = await frames.wait_for(lambda c: close_to(c, inverted))
        report("initial prompt applied", centre=colour)
        await realtime.set_prompt("noir", enhance=False)
        report("set_prompt acked")
        colour = await frames.wait_for(grey)
        report("prompt changed the pixels", centre=colour)
        await asyncio.wait_for(ticked.wait(), STEP_TIMEOUT)
        report("generating", ticks=ticks[:5], states=states)
    finally:
        await realtime.disconnect()
        pump.cancel()
        for reader in readers:
            reader.cancel()
        await client.close()
    report("disconnected", state=realtime.get_connection_state())


if __name__ == "__main__":
    try:
        asyncio.run(main(*sys.argv[1:4]))
    except Exception as exc:
        report("failed", error=f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from None
