"""Writing video files with PyAV, for recordings (`decart_widget.client._recording`,
`decart_widget.widget._recording`): VP8 in ``.webm``/``.mkv``, H.264 in ``.mp4``, at a constant
frame rate, and `constant_rate`, which re-times a file the browser recorded to one.
"""

from __future__ import annotations

import fractions
import itertools
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
    """Make the video of ``path`` run at ``fps`` frames a second, in place; the frames written.

    A browser's MediaRecorder stamps each frame with when it was drawn, so a busy page leaves
    uneven gaps, and its WebM has no duration. A file whose frames already come at ``fps`` is
    only copied into a new container (which gives it a duration and an index); any other is
    re-encoded, every slot ``i / fps`` getting the latest picture drawn by then, for ``seconds``
    (default: up to its last frame). The file is replaced only once the new one is complete.
    """
    staging = path.with_name(f".{path.name}.retimed{path.suffix}")
    try:
        times = _frame_times(path)
        if not times:
            raise RecordingError(f"{path} holds no video frame")
        written = (
            _copy(path, staging)
            if _steady(times, fps, seconds)
            else _retime(path, staging, fps, seconds)
        )
        os.replace(staging, path)
    finally:
        if staging.exists():
            staging.unlink()
    return written


def _frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as source:
        stream = source.streams.video[0]
        base = stream.time_base or fractions.Fraction(1, 1000)
        return sorted(float(p.pts * base) for p in source.demux(stream) if p.pts is not None)


def _steady(times: list[float], fps: float, seconds: float | None) -> bool:
    """Whether frames at ``times`` already are a ``fps`` stream (of ``seconds``, if given)."""
    expected = round((seconds if seconds is not None else times[-1] - times[0] + 1 / fps) * fps)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return abs(len(times) - expected) <= max(2, expected // 20) and max(gaps, default=0) < 2.5 / fps


def _copy(path: Path, staging: Path) -> int:
    with (
        av.open(str(path)) as source,
        av.open(str(staging), "w", format=CONTAINERS[path.suffix.lower()]) as target,
    ):
        stream = source.streams.video[0]
        copy = target.add_stream_from_template(stream)
        count = 0
        for packet in source.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = copy
            target.mux(packet)
            count += 1
    return count


def _retime(path: Path, staging: Path, fps: float, seconds: float | None) -> int:
    with av.open(str(path)) as source:
        frames = source.decode(source.streams.video[0])
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
            while seconds is None or index < round(seconds * fps):
                slot = start + index / fps
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
    return output.frames
