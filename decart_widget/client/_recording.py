"""`RealtimeSession.record()`: the session's frames encoded into a video file with PyAV.

See docs/headless.md, "Recording". A recording samples the latest frame of the output (the
frames the session receives), of the input (the frames it sends, read through `InputTap`), or of
both side by side, at a constant rate, from its first frame on: a file of ``seconds`` at ``fps``
holds ``seconds * fps`` frames, whatever rate the service sends at. While the session is not
live (a reconnect) or its frames stop coming, the recording shows black, so a gap is visible and
the timeline stays true. Encoding (`decart_widget._video_file`) runs on a worker thread, one
frame at a time; ticks it cannot keep up with (two seconds' worth queued) are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from .._recording import (
    AlreadyRecording,
    NotRecording,
    RecordingError,
    RecordingTooLarge,
    RecordWhich,
    size_words,
)
from .._video_file import VideoFile

log = logging.getLogger("decart_widget.client.recording")

#: A frame older than this no longer stands for its stream: the recording shows black.
STALE_SECONDS = 1.0
#: How far behind its clock a recording's ticks may fall before it skips frames to catch up.
CATCH_UP_SECONDS = 0.5


class InputTap(MediaStreamTrack):
    """The source track as the media link reads it, showing each frame sent to `listener`."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, listener: Callable[[VideoFrame], None]) -> None:
        super().__init__()
        self._source = source
        self._listener = listener

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._source.recv()
        if not isinstance(frame, VideoFrame):
            raise MediaStreamError
        self._listener(frame)
        return frame


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


class _Layout:
    """The picture size of a recording and how each stream's frame is placed in it."""

    def __init__(self, which: RecordWhich, sizes: dict[str, tuple[int, int]]) -> None:
        self.which = which
        if which == "both":
            out_w, out_h = sizes["output"]
            in_w, in_h = sizes["input"]
            height = _even(out_h)
            # the input at the output's height, its own shape kept
            self.boxes = {
                "input": (0, _even(in_w * height / in_h), height),
                "output": (_even(in_w * height / in_h), _even(out_w), height),
            }
            self.width = self.boxes["output"][0] + self.boxes["output"][1]
            self.height = height
        else:
            width, height = sizes[which]
            self.width, self.height = _even(width), _even(height)
            self.boxes = {which: (0, self.width, self.height)}

    def compose(self, frames: dict[str, VideoFrame | None]) -> np.ndarray:
        picture = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        for name, (left, width, height) in self.boxes.items():
            frame = frames.get(name)
            if frame is not None:
                rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
                picture[:height, left : left + width] = rgb
        return picture


