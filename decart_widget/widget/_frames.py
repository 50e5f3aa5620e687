"""Frames from the widget's page to Python: ``await w.snapshot()``.

See docs/widget.md, "Frames in Python".

The kernel asks the page over the widget comm (``{"type": "frame_request", "id", "which",
"timeout_ms"}``); the page (js/src/frame_capture.ts) waits for a decoded frame of the asked stream
and answers the same id with ``{"type": "frame", "id", "which", "width", "height"}`` and the RGB
pixels as one binary buffer, or ``{"type": "frame_error", "id", "kind", "message"}``. Every page
showing the widget answers; the first answer wins and later ones are dropped.

Answers arrive on whichever thread runs the comm (the kernel's, or a server's in embedded hosts);
each request resolves its future on the event loop that awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..protocol._errors import DecartError, InvalidInput

log = logging.getLogger("decart_widget.widget.frames")

Which = Literal["input", "output"]
WHICH = ("input", "output")
#: Default wait for a frame, in seconds (a first frame needs the camera and the connection).
DEFAULT_TIMEOUT = 30.0
#: Longest wait a request may ask for, in seconds.
MAX_TIMEOUT = 600.0
#: How long past its own timeout the kernel waits for the page to answer before it gives up.
ANSWER_GRACE = 5.0

Frame = npt.NDArray[np.uint8]


class FrameUnavailable(DecartError):
    """No frame could be had from the widget's page; the subclass says why."""

    kind = "frame_unavailable"


class NotDisplayed(FrameUnavailable):
    """The widget was never displayed, or no page showing it answered."""

    kind = "not_displayed"


class NotStarted(FrameUnavailable):
    """The widget is not started (``w.start()`` or the view's Start), or it stopped meanwhile."""

    kind = "not_started"


class ViewHidden(FrameUnavailable):
    """No view of the widget is in the page: its output was cleared, or its cell or notebook
    closed while the kernel runs on. Display it again (``w`` or ``display(w)``)."""

    kind = "view_hidden"


class FrameTimeout(FrameUnavailable):
    """No frame was decoded within the timeout."""

    kind = "frame_timeout"


class WidgetClosed(FrameUnavailable):
    """The widget was closed (``w.close()``) before or while the frame was asked."""

    kind = "widget_closed"


#: The page's refusals (js/src/frame_capture.ts, FrameRefused) as exceptions.
_REFUSALS: dict[str, type[FrameUnavailable]] = {
    "not_started": NotStarted,
    "stopped": NotStarted,
    "timeout": FrameTimeout,
    "hidden": ViewHidden,
}


def check_which(which: Any) -> Which:
    if which not in WHICH:
        raise InvalidInput(f'which must be "output" or "input"; got {which!r}')
    return which  # type: ignore[no-any-return]


def check_timeout(timeout: Any) -> float:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        raise InvalidInput(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}]")
    return float(timeout)


def decode_frame(content: dict[str, Any], buffers: Any) -> Frame:
    """The H x W x 3 uint8 array of a ``frame`` message (a fresh, writable array)."""
    width, height = content.get("width"), content.get("height")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise FrameUnavailable(f"the page sent a frame without a size: {width!r} x {height!r}")
    if not buffers:
        raise FrameUnavailable("the page sent a frame without pixels")
    data = bytearray(buffers[0])
    if len(data) != width * height * 3:
        raise FrameUnavailable(
            f"the page sent {len(data)} bytes for a {width} x {height} RGB frame"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)


class _Pending:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Frame] = loop.create_future()

    def settle(self, result: Frame | BaseException) -> None:
        def apply() -> None:
            if self.future.done():
                return
            if isinstance(result, BaseException):
                self.future.set_exception(result)
            else:
                self.future.set_result(result)

        # a closed loop: nobody awaits the answer any more
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(apply)


