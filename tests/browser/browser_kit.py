"""Helpers for the browser tests: waiting on conditions, recording traitlets, reading pixels.

Pixels are read in the page: both <video> elements of a widget view (input preview and
transformed output) are drawn, in the same task, onto small canvases, and their RGB samples come
back as numpy arrays. Statistics are robust to scaling, compression and the small delay between
the input and the output: means, colourfulness, and the correlation between the two pictures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: size of the grid the videos are sampled on (16:9-ish, like the models)
GRID_W, GRID_H = 48, 27

_READ_JS = """
([index, gw, gh]) => {
  const root = document.querySelectorAll('.decart-widget')[index];
  if (!root) return null;
  const grab = (video) => {
    if (!video) return null;
    const info = {width: video.videoWidth, height: video.videoHeight, time: video.currentTime,
                  ready: video.readyState, paused: video.paused, data: null};
    if (video.readyState < 2 || !video.videoWidth) return info;
    const canvas = document.createElement('canvas');
    canvas.width = gw; canvas.height = gh;
    const ctx = canvas.getContext('2d', {willReadFrequently: true});
    ctx.drawImage(video, 0, 0, gw, gh);
    const rgba = ctx.getImageData(0, 0, gw, gh).data;
    const rgb = new Array(gw * gh * 3);
    for (let i = 0, j = 0; i < rgba.length; i += 4) {
      rgb[j++] = rgba[i]; rgb[j++] = rgba[i + 1]; rgb[j++] = rgba[i + 2];
    }
    info.data = rgb;
    return info;
  };
  return {input: grab(root.querySelector('.dw-input video')),
          output: grab(root.querySelector('.dw-output video'))};
}
"""


@dataclass
class Picture:
    width: int
    height: int
    time: float
    ready: int
    pixels: np.ndarray | None  # GRID_H x GRID_W x 3 float, 0..255

    @property
    def mean(self) -> np.ndarray:
        assert self.pixels is not None
        return self.pixels.reshape(-1, 3).mean(axis=0)

    @property
    def brightness(self) -> float:
        return float(self.mean.mean()) if self.pixels is not None else 0.0

    @property
    def peak(self) -> float:
        """The 99th percentile of the pixels' brightest channel: > ~50 means "not black"."""
        assert self.pixels is not None
        return float(np.percentile(self.pixels.max(axis=2), 99))

    @property
    def colourfulness(self) -> float:
        """Mean spread between a pixel's channels: ~0 for grey pictures."""
        assert self.pixels is not None
        return float((self.pixels.max(axis=2) - self.pixels.min(axis=2)).mean())

    @property
    def contrast(self) -> float:
        assert self.pixels is not None
        return float(self.pixels.std())

    def region(self, x0: float, x1: float) -> np.ndarray:
        """Mean RGB of the vertical band between fractions ``x0`` and ``x1`` of the width."""
        assert self.pixels is not None
        a, b = round(x0 * GRID_W), round(x1 * GRID_W)
        return self.pixels[:, a:b].reshape(-1, 3).mean(axis=0)

    def __repr__(self) -> str:
        if self.pixels is None:
            return f"Picture({self.width}x{self.height}, ready={self.ready}, no pixels)"
        mean = ", ".join(f"{v:.0f}" for v in self.mean)
        return (
            f"Picture({self.width}x{self.height}, t={self.time:.2f}, mean=({mean}), "
            f"colourful={self.colourfulness:.0f}, contrast={self.contrast:.0f})"
        )


def _picture(info: dict[str, Any] | None) -> Picture | None:
    if info is None:
        return None
    data = info.get("data")
    pixels = None if data is None else np.asarray(data, dtype=np.float64).reshape(GRID_H, GRID_W, 3)
    return Picture(
        int(info["width"]), int(info["height"]), float(info["time"]), int(info["ready"]), pixels
    )


