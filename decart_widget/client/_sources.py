"""Media sources for the headless client: what the kernel sends as its "camera".

`make_track(source, model)` accepts a numpy frame iterator (sync or async), a callable returning
one, a video file path, ``"synthetic"`` (a built-in animated pattern), or an aiortc track.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import os
import time
from collections.abc import AsyncIterable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from ..models import RealtimeModel
from ..protocol._errors import InvalidInput

log = logging.getLogger("decart_widget.client.sources")

RGBFrame: TypeAlias = npt.NDArray[np.uint8]
FrameSource: TypeAlias = (
    Iterable[RGBFrame]
    | AsyncIterable[RGBFrame]
    | Callable[[], Iterable[RGBFrame] | AsyncIterable[RGBFrame]]
    | str
    | os.PathLike[str]
    | MediaStreamTrack
    | None
)

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


def check_frame(frame: Any) -> RGBFrame:
    """A frame must be HxWx3 uint8 RGB with even sides (VP8 and YUV 4:2:0 need them)."""
    if not isinstance(frame, np.ndarray):
        raise InvalidInput(f"source frames must be numpy arrays, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InvalidInput(f"source frames must be HxWx3 RGB, got shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise InvalidInput(f"source frames must be uint8, got {frame.dtype}")
    height, width = frame.shape[:2]
    if height < 2 or width < 2:
        raise InvalidInput(f"source frames are too small: {width}x{height}")
    if height % 2 or width % 2:
        frame = frame[: height - height % 2, : width - width % 2]
    return np.asarray(frame, dtype=np.uint8)


class PacedTrack(MediaStreamTrack):
    """A video track that emits frames at a steady rate with 90 kHz timestamps."""

    kind = "video"

    def __init__(self, fps: float) -> None:
        super().__init__()
        if fps <= 0:
            raise InvalidInput(f"fps must be positive, got {fps!r}")
        self.fps = fps
        self._start: float | None = None
        self._index = 0

    async def _next_pts(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._index += 1
            due = self._start + self._index / self.fps
            if due > now:
                await asyncio.sleep(due - now)
        return int(self._index * VIDEO_CLOCK_RATE / self.fps)

    def _wrap(self, rgb: RGBFrame, pts: int) -> VideoFrame:
        frame = VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        return frame


class IteratorTrack(PacedTrack):
    """Frames pulled from a (sync or async) iterator of numpy arrays; ends when it ends.

    A producer task pulls the frames, so a peer connection that is torn down mid-`recv` (a
    reconnect) cancels only a queue read, never the user's generator.
    """

    def __init__(self, frames: Iterable[RGBFrame] | AsyncIterable[RGBFrame], fps: float) -> None:
        super().__init__(fps)
        self._frames = frames
        self._queue: asyncio.Queue[RGBFrame | None] = asyncio.Queue(maxsize=1)
        self._producer: asyncio.Task[None] | None = None

    async def _produce(self) -> None:
        try:
            if isinstance(self._frames, AsyncIterable):
                async for rgb in self._frames:
                    await self._queue.put(check_frame(rgb))
            else:
                for rgb in self._frames:
                    await self._queue.put(check_frame(rgb))
        except Exception as exc:
            log.error("the frame source failed: %s", exc)
        await self._queue.put(None)

    async def recv(self) -> VideoFrame:
        if self._producer is None:
            self._producer = asyncio.ensure_future(self._produce())
        pts = await self._next_pts()
        rgb = await self._queue.get()
        if rgb is None:
            log.info("the frame source ended")
            self.stop()
            raise MediaStreamError
        return self._wrap(rgb, pts)

    def stop(self) -> None:
        super().stop()
        if self._producer is not None:
            self._producer.cancel()


class SyntheticTrack(PacedTrack):
    """An animated test pattern: colour bars drifting sideways over a slow gradient."""

    BARS: tuple[tuple[int, int, int], ...] = (
        (235, 235, 235),
        (235, 235, 16),
        (16, 235, 235),
        (16, 235, 16),
        (235, 16, 235),
        (235, 16, 16),
        (16, 16, 235),
        (16, 16, 16),
    )

    def __init__(self, width: int, height: int, fps: float) -> None:
        super().__init__(fps)
        width -= width % 2
        height -= height % 2
        bar_index = (np.arange(width) * len(self.BARS) // width).astype(np.intp)
        row = np.asarray(self.BARS, dtype=np.uint8)[bar_index]
        self._row = np.concatenate([row, row])  # doubled so a shifted window never wraps
        self._height = height
        self._width = width
        self._shade = np.linspace(1.0, 0.55, height, dtype=np.float32)[:, None, None]

    def pattern(self, index: int) -> RGBFrame:
        shift = (index * 4) % self._width
        row = self._row[shift : shift + self._width]
        frame = (row[None, :, :] * self._shade).astype(np.uint8)
        return frame

    async def recv(self) -> VideoFrame:
        pts = await self._next_pts()
        return self._wrap(self.pattern(self._index), pts)


class BorrowedTrack(MediaStreamTrack):
    """A view of a source track for one peer connection.

    aiortc stops a sender's track when its peer connection closes; the session outlives peer
    connections (reconnects), so each one gets a borrowed view and the source keeps running.
    """

    kind = "video"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self._source = source

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._source.recv()
        if not isinstance(frame, VideoFrame):
            raise MediaStreamError
        return frame


def make_track(
    source: FrameSource, model: RealtimeModel, fps: float | None = None
) -> MediaStreamTrack:
    """Turn any accepted source into an aiortc video track."""
    rate = float(fps or model.fps)
    if source is None or (isinstance(source, str) and source == "synthetic"):
        return SyntheticTrack(model.width, model.height, rate)
    if isinstance(source, MediaStreamTrack):
        if source.kind != "video":
            raise InvalidInput(f"source track must be video, got {source.kind}")
        return source
    if isinstance(source, (str, os.PathLike)):
        return _file_track(Path(source))
    if isinstance(source, np.ndarray):
        raise InvalidInput("source is a single frame: pass an iterable of frames, e.g. [frame]")
    if callable(source) and not isinstance(source, (Iterable, AsyncIterable)):
        source = source()
    if isinstance(source, (Iterable, AsyncIterable)) and not isinstance(source, str):
        return IteratorTrack(source, rate)
    raise InvalidInput(
        "source must be frames (an iterable or async iterable of HxWx3 uint8 arrays), "
        f"a video file path, 'synthetic' or an aiortc video track; got {type(source).__name__}"
    )


def _file_track(path: Path) -> MediaStreamTrack:
    from aiortc.contrib.media import MediaPlayer

    if not path.is_file():
        raise InvalidInput(f"video file not found: {path}")
    try:
        player = MediaPlayer(str(path), loop=True)
    except Exception as exc:  # av raises many types for unreadable files
        raise InvalidInput(f"cannot read video file {path}: {exc}") from None
    if player.video is None:
        raise InvalidInput(f"{path} has no video stream")
    return player.video
