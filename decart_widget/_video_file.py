"""Writing video files with PyAV, for recordings (`decart_widget.client._recording`,
`decart_widget.widget._recording`): VP8 in ``.webm``/``.mkv``, H.264 in ``.mp4``, at a constant
frame rate, and `constant_rate`, which re-times a file the browser recorded to one.
"""

from __future__ import annotations

import fractions
import logging
import os
from pathlib import Path
from typing import Any

import av
import numpy as np
from av import VideoFrame

from ._recording import CONTAINERS, RecordingError

log = logging.getLogger("decart_widget.recording")

#: Encoders by container, the first one this PyAV build has wins (with its options).
ENCODERS: dict[str, list[tuple[str, dict[str, str]]]] = {
    "webm": [("libvpx", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"})],
    "matroska": [("libvpx", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"})],
    "mp4": [("libx264", {"preset": "veryfast"}), ("h264", {}), ("mpeg4", {})],
}
BITS_PER_SECOND = 2_500_000


def _encoder(container: str) -> tuple[str, dict[str, str]]:
    for name, options in ENCODERS[container]:
        if name in av.codecs_available:
            return name, options
    raise RecordingError(f"this PyAV build has no encoder for {container} files")


class VideoFile:
    """One output file at a constant rate, fed one picture at a time (blocking: use a thread)."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        container = CONTAINERS[path.suffix.lower()]
        codec, options = _encoder(container)
        self.rate = fractions.Fraction(fps).limit_denominator(1001)
        self.output = av.open(str(path), mode="w", format=container)
        try:
            stream = self.output.add_stream(codec, rate=self.rate, options=options)
            assert isinstance(stream, av.video.stream.VideoStream)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = BITS_PER_SECOND
        except Exception:
            self.output.close()
            raise
        self.stream = stream
        self.width, self.height = width, height
        self.written = 0
        self.frames = 0

    def encode(self, picture: np.ndarray | VideoFrame, index: int) -> int:
        """Encode ``picture`` (RGB array or decoded frame) as frame ``index``; the bytes written
        so far."""
        if isinstance(picture, VideoFrame):
            frame = picture
        else:
            frame = VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts = index
        frame.time_base = 1 / self.rate
        self._mux(self.stream.encode(frame))
        self.frames += 1
        return self.written

    def close(self) -> None:
        try:
            self._mux(self.stream.encode(None))
        finally:
            self.output.close()

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self.written += packet.size
            self.output.mux(packet)


def constant_rate(path: Path, fps: float, seconds: float | None = None) -> int:
    """Re-time the video of ``path`` to ``fps`` frames a second, in place; the frames written.

    A browser's MediaRecorder stamps each frame with when it was drawn, so a busy page leaves
    uneven gaps and its WebM has no duration. Here every slot ``i / fps`` gets the latest picture
    drawn by then, for ``seconds`` (default: up to the last frame), and the file gets a duration
    and an index. The file is replaced only once the new one is complete.
    """
    staging = path.with_name(f".{path.name}.retimed{path.suffix}")
    written = 0
    try:
        with av.open(str(path)) as source:
            stream = source.streams.video[0]
            frames = source.decode(stream)
            current = next(frames, None)
            if current is None:
                raise RecordingError(f"{path} holds no video frame")
            start = float(current.time or 0.0)
            upcoming = next(frames, None)
            output = VideoFile(
                staging, fps, current.width - current.width % 2, current.height - current.height % 2
            )
            try:
                index = 0
                while True:
                    slot = start + index / fps
                    if seconds is not None and index >= round(seconds * fps):
                        break
                    while upcoming is not None and float(upcoming.time or 0.0) <= slot:
                        current, upcoming = upcoming, next(frames, None)
                    if (
                        seconds is None
                        and upcoming is None
                        and slot > float(current.time or 0.0) + 1 / fps
                    ):
                        break
                    output.encode(
                        current.reformat(output.width, output.height, format="yuv420p"), index
                    )
                    index += 1
            finally:
                output.close()
            written = output.frames
        os.replace(staging, path)
    finally:
        if staging.exists():
            staging.unlink()
    return written
