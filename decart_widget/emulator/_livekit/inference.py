"""The inference participant's video: a placeholder until the user's camera arrives, then the
user's frames through the session's current effect.

LiveKit clients wait for a first frame of the ``inference-server-*`` track before they send a
prompt, so the track must carry video from the moment it is subscribed: `InferenceTrack` sends a
dark placeholder frame of the model's size every ``1 / PLACEHOLDER_FPS`` seconds until the
wrapped `EffectTrack` (the same machinery as the Gen-A path, `decart_widget.emulator._media`)
yields its first frame. Every frame leaves with a timestamp of this track's own 90 kHz clock, so
the switch from placeholder to camera (whose timestamps are the sender's) never goes backwards.
"""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from .._media import EffectTrack

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
PLACEHOLDER_FPS = 10
PLACEHOLDER_GREY = 24


def placeholder_frame(width: int, height: int) -> VideoFrame:
    pixels = np.full((height, width, 3), PLACEHOLDER_GREY, dtype=np.uint8)
    return VideoFrame.from_ndarray(pixels, format="rgb24")


class InferenceTrack(MediaStreamTrack):
    """The video track the inference participant publishes."""

    kind = "video"

    def __init__(self, effect_track: EffectTrack, width: int, height: int) -> None:
        super().__init__()
        self._effect_track = effect_track
        self._placeholder = placeholder_frame(width, height)
        self._next: asyncio.Task[VideoFrame] | None = None
        self._live_source = False
        self._started: float | None = None

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._next_frame()
        now = time.monotonic()
        if self._started is None:
            self._started = now
        frame.pts = int((now - self._started) * VIDEO_CLOCK_RATE)
        frame.time_base = VIDEO_TIME_BASE
        return frame

    async def _next_frame(self) -> VideoFrame:
        if self._live_source:
            try:
                return await self._effect_track.recv()
            except MediaStreamError:  # the camera went away: back to the placeholder
                self._live_source = False
        if self._next is None:
            self._next = asyncio.ensure_future(self._effect_track.recv())
        done, _ = await asyncio.wait({self._next}, timeout=1 / PLACEHOLDER_FPS)
        if not done:
            return self._placeholder
        task, self._next = self._next, None
        try:
            frame = task.result()
        except MediaStreamError:
            await asyncio.sleep(1 / PLACEHOLDER_FPS)
            return self._placeholder
        self._live_source = True
        return frame

    def stop(self) -> None:
        super().stop()
        if self._next is not None:
            self._next.cancel()
