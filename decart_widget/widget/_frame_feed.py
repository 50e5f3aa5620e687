"""Frames from Python to a page: ``RealtimeWidget(source=frames)`` and `SessionView`.

See docs/widget.md, "Python frames as the source".

The page asks for frames with ``{"type": "source_open", "id", "width", "height"}`` (the size it
wants, 0 for the frames' own) and the kernel pulls frames from the source and sends each as
``{"type": "source_frame", "id", "width", "height"}`` with the RGB pixels as one binary buffer, at
most ``fps`` a second. The page acknowledges each frame once drawn (``{"type": "source_ack",
"id"}``); at most `WINDOW` frames are unacknowledged, so a slow page (or a busy kernel, which
holds the acks back) stops the pulling: the source is not advanced, nothing queues up.
``{"type": "source_close", "id"}`` ends it; a new ``source_open`` replaces the running one. When
the source ends the kernel sends ``{"type": "source_end", "id", "message"}``; when it fails, or
yields something that is not a frame, ``{"type": "source_error", "id", "message"}`` (and the
owner's ``failed`` callback hears why). Either is final: a later ``source_open`` hears it again.

One pump per feed pulls the source, on a thread of its own for a sync source (a camera read may
block), for an async one on the event loop that runs where the feed was made (a notebook's: a
`RealtimeSession`'s frames live there) or, when none runs there, on a private one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from ..protocol._errors import InvalidInput

log = logging.getLogger("decart_widget.widget.frame_feed")

Frame: TypeAlias = npt.NDArray[np.uint8]
FramesInput: TypeAlias = Iterable[Frame] | AsyncIterable[Frame]
Send = Callable[[dict[str, Any], list[bytes]], None]

#: Frames sent and not yet acknowledged by the page.
WINDOW = 2
#: Largest side of a frame sent at its own size (`SessionView`): bigger frames are scaled down.
MAX_SIDE = 1920


def is_session(source: Any) -> bool:
    from ..client._session import RealtimeSession

    return isinstance(source, RealtimeSession)


def check_source(source: Any) -> Callable[[], FramesInput]:
    """What opens the frames of a Python source, or `InvalidInput` saying what is accepted.

    Accepted: an iterable or async iterable of frames (pulled once, across restarts), a function
    returning one (called at the first start), or a `RealtimeSession` (its transformed frames).
    """
    if is_session(source):
        return lambda: source.frames()
    if isinstance(source, np.ndarray):
        raise InvalidInput(
            "source is a single frame: pass frames, e.g. [frame] or itertools.repeat(frame)"
        )
    if isinstance(source, (str, bytes, bytearray, memoryview, dict)):
        raise InvalidInput(
            "source must be 'camera', 'screen', 'video', 'synthetic', or frames (an iterable or "
            "async iterable of H x W x 3 uint8 arrays, a function returning one, or a "
            f"RealtimeSession); got {type(source).__name__} {str(source)[:40]!r}"
        )
    if isinstance(source, (Iterable, AsyncIterable)):
        return lambda: source
    if callable(source):
        return lambda: _called(source)
    raise InvalidInput(
        "source must be 'camera', 'screen', 'video', 'synthetic', or frames (an iterable or "
        "async iterable of H x W x 3 uint8 arrays, a function returning one, or a "
        f"RealtimeSession); got {type(source).__name__}"
    )


def _called(factory: Callable[[], Any]) -> FramesInput:
    frames = factory()
    if isinstance(frames, (Iterable, AsyncIterable)) and not isinstance(frames, (str, np.ndarray)):
        return frames
    raise InvalidInput(
        f"the source function must return frames (an iterable or async iterable); "
        f"got {type(frames).__name__}"
    )


def check_frame(frame: Any) -> Frame:
    if not isinstance(frame, np.ndarray):
        raise InvalidInput(f"source frames must be numpy arrays; got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InvalidInput(f"source frames must be H x W x 3 RGB; got shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise InvalidInput(f"source frames must be uint8; got {frame.dtype}")
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise InvalidInput(f"source frames are too small: {frame.shape[1]} x {frame.shape[0]}")
    return frame


def fit(frame: Frame, width: int, height: int) -> Frame:
    """``frame`` cropped and scaled down (nearest pixel) to cover ``width`` x ``height``.

    Frames no bigger than that cover go as they are (the page scales them up: fewer bytes);
    ``width`` 0 keeps the frame's size, scaled down only past `MAX_SIDE`.
    """
    h, w = frame.shape[:2]
    if width <= 0 or height <= 0:
        scale = min(1.0, MAX_SIDE / max(h, w))
        width, height = max(2, round(w * scale)), max(2, round(h * scale))
        if scale >= 1.0:
            return frame
    else:
        scale = max(width / w, height / h)
        if scale >= 1.0:
            return frame
    # the source region that covers the target at this scale, centred
    region_w, region_h = min(w, width / scale), min(h, height / scale)
    x0, y0 = (w - region_w) / 2, (h - region_h) / 2
    cols = (x0 + (np.arange(width) + 0.5) * region_w / width).astype(np.intp)
    rows = (y0 + (np.arange(height) + 0.5) * region_h / height).astype(np.intp)
    fitted: Frame = frame[rows[:, None], cols[None, :]]
    return fitted


class _Run:
    """One opening of the feed by one page: its id, the size it wants, its unacknowledged frames."""

    def __init__(self, run_id: str, width: int, height: int) -> None:
        self.id = run_id
        self.width = width
        self.height = height
        self.in_flight = 0


class FrameFeed:
    """Pulls frames from a Python source and sends them to the page that opened it last.

    One pump per feed pulls the source (so a generator is never advanced from two places); pages
    come and go under it. ``failed`` hears why the source failed (the widget shows it).
    """

    def __init__(
        self,
        source: Callable[[], FramesInput],
        send: Send,
        fps: float,
        failed: Callable[[str], None] = lambda message: None,
    ) -> None:
        self._open_source = source
        self._send = send
        self._interval = 1.0 / fps
        self._failed = failed
        self._changed = threading.Condition()
        self._run: _Run | None = None
        self._closed = False
        self._pumping = False
        #: why the source stopped for good ("source_end" or "source_error" and the message)
        self._over: tuple[str, str] | None = None
        self._wake: Callable[[], None] = lambda: None  # an async pump's waker
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        #: frames sent so far, and the most ever unacknowledged at once (bench/, tests)
        self.sent = 0
        self.most_in_flight = 0

    # ---- the page's messages -------------------------------------------------------------------

    def message(self, content: dict[str, Any]) -> None:
        """A ``source_open``, ``source_ack`` or ``source_close`` from a page."""
        kind, run_id = content.get("type"), content.get("id")
        if not isinstance(run_id, str):
            return
        with self._changed:
            run = self._run if self._run is not None and self._run.id == run_id else None
            if kind == "source_open" and not self._closed:
                self._run = _Run(run_id, _size(content.get("width")), _size(content.get("height")))
                over, start = self._over, not self._pumping and self._over is None
                self._pumping = self._pumping or start
            elif kind == "source_ack" and run is not None:
                run.in_flight = max(0, run.in_flight - 1)
            elif kind == "source_close" and run is not None:
                self._run = None
            self._changed.notify_all()
        self._wake()
        if kind != "source_open" or self._closed:
            return
        if over is not None:  # ended or failed before: say so to the new page at once
            self._tell(run_id, *over)
        elif start:
            self._start()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._run = None
            self._changed.notify_all()
        self._wake()

    # ---- pumping -------------------------------------------------------------------------------

    def _start(self) -> None:
        try:
            frames = self._open_source()
        except Exception as exc:
            self._finish("source_error", f"the frame source could not start: {exc}")
            return
        if not isinstance(frames, AsyncIterable):
            threading.Thread(
                target=self._run_sync, args=(frames,), name="decart-frame-feed", daemon=True
            ).start()
        elif self._loop is not None and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._run_async(frames), self._loop)
        else:
            threading.Thread(
                target=lambda: asyncio.run(self._run_async(frames)),
                name="decart-frame-feed",
                daemon=True,
            ).start()

    def _ready(self) -> bool:
        """Closed, or a page is open with room in its window (call holding ``_changed``)."""
        return self._closed or (self._run is not None and self._run.in_flight < WINDOW)

    def _run_sync(self, frames: Iterable[Frame]) -> None:
        try:
            self._pump_sync(frames)
        except Exception as exc:  # a failure of ours (the source's own are caught in the pump)
            log.exception("the frame feed stopped")
            self._finish("source_error", f"frames could not be sent: {exc}")

    async def _run_async(self, frames: AsyncIterable[Frame]) -> None:
        try:
            await self._pump_async(frames)
        except Exception as exc:
            log.exception("the frame feed stopped")
            self._finish("source_error", f"frames could not be sent: {exc}")

    def _pump_sync(self, frames: Iterable[Frame]) -> None:
        iterator = iter(frames)
        due = time.monotonic()
        while True:
            with self._changed:
                self._changed.wait_for(self._ready)
                if self._closed:
                    return
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                frame = next(iterator, None)
            except Exception as exc:
                self._finish("source_error", f"the frame source failed: {exc}")
                return
            if not self._deliver(frame):
                return
            due = max(due + self._interval, time.monotonic())

    async def _pump_async(self, frames: AsyncIterable[Frame]) -> None:
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody pumps any more
                loop.call_soon_threadsafe(changed.set)

        self._wake = wake
        iterator = aiter(frames)
        due = loop.time()
        try:
            while True:
                while True:
                    changed.clear()
                    with self._changed:
                        if self._ready():
                            break
                    await changed.wait()
                if self._closed:
                    return
                await asyncio.sleep(max(0.0, due - loop.time()))
                try:
                    frame = await anext(iterator, None)
                except Exception as exc:
                    self._finish("source_error", f"the frame source failed: {exc}")
                    return
                if not self._deliver(frame):
                    return
                due = max(due + self._interval, loop.time())
        finally:
            self._wake = lambda: None

    def _deliver(self, frame: Any) -> bool:
        """Send one frame to the open page (None: the source ended); False: stop pumping."""
        if self._closed:
            return False
        if frame is None:
            log.info("the frame source ended; the page keeps its last frame")
            self._finish("source_end", "the frame source ended")
            return False
        with self._changed:
            run = self._run
        if run is None:
            return True  # the page went meanwhile: this frame is dropped
        try:
            rgb = np.ascontiguousarray(fit(check_frame(frame), run.width, run.height))
        except InvalidInput as exc:
            self._finish("source_error", str(exc))
            return False
        with self._changed:
            run.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, run.in_flight)
        self.sent += 1
        height, width = rgb.shape[:2]
        header = {"type": "source_frame", "id": run.id, "width": width, "height": height}
        self._send(header, [rgb.tobytes()])
        return True

    def _finish(self, kind: str, message: str) -> None:
        with self._changed:
            self._over = (kind, message)
            run = self._run
        if kind == "source_error":
            log.error("%s", message)
            self._failed(message)
        if run is not None:
            self._tell(run.id, kind, message)

    def _tell(self, run_id: str, kind: str, message: str) -> None:
        try:
            self._send({"type": kind, "id": run_id, "message": message}, [])
        except Exception as exc:  # the comm itself failed: the log and ``failed`` say why
            log.warning("could not tell the page why the frames stopped: %s", exc)


def _size(value: Any) -> int:
    return value if isinstance(value, int) and 0 < value <= 8192 else 0
