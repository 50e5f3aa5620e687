"""The kernel's side of ``await w.record()`` and ``w.start_recording()``: the file the page streams.

See docs/widget.md, "Recording". The page records (js/src/recorder.ts: a canvas at the asked rate
and the browser's MediaRecorder) and sends the file as it is made, one comm message per chunk
(about a second of video each, far under the ~10 MB a Jupyter message may carry); this side
writes each chunk to the file as it arrives, so a recording's length is bounded by ``max_bytes``,
never by memory. Messages: ``record_start``/``record_stop`` to the page; ``record_started``,
``record_chunk``, ``record_end`` and ``record_error`` back (js/src/recorder.ts documents them).
Every page showing the widget answers a start; the first answer wins and the other pages'
recordings are stopped.

Page messages arrive on whichever thread runs the comm; waits use thread-safe futures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .._recording import (
    AlreadyRecording,
    NotRecording,
    RecordingError,
    RecordingTooLarge,
    RecordWhich,
    size_words,
)
from ._frames import FrameTimeout, NotDisplayed, NotStarted, ViewHidden, WidgetClosed

log = logging.getLogger("decart_widget.widget.recording")

#: What the page's MediaRecorder is asked for, by file suffix (the first one it supports).
MIMES = {
    ".webm": ["video/webm;codecs=vp8", "video/webm;codecs=vp9", "video/webm"],
    ".mkv": ["video/x-matroska;codecs=avc1", "video/x-matroska"],
    ".mp4": ["video/mp4;codecs=avc1", "video/mp4"],
}
#: How much video each chunk holds (MediaRecorder's timeslice), in milliseconds.
TIMESLICE_MS = 1000
BITS_PER_SECOND = 2_500_000
#: A page stops at ``max_bytes`` and sends its last chunk; past this much more the kernel stops
#: writing (a page that did not stop).
OVERSHOOT_BYTES = 4 * 1024 * 1024
#: How long past a recording's end the kernel waits for the page's last chunk.
END_GRACE = 15.0
#: How long past its start timeout the kernel waits for a page to answer at all.
ANSWER_GRACE = 5.0

_REFUSALS: dict[str, Callable[[str], Exception]] = {
    "not_started": NotStarted,
    "hidden": ViewHidden,
    "busy": AlreadyRecording,
    "timeout": FrameTimeout,
}

Outcome = Path | BaseException


class Take:
    """One recording: the page that makes it, the file it goes to, how it ended."""

    def __init__(
        self,
        take_id: int,
        path: Path,
        which: RecordWhich,
        fps: float,
        seconds: float | None,
        max_bytes: int | None,
    ) -> None:
        self.id = take_id
        self.fps = fps
        self.path = path
        self.which = which
        self.seconds = seconds
        self.max_bytes = max_bytes
        self.page: str | None = None
        self.file: IO[bytes] | None = None
        self.chunks = 0
        self.bytes = 0
        #: frames the page drew at ``fps`` (its ``record_end`` says), None until it ended
        self.drawn: int | None = None
        self.started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.ended: concurrent.futures.Future[Path] = concurrent.futures.Future()

    @property
    def drawn_seconds(self) -> float | None:
        """How long the page drew frames: an open-ended take's length. A starved CPU makes the
        browser's encoder drop frames (even all of a take's end), so the file's own last frame
        can come well before the take's."""
        return self.drawn / self.fps if self.drawn else None

    def fail(self, error: BaseException) -> None:
        self._close()
        for future in (self.started, self.ended):
            if not future.done():
                future.set_exception(error)

    def finish(self) -> None:
        self._close()
        if not self.started.done():
            self.started.set_result(None)
        if not self.ended.done():
            self.ended.set_result(self.path)

    def _close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class WidgetRecordings:
    """The kernel's side of one widget's recordings (one at a time)."""

    def __init__(
        self, send: Callable[[dict[str, Any]], None], note: Callable[[str | None], None]
    ) -> None:
        self._send = send
        #: shows a recording's state in the view (None: the widget's own note again)
        self._note = note
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._take: Take | None = None
        self._closed = False

    def begin(
        self,
        path: Path,
        which: RecordWhich,
        fps: float,
        seconds: float | None,
        max_bytes: int | None,
        timeout: float,
    ) -> Take:
        """Ask the pages to start recording into ``path``."""
        with self._lock:
            if self._closed:
                raise WidgetClosed("the widget is closed")
            if self._take is not None and not self._take.ended.done():
                raise AlreadyRecording(
                    f"already recording to {self._take.path}: await w.stop_recording() first"
                )
            take = Take(next(self._ids), path, which, fps, seconds, max_bytes)
            self._take = take
        self._send(
            {
                "type": "record_start",
                "id": take.id,
                "which": which,
                "fps": fps,
                "seconds": seconds,
                "mimes": MIMES[path.suffix.lower()],
                "max_bytes": max_bytes,
                "timeslice_ms": TIMESLICE_MS,
                "bitrate": BITS_PER_SECOND,
                "timeout_ms": round(timeout * 1000),
            }
        )
        return take

    async def started(self, take: Take, timeout: float) -> None:
        """Wait until a page started ``take`` (raises why it could not)."""
        try:
            await asyncio.wait_for(asyncio.wrap_future(take.started), timeout + ANSWER_GRACE)
        except asyncio.TimeoutError:
            error = NotDisplayed(
                f"no page showing the widget answered within {timeout + ANSWER_GRACE:g} s: "
                "is its output cell visible in an open notebook?"
            )
            self._send({"type": "record_stop", "id": take.id})
            take.fail(error)
            raise error from None

    async def ended(self, take: Take, wait: float | None) -> Path:
        """The file of ``take`` once the page sent all of it, at a constant rate (raises why it
        stopped early)."""
        try:
            path = await asyncio.wait_for(asyncio.wrap_future(take.ended), wait)
        except RecordingError as exc:
            if exc.path is not None:  # as long as it got
                await self._constant_rate(take, None)
            raise
        except asyncio.TimeoutError:
            error = RecordingError(
                f"the page stopped sending the recording; {take.path} holds the "
                f"{size_words(take.bytes)} that arrived",
                take.path,
            )
            self._send({"type": "record_stop", "id": take.id})
            take.fail(error)
            self._note(f"Recording stopped: {error}")
            raise error from None
        await self._constant_rate(take, take.seconds if take.seconds else take.drawn_seconds)
        return path

    async def _constant_rate(self, take: Take, seconds: float | None) -> None:
        """Re-time the page's file to the asked rate (`decart_widget._video_file.constant_rate`);
        if that fails the page's file stays, as valid as the browser made it."""
        from .._video_file import constant_rate

        try:
            frames = await asyncio.to_thread(constant_rate, take.path, take.fps, seconds)
        except Exception as exc:
            log.warning("could not re-time %s to %g fps: %s", take.path, take.fps, exc)
        else:
            log.info("%s: %d frames at %g fps", take.path, frames, take.fps)

    async def stop(self) -> Path:
        with self._lock:
            take = self._take
        if take is None:
            raise NotRecording("no recording is running (w.start_recording() starts one)")
        if not take.ended.done():
            self._send({"type": "record_stop", "id": take.id})
        try:
            return await self.ended(take, END_GRACE)
        finally:
            self.forget(take)

    def forget(self, take: Take) -> None:
        """``take`` was collected (its file returned or its error raised)."""
        with self._lock:
            if self._take is take:
                self._take = None

    def running(self) -> bool:
        with self._lock:
            return self._take is not None and not self._take.ended.done()

    # ---- page messages ---------------------------------------------------------------------

    def message(self, content: dict[str, Any], buffers: Any) -> None:
        kind = content.get("type")
        with self._lock:
            take = self._take
        if take is None or content.get("id") != take.id:
            log.debug("dropping %s for a recording that is over", kind)
            return
        page = content.get("page")
        if (take.page is not None and page != take.page) or take.ended.done():
            if kind == "record_started":  # another page, or after an answer: not this one's
                self._send({"type": "record_stop", "id": take.id, "page": page})
            return
        if kind == "record_error":
            self._refused(take, content)
        elif kind == "record_started":
            self._begun(take, content, page)
        elif kind == "record_chunk":
            self._chunk(take, content, buffers)
        elif kind == "record_end":
            self._end(take, content)

    def close(self) -> None:
        """The widget closed: a running recording ends, its file closed as it is."""
        with self._lock:
            self._closed = True
            take = self._take
        if take is not None and not take.ended.done():
            take.fail(
                RecordingError(
                    f"the widget was closed during the recording; {take.path} holds what arrived",
                    take.path,
                )
            )

    def _refused(self, take: Take, content: dict[str, Any]) -> None:
        kind = content.get("kind")
        message = content.get("message")
        text = message if isinstance(message, str) and message else "the page refused to record"
        error_type = _REFUSALS.get(kind) if isinstance(kind, str) else None
        self._note(f"Recording failed: {text}")
        take.fail((error_type or RecordingError)(text))

    def _begun(self, take: Take, content: dict[str, Any], page: Any) -> None:
        try:
            take.file = take.path.open("wb")
        except OSError as exc:
            self._send({"type": "record_stop", "id": take.id, "page": page})
            take.fail(RecordingError(f"cannot write {take.path}: {exc}"))
            return
        take.page = page if isinstance(page, str) else ""
        take.started.set_result(None)
        log.info(
            "recording %s (%sx%s, %s) to %s",
            take.which,
            content.get("width"),
            content.get("height"),
            content.get("mime"),
            take.path,
        )
        self._note(f"● Recording the {take.which} to {take.path.name}")

    def _chunk(self, take: Take, content: dict[str, Any], buffers: Any) -> None:
        if take.file is None:
            return
        if content.get("seq") != take.chunks or not buffers:
            self._stop_failed(take, RecordingError(f"a chunk of {take.path} was lost", take.path))
            return
        data = memoryview(buffers[0]).cast("B")
        if take.max_bytes is not None and take.bytes + len(data) > take.max_bytes + OVERSHOOT_BYTES:
            self._stop_failed(take, self._too_large(take))
            return
        try:
            take.file.write(data)
            take.file.flush()
        except OSError as exc:
            self._stop_failed(take, RecordingError(f"writing {take.path} failed: {exc}", take.path))
            return
        take.chunks += 1
        take.bytes += len(data)

    def _end(self, take: Take, content: dict[str, Any]) -> None:
        reason = content.get("reason")
        drawn = content.get("frames")
        if isinstance(drawn, int) and not isinstance(drawn, bool) and drawn > 0:
            take.drawn = drawn
        if content.get("chunks") != take.chunks:
            error: RecordingError | None = RecordingError(
                f"chunks of {take.path} were lost (the page sent {content.get('chunks')}, "
                f"{take.chunks} arrived)",
                take.path,
            )
        elif take.bytes == 0:
            error = RecordingError(
                f"the page recorded nothing ({content.get('message') or reason}); "
                f"{take.path} is empty"
            )
        elif reason == "too_large":
            error = self._too_large(take)
        elif reason == "failed":
            message = content.get("message")
            error = RecordingError(
                f"{message or 'the page failed to record'}; {take.path} holds what was recorded",
                take.path,
            )
        elif reason == "session" and take.seconds is not None:
            error = RecordingError(
                f"the widget stopped during the recording; {take.path} holds what was recorded",
                take.path,
            )
        else:
            error = None
        if error is not None:
            self._note(f"Recording stopped: {error}")
            take.fail(error)
        else:
            self._note(None)
            take.finish()
            log.info(
                "recorded %s: %s, %s frames drawn",
                take.path,
                size_words(take.bytes),
                content.get("frames"),
            )

    def _too_large(self, take: Take) -> RecordingTooLarge:
        return RecordingTooLarge(
            f"the recording reached its size limit ({size_words(take.max_bytes or 0)}) and was "
            f"stopped; {take.path} holds the {size_words(take.bytes)} recorded (pass a larger "
            "max_bytes, or max_bytes=None)",
            take.path,
        )

    def _stop_failed(self, take: Take, error: RecordingError) -> None:
        self._send({"type": "record_stop", "id": take.id})
        self._note(f"Recording stopped: {error}")
        take.fail(error)