class Recording:
    """One recording of a session; `run` writes it until it is stopped, full or the session ends."""

    def __init__(
        self,
        path: Path,
        which: RecordWhich,
        fps: float,
        seconds: float | None,
        max_bytes: int | None,
        live: Callable[[], bool],
        ended: Callable[[], bool],
    ) -> None:
        self.path = path
        self.which = which
        self.fps = fps
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._live = live
        self._ended = ended
        self._latest: dict[str, tuple[float, VideoFrame]] = {}
        self._stop = asyncio.Event()
        self._session_gone = False
        #: frames written and the index of the last one (``frames < last + 1``: ticks skipped)
        self.frames = 0
        self.error: RecordingError | None = None
        self.task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            self._run(), name="decart-recording"
        )

    def offer(self, name: str, frame: VideoFrame) -> None:
        self._latest[name] = (time.monotonic(), frame)

    def stop(self, session_gone: bool = False) -> None:
        self._session_gone = self._session_gone or session_gone
        self._stop.set()

    def _current(self, now: float) -> dict[str, VideoFrame | None]:
        if not self._live():
            self._latest.clear()  # what comes after the gap is new
        return {
            name: frame for name, (at, frame) in self._latest.items() if now - at <= STALE_SECONDS
        }

    def _wanted(self) -> tuple[str, ...]:
        return ("input", "output") if self.which == "both" else (self.which,)

    async def _run(self) -> None:
        encoder: VideoFile | None = None
        encoding: asyncio.Task[None] | None = None
        # at most two seconds of pictures wait for the encoder; a tick that finds it full is skipped
        queue: asyncio.Queue[tuple[int, dict[str, VideoFrame | None]] | None] = asyncio.Queue(
            maxsize=max(2, round(2 * self.fps))
        )
        started = 0.0
        index = -1
        try:
            while not self._stop.is_set() and not self._ended():
                now = time.monotonic()
                current = self._current(now)
                if encoder is None:
                    if not all(current.get(name) is not None for name in self._wanted()):
                        await self._pause(1 / self.fps)
                        continue
                    sizes = {
                        name: (frame.width, frame.height)
                        for name, frame in current.items()
                        if frame is not None
                    }
                    layout = _Layout(self.which, sizes)
                    encoder = await asyncio.to_thread(
                        VideoFile, self.path, self.fps, layout.width, layout.height
                    )
                    encoding = asyncio.create_task(self._encode_all(encoder, layout, queue))
                    started = now
                    log.info(
                        "recording %s (%dx%d at %g fps) to %s",
                        self.which,
                        layout.width,
                        layout.height,
                        self.fps,
                        self.path,
                    )
                # one tick after the other; a late tick still fills its slot with the latest
                # picture, unless the loop fell far behind (then the skipped slots stay empty)
                index = max(index + 1, round((now - started - CATCH_UP_SECONDS) * self.fps))
                if self.seconds is not None and index >= round(self.seconds * self.fps):
                    break
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait((index, {name: current.get(name) for name in self._wanted()}))
                await self._pause(started + (index + 1) / self.fps - time.monotonic())
            gone = self._session_gone or self._ended()
            short = encoder is None or index + 1 < round((self.seconds or 0) * self.fps)
            if gone and short and self.seconds is not None and self.error is None:
                held = f"; {self.path} holds its first {index / self.fps:.1f} s" if encoder else ""
                self.error = RecordingError(
                    "the session ended during the recording" + held,
                    self.path if encoder else None,
                )
        except Exception as exc:
            log.exception("the recording to %s failed", self.path)
            self.error = self.error or RecordingError(
                f"the recording to {self.path} failed: {exc}", self.path
            )
        finally:
            if encoding is not None:
                await queue.put(None)
                await encoding
            if encoder is not None:
                await asyncio.to_thread(encoder.close)
            elif self.error is None:
                self.error = RecordingError(
                    f"no {self.which} frame arrived: nothing was recorded (is the session live?)"
                )
            log.info("recording to %s ended: %d frames", self.path, self.frames)

    async def _encode_all(
        self,
        encoder: VideoFile,
        layout: _Layout,
        queue: asyncio.Queue[tuple[int, dict[str, VideoFrame | None]] | None],
    ) -> None:
        """Encode what the ticks queue, in order, until the None that ends the recording."""
        while (item := await queue.get()) is not None:
            if self.error is not None:
                continue  # stopping: what is still queued is dropped
            index, frames = item
            try:
                written = await asyncio.to_thread(self._encode, encoder, layout, frames, index)
            except Exception as exc:
                log.exception("encoding the recording to %s failed", self.path)
                self.error = RecordingError(f"encoding {self.path} failed: {exc}", self.path)
                self._stop.set()
                continue
            self.frames += 1
            if self.max_bytes is not None and written > self.max_bytes:
                self.error = RecordingTooLarge(
                    f"the recording reached its size limit ({size_words(self.max_bytes)}) "
                    f"after {index / self.fps:.1f} s and was stopped; {self.path} holds that "
                    "much (pass a larger max_bytes, or max_bytes=None)",
                    self.path,
                )
                self._stop.set()

    @staticmethod
    def _encode(
        encoder: VideoFile, layout: _Layout, frames: dict[str, VideoFrame | None], index: int
    ) -> int:
        return encoder.encode(layout.compose(frames), index)

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), seconds)


class SessionRecordings:
    """A session's recording, one at a time: taps its frames and runs `Recording`."""

    def __init__(self, live: Callable[[], bool], ended: Callable[[], bool]) -> None:
        self._live = live
        self._ended = ended
        self.current: Recording | None = None

    def tap_input(self, track: MediaStreamTrack) -> InputTap:
        return InputTap(track, lambda frame: self._offer("input", frame))

    def output(self, frame: VideoFrame) -> None:
        self._offer("output", frame)

    def _offer(self, name: str, frame: VideoFrame) -> None:
        if self.current is not None:
            self.current.offer(name, frame)

    def start(
        self,
        path: Path,
        which: RecordWhich,
        fps: float,
        seconds: float | None,
        max_bytes: int | None,
    ) -> Recording:
        if self.current is not None and not self.current.task.done():
            raise AlreadyRecording(
                f"already recording to {self.current.path}: stop_recording() first"
            )
        self.current = Recording(path, which, fps, seconds, max_bytes, self._live, self._ended)
        return self.current

    async def finish(self, recording: Recording) -> Path:
        """Wait for ``recording`` to end; its file, or its error."""
        try:
            await asyncio.shield(recording.task)
        finally:
            if self.current is recording and recording.task.done():
                self.current = None
        if recording.error is not None:
            raise recording.error
        return recording.path

    async def stop(self) -> Path:
        recording = self.current
        if recording is None:
            raise NotRecording("no recording is running (start_recording() starts one)")
        recording.stop()
        return await self.finish(recording)

    async def close(self) -> None:
        """The session ends: a running recording is finished, its file closed."""
        recording, self.current = self.current, None
        if recording is not None:
            recording.stop(session_gone=True)
            with contextlib.suppress(Exception):
                await recording.task