class FrameRequests:
    """The kernel's side of frame requests for one widget."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self._send = send
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._closed = False

    async def snapshot(self, which: Which, timeout: float) -> Frame:
        """One frame of ``which``, waiting up to ``timeout`` seconds for the page to have one."""
        pending = _Pending(asyncio.get_running_loop())
        with self._lock:
            if self._closed:
                raise WidgetClosed("the widget is closed")
            request_id = next(self._ids)
            self._pending[request_id] = pending
        try:
            self._send(
                {
                    "type": "frame_request",
                    "id": request_id,
                    "which": which,
                    "timeout_ms": round(timeout * 1000),
                }
            )
            try:
                return await asyncio.wait_for(pending.future, timeout + ANSWER_GRACE)
            except asyncio.TimeoutError:
                raise NotDisplayed(
                    f"no page showing the widget answered within {timeout + ANSWER_GRACE:g} s: "
                    "is its output cell visible in an open notebook?"
                ) from None
        finally:
            with self._lock:
                self._pending.pop(request_id, None)

    def answer(self, content: dict[str, Any], buffers: Any) -> None:
        """A ``frame`` or ``frame_error`` message from a page."""
        request_id = content.get("id")
        with self._lock:
            pending = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if pending is None:
            log.debug("dropping a frame answer for request %r (answered or given up)", request_id)
            return
        if content.get("type") == "frame_error":
            kind = content.get("kind")
            error_type = _REFUSALS.get(kind, FrameUnavailable) if isinstance(kind, str) else None
            message = content.get("message")
            pending.settle(
                (error_type or FrameUnavailable)(
                    message if isinstance(message, str) and message else "no frame"
                )
            )
            return
        try:
            pending.settle(decode_frame(content, buffers))
        except FrameUnavailable as exc:
            pending.settle(exc)

    def close(self) -> None:
        """The widget closed: every waiting request fails with `WidgetClosed`."""
        with self._lock:
            self._closed = True
            pending, self._pending = list(self._pending.values()), {}
        for request in pending:
            request.settle(WidgetClosed("the widget was closed while waiting for a frame"))


#: The highest rate of a frame stream (``fps``) and of a feed (``source_fps``, `SessionView`'s
#: ``fps``): the page reads, packs and sends every frame on its main thread
#: (js/src/frame_capture.ts caps at the same rate), and the models run at 20-30 fps.
MAX_FPS = 30.0
DEFAULT_FPS = 2.0

FrameCallback = Callable[[Frame], Any]


def check_fps(fps: Any, name: str = "fps") -> float:
    """``fps`` as a float; `InvalidInput` naming the argument (``name``) when it is not a rate."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= MAX_FPS:
        raise InvalidInput(f"{name} must be a number in (0, {MAX_FPS:g}]; got {fps!r}")
    return float(fps)


class FrameStreams:
    """The kernel's side of frame streams (``w.on_frame``, ``w.frames()``) for one widget.

    Each stream has an id; the page sends ``frame {stream: id}`` messages at up to ``fps`` and
    keeps at most two unacknowledged, so a stream acknowledges each frame once it is handled (the
    callback returned, or the iterator handed it out): a slow consumer makes the page skip frames.
    """

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self._send = send
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[FrameCallback, Which]] = {}
        self._queues: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue[Frame | None]]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def add(self, callback: FrameCallback, fps: float, which: Which) -> None:
        with self._lock:
            stream_id = next(self._ids)
            self._callbacks[stream_id] = (callback, which)
        self._send({"type": "frame_stream", "id": stream_id, "which": which, "fps": fps})

    def remove(self, callback: FrameCallback) -> bool:
        """End every stream of ``callback``; False if it had none."""
        with self._lock:
            ids = [i for i, (known, _) in self._callbacks.items() if known == callback]
            for stream_id in ids:
                del self._callbacks[stream_id]
        for stream_id in ids:
            self._send({"type": "frame_stream", "id": stream_id, "fps": 0})
        return bool(ids)

    async def iterate(self, fps: float, which: Which) -> AsyncIterator[Frame]:
        """Frames as they come, until the widget closes (an async generator)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Frame | None] = asyncio.Queue()
        with self._lock:
            if self._closed:
                raise WidgetClosed("the widget is closed")
            stream_id = next(self._ids)
            self._queues[stream_id] = (loop, queue)
        self._send({"type": "frame_stream", "id": stream_id, "which": which, "fps": fps})
        try:
            while True:
                frame = await queue.get()
                if frame is None:
                    return
                self._send({"type": "frame_ack", "stream": stream_id})
                yield frame
        finally:
            with self._lock:
                self._queues.pop(stream_id, None)
            if not self._closed:
                self._send({"type": "frame_stream", "id": stream_id, "fps": 0})

    def frame(self, content: dict[str, Any], buffers: Any) -> None:
        """A ``frame`` message of stream ``content["stream"]``."""
        stream_id = content.get("stream")
        with self._lock:
            callback = self._callbacks.get(stream_id) if isinstance(stream_id, int) else None
            queue = self._queues.get(stream_id) if isinstance(stream_id, int) else None
        if callback is None and queue is None:
            return  # ended meanwhile
        try:
            frame = decode_frame(content, buffers)
        except FrameUnavailable as exc:
            log.warning("dropping a malformed stream frame: %s", exc)
            self._send({"type": "frame_ack", "stream": stream_id})
            return
        if queue is not None:
            # at most the page's window of frames wait here: the ack follows their consumption
            loop, target = queue
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(target.put_nowait, frame)
            return
        assert callback is not None
        try:
            callback[0](frame)
        except Exception:
            log.exception("an on_frame callback failed")
        finally:
            self._send({"type": "frame_ack", "stream": stream_id})

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._callbacks.clear()
            queues, self._queues = list(self._queues.values()), {}
        for loop, queue in queues:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, None)