@dataclass
class Frames:
    """The input preview and the transformed output of one view, sampled together."""

    input: Picture | None
    output: Picture | None

    @property
    def ready(self) -> bool:
        return bool(
            self.input is not None
            and self.output is not None
            and self.input.pixels is not None
            and self.output.pixels is not None
        )

    def correlation(self) -> float:
        """Pearson correlation of input and output samples: ~+1 same picture, ~-1 inverted."""
        assert self.ready and self.input and self.output
        a = self.input.pixels.ravel()  # type: ignore[union-attr]
        b = self.output.pixels.ravel()  # type: ignore[union-attr]
        if a.std() < 1e-6 or b.std() < 1e-6:
            return 0.0
        return float(np.corrcoef(a, b)[0, 1])

    def inverted(self) -> bool:
        """The output is the input's negative: strongly anti-correlated, channel means mirrored."""
        assert self.input and self.output
        mirrored = np.abs(self.output.mean - (255 - self.input.mean)).max()
        return self.correlation() < -0.6 and mirrored < 40

    def same(self) -> bool:
        """The output shows the input unchanged (passthrough)."""
        assert self.input and self.output
        return self.correlation() > 0.6 and np.abs(self.output.mean - self.input.mean).max() < 40

    def noir(self) -> bool:
        """The output is grey while the input is colourful."""
        assert self.input and self.output
        return self.output.colourfulness < 12 and self.input.colourfulness > 40

    def __repr__(self) -> str:
        corr = f", corr={self.correlation():+.2f}" if self.ready else ""
        return f"Frames(in={self.input}, out={self.output}{corr})"


def read_frames(page: Any, index: int = 0) -> Frames:
    result = page.evaluate(_READ_JS, [index, GRID_W, GRID_H])
    if result is None:
        return Frames(None, None)
    return Frames(_picture(result["input"]), _picture(result["output"]))


def write_webm(path: Any, seconds: float = 2.0, fps: int = 15) -> bytes:
    """A small VP8 WebM: a red left half, a green right half and a moving white bar."""
    import av

    width, height = 320, 192
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        for i in range(int(seconds * fps)):
            rgb = np.zeros((height, width, 3), dtype=np.uint8)
            rgb[:, : width // 2] = (220, 30, 30)
            rgb[:, width // 2 :] = (30, 200, 30)
            y = (i * 7) % (height - 16)
            rgb[y : y + 16, :] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def webm_inverted(frames: Frames) -> bool:
    """The output shows `write_webm`'s clip under "invert": red -> cyan on the left, green ->
    magenta on the right."""
    assert frames.output is not None
    left, right = frames.output.region(0.05, 0.45), frames.output.region(0.55, 0.95)
    return bool(
        left[1] > left[0] + 80
        and left[2] > left[0] + 80
        and right[0] > right[1] + 80
        and right[2] > right[1] + 80
    )


# ---- waiting and recording ---------------------------------------------------------------------


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 15.0,
    what: str = "condition",
    every: float = 0.05,
) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Recorder:
    """Every value a traitlet takes, in order (front-end changes arrive on the server's thread)."""

    def __init__(self, widget: Any, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.values: list[Any] = [getattr(widget, name)]
        widget.observe(self._on_change, names=name)

    def _on_change(self, change: dict[str, Any]) -> None:
        with self._lock:
            self.values.append(change["new"])

    def distinct(self) -> list[Any]:
        """The values without consecutive repeats."""
        with self._lock:
            out: list[Any] = []
            for value in self.values:
                if not out or out[-1] != value:
                    out.append(value)
            return out


class WidgetPage:
    """Displays widgets in the test page, and drives and reads their views."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def show(self, widget: Any, views: int = 1) -> None:
        """Display ``widget`` (``views`` times) and wait until its views are in the page."""
        from IPython.display import display

        before = self.count()
        for _ in range(views):
            display(widget)
        wait_for(lambda: self.count() >= before + views, 20, "the widget view(s) to render")

    def count(self) -> int:
        return int(self.page.evaluate("document.querySelectorAll('.decart-widget').length"))

    def root(self, index: int = 0) -> Any:
        return self.page.locator(".decart-widget").nth(index)

    def text(self, selector: str, index: int = 0) -> str:
        return str(self.root(index).locator(selector).inner_text())

    def frames(self, index: int = 0) -> Frames:
        return read_frames(self.page, index)

    def wait_frames(
        self,
        predicate: Callable[[Frames], Any],
        timeout: float = 15.0,
        what: str = "the output video",
        index: int = 0,
    ) -> Frames:
        """Poll the pixels of view ``index`` until ``predicate(frames)`` holds; return them."""
        last: list[Frames] = []

        def check() -> Frames | None:
            frames = self.frames(index)
            last[:] = [frames]
            return frames if frames.ready and predicate(frames) else None

        try:
            return wait_for(check, timeout, what, every=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last pixels: {last[0] if last else None}") from None
