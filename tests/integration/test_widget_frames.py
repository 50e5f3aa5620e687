"""The kernel side of frames from the page (`w.snapshot()`), with the front end's answers fed as the
comm delivers them: on the comm's own thread, in any order, possibly twice or never.

tests/browser/test_frames.py covers the same with a real page, camera and emulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from page_kit import Page

import decart_widget as dw
from decart_widget.widget import (
    FrameTimeout,
    FrameUnavailable,
    NotDisplayed,
    NotStarted,
    WidgetClosed,
)
from decart_widget.widget import _frames as frames_module


@pytest.fixture(scope="module")
def emulator() -> Iterator[dw.Emulator]:
    with dw.Emulator() as emu:
        yield emu


def frame_message(request_id: int, width: int, height: int) -> dict[str, Any]:
    return {"type": "frame", "id": request_id, "which": "output", "width": width, "height": height}


async def answered(page: Page, reply: Any) -> None:
    """Wait (off the loop) until the widget asked, then answer with ``reply(request)``."""
    await asyncio.to_thread(page.wait_any)
    reply(page.sent[-1])


def test_a_snapshot_is_the_page_answer_as_an_rgb_array(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    page = Page(w, monkeypatch)
    pixels = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(3, 4, 3)

    async def run() -> Any:
        reply = asyncio.create_task(
            answered(page, lambda r: page.reply(frame_message(r["id"], 4, 3), [pixels.tobytes()]))
        )
        frame = await w.snapshot(timeout=7)
        await reply
        return frame

    frame = asyncio.run(run())
    assert page.sent == [{"type": "frame_request", "id": 1, "which": "output", "timeout_ms": 7000}]
    assert frame.dtype == np.uint8 and frame.shape == (3, 4, 3)
    assert np.array_equal(frame, pixels)
    frame[0, 0, 0] = 255  # the caller owns a writable copy


@pytest.mark.parametrize(
    ("kind", "error"),
    [("not_started", NotStarted), ("stopped", NotStarted), ("timeout", FrameTimeout)],
)
def test_the_page_refusals_are_typed_errors(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch, kind: str, error: type[Exception]
) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    page = Page(w, monkeypatch)

    async def run() -> None:
        reply = asyncio.create_task(
            answered(
                page,
                lambda r: page.reply(
                    {"type": "frame_error", "id": r["id"], "kind": kind, "message": "why"}
                ),
            )
        )
        try:
            await w.snapshot(which="input")
        finally:
            await reply

    with pytest.raises(error, match="why") as caught:
        asyncio.run(run())
    assert isinstance(caught.value, FrameUnavailable) and isinstance(caught.value, dw.DecartError)
    assert page.sent[0]["which"] == "input"


def test_the_first_answer_wins_and_late_or_unknown_ones_are_dropped(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    page = Page(w, monkeypatch)

    def two_pages(request: dict[str, Any]) -> None:
        page.reply(frame_message(99, 1, 1), [b"\x00\x00\x00"])  # no such request
        page.reply(frame_message(request["id"], 1, 1), [b"\x01\x02\x03"])
        page.reply(frame_message(request["id"], 1, 1), [b"\x09\x09\x09"])  # a second page

    async def run() -> Any:
        reply = asyncio.create_task(answered(page, two_pages))
        frame = await w.snapshot()
        await reply
        return frame

    assert asyncio.run(run()).tolist() == [[[1, 2, 3]]]


def test_a_frame_of_the_wrong_size_is_refused_not_reshaped(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    page = Page(w, monkeypatch)

    async def run() -> None:
        reply = asyncio.create_task(
            answered(page, lambda r: page.reply(frame_message(r["id"], 2, 2), [b"\x00" * 11]))
        )
        try:
            await w.snapshot()
        finally:
            await reply

    with pytest.raises(FrameUnavailable, match="11 bytes for a 2 x 2"):
        asyncio.run(run())


def test_no_page_answering_is_not_displayed_after_the_grace(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frames_module, "ANSWER_GRACE", 0.05)
    w = dw.RealtimeWidget(backend=emulator)
    Page(w, monkeypatch)
    with pytest.raises(NotDisplayed, match="no page showing the widget answered"):
        asyncio.run(w.snapshot(timeout=0.05))


def test_snapshot_before_display_and_after_close(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    with pytest.raises(NotDisplayed, match="display the widget first"):
        asyncio.run(w.snapshot())
    w.close()
    with pytest.raises(WidgetClosed):
        asyncio.run(w.snapshot())


def test_closing_the_widget_fails_a_waiting_snapshot(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    page = Page(w, monkeypatch)

    async def run() -> None:
        closing = asyncio.create_task(answered(page, lambda _request: w.close()))
        try:
            await w.snapshot()
        finally:
            await closing

    with pytest.raises(WidgetClosed, match="closed while waiting"):
        asyncio.run(run())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"which": "both"}, "which must be"),
        ({"timeout": 0}, "timeout must be"),
        ({"timeout": True}, "timeout must be"),
        ({"timeout": 601}, "timeout must be"),
    ],
)
def test_arguments_are_checked(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], message: str
) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    Page(w, monkeypatch)
    with pytest.raises(dw.InvalidInput, match=message):
        asyncio.run(w.snapshot(**kwargs))


# ---- frame streams -----------------------------------------------------------------------------


def stream_frame(stream_id: int, value: int) -> tuple[dict[str, Any], list[bytes]]:
    header = {"type": "frame", "stream": stream_id, "which": "output", "width": 2, "height": 1}
    return header, [bytes([value]) * 6]


def test_on_frame_calls_back_acks_each_frame_and_stops_when_removed(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    page = Page(w, monkeypatch)
    seen: list[Any] = []

    @w.on_frame
    def keep(frame: Any) -> None:
        seen.append(frame)

    assert page.sent == [{"type": "frame_stream", "id": 1, "which": "output", "fps": 2.0}]
    page.reply(*stream_frame(1, 7))
    assert len(seen) == 1 and seen[0].shape == (1, 2, 3) and int(seen[0].max()) == 7
    assert page.sent[-1] == {"type": "frame_ack", "stream": 1}
    w.on_frame(keep, remove=True)
    assert page.sent[-1] == {"type": "frame_stream", "id": 1, "fps": 0}
    page.reply(*stream_frame(1, 8))  # already on its way: dropped
    assert len(seen) == 1


def test_a_failing_callback_is_logged_and_its_frame_still_acked(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    page = Page(w, monkeypatch)

    def broken(frame: Any) -> None:
        raise RuntimeError("bad callback")

    w.on_frame(broken, fps=30, which="input")
    assert page.sent[-1] == {"type": "frame_stream", "id": 1, "which": "input", "fps": 30.0}
    page.reply(*stream_frame(1, 1))
    assert page.sent[-1] == {"type": "frame_ack", "stream": 1}
    assert "an on_frame callback failed" in caplog.text


def test_the_async_iterator_acks_as_it_consumes_and_ends_the_stream_on_exit(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    page = Page(w, monkeypatch)

    async def run() -> list[int]:
        values: list[int] = []
        iterator = w.frames(fps=5)
        first = asyncio.ensure_future(iterator.__anext__())
        await asyncio.to_thread(page.wait_any)
        assert page.sent == [{"type": "frame_stream", "id": 1, "which": "output", "fps": 5.0}]
        await asyncio.to_thread(page.reply, *stream_frame(1, 3))
        await asyncio.to_thread(page.reply, *stream_frame(1, 4))
        acks = [m for m in page.sent if m["type"] == "frame_ack"]
        # the waiting loop took the first frame; the second waits unacknowledged, so the page
        # (its window full) sends no more until the loop takes it
        assert len(acks) == 1
        values.append(int((await first).max()))
        values.append(int((await iterator.__anext__()).max()))
        await iterator.aclose()  # type: ignore[attr-defined]
        return values

    assert asyncio.run(run()) == [3, 4]
    kinds = [m["type"] for m in page.sent]
    assert kinds.count("frame_ack") == 2
    assert page.sent[-1] == {"type": "frame_stream", "id": 1, "fps": 0}


def test_closing_the_widget_ends_an_iterator(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    page = Page(w, monkeypatch)

    async def run() -> list[Any]:
        closing = asyncio.create_task(answered(page, lambda _request: w.close()))
        frames = [frame async for frame in w.frames()]
        await closing
        return frames

    assert asyncio.run(run()) == []


@pytest.mark.parametrize("fps", [0, -1, 31, True, "2"])
def test_stream_rates_are_checked(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch, fps: Any
) -> None:
    w = dw.RealtimeWidget(backend=emulator)
    Page(w, monkeypatch)
    with pytest.raises(dw.InvalidInput, match="fps must be"):
        w.on_frame(lambda frame: None, fps=fps)
    with pytest.raises(dw.InvalidInput, match="fps must be"):
        w.frames(fps=fps)
