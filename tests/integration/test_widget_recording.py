"""The kernel side of the widget's recordings (`w.record()`, `w.start_recording()`), with the page's
messages fed as the comm delivers them: on the comm's own thread, from one page or several.

tests/browser/test_recording.py covers the same with a real page, MediaRecorder and emulator;
here the page's chunks are plain bytes, so the test sees exactly what is written and when.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from page_kit import Page

import decart_widget as dw
from decart_widget.widget import FrameTimeout, NotDisplayed, NotStarted, ViewHidden, WidgetClosed
from decart_widget.widget import _recording as recording_module


@pytest.fixture(scope="module")
def emulator() -> Iterator[dw.Emulator]:
    with dw.Emulator() as emu:
        yield emu


def started(take: int, page: str = "p1") -> dict[str, Any]:
    return {
        "type": "record_started",
        "id": take,
        "page": page,
        "width": 640,
        "height": 360,
        "mime": "video/webm;codecs=vp8",
    }


def chunk(take: int, seq: int, page: str = "p1") -> dict[str, Any]:
    return {"type": "record_chunk", "id": take, "page": page, "seq": seq}


def end(take: int, chunks: int, reason: str = "seconds", page: str = "p1") -> dict[str, Any]:
    return {"type": "record_end", "id": take, "page": page, "reason": reason, "chunks": chunks}


@pytest.fixture
def widget(emulator: dw.Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.chdir(tmp_path)  # the kernel's working directory
    w = dw.RealtimeWidget(backend=emulator)
    yield w
    w.close()


def test_chunks_are_written_as_they_arrive_and_the_first_page_wins(
    widget: dw.RealtimeWidget, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    page = Page(widget, monkeypatch)
    sizes: list[int] = []

    def play() -> None:
        request = page.wait_sent("record_start")
        take = request["id"]
        page.reply(started(take))
        page.reply(started(take, page="p2"))  # a second page showing the widget
        for seq, data in enumerate([b"a" * 1000, b"b" * 2000]):
            page.reply(chunk(take, seq), [data])
            sizes.append((tmp_path / "take.webm").stat().st_size)  # on disk before the end
        page.reply(chunk(take, 0, page="p2"), [b"ignored"])
        page.reply(end(take, 2))

    async def run() -> Path:
        player = asyncio.create_task(asyncio.to_thread(play))
        path = await widget.record(seconds=2, path="take.webm", which="both", fps=25)
        await player
        return path

    path = asyncio.run(run())
    assert path == tmp_path / "take.webm"
    assert sizes == [1000, 3000]
    # not a real video, so it could not be re-timed: the page's bytes stay as they came
    assert path.read_bytes() == b"a" * 1000 + b"b" * 2000
    request = page.of("record_start")[0]
    assert request["which"] == "both" and request["fps"] == 25 and request["seconds"] == 2
    assert request["mimes"][0].startswith("video/webm") and request["timeslice_ms"] <= 1000
    assert {"type": "record_stop", "id": request["id"], "page": "p2"} in page.sent
    assert "Recording" not in widget.note


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("not_started", NotStarted),
        ("hidden", ViewHidden),
        ("busy", dw.AlreadyRecording),
        ("timeout", FrameTimeout),
        ("unsupported", dw.RecordingError),
    ],
)
def test_the_page_refusals_are_typed_and_shown(
    widget: dw.RealtimeWidget, monkeypatch: pytest.MonkeyPatch, kind: str, error: type[Exception]
) -> None:
    page = Page(widget, monkeypatch)

    def refuse() -> None:
        take = page.wait_sent("record_start")["id"]
        page.reply(
            {"type": "record_error", "id": take, "page": "p1", "kind": kind, "message": "why"}
        )

    async def run() -> None:
        player = asyncio.create_task(asyncio.to_thread(refuse))
        try:
            await widget.record(seconds=1, path="refused.webm")
        finally:
            await player

    with pytest.raises(error, match="why"):
        asyncio.run(run())
    assert "Recording failed: why" in widget.note


def test_a_lost_chunk_and_the_size_limit_stop_the_recording(
    widget: dw.RealtimeWidget, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    page = Page(widget, monkeypatch)

    def lose_one() -> None:
        take = page.wait_sent("record_start")["id"]
        page.reply(started(take))
        page.reply(chunk(take, 1), [b"x"])  # seq 0 never came

    async def run(play: Any, **kwargs: Any) -> Path:
        player = asyncio.create_task(asyncio.to_thread(play))
        try:
            return await widget.record(**kwargs)
        finally:
            await player

    with pytest.raises(dw.RecordingError, match="lost"):
        asyncio.run(run(lose_one, seconds=5, path="lost.webm"))
    assert page.of("record_stop")[-1] == {"type": "record_stop", "id": 1}

    def too_large() -> None:
        take = page.wait_sent("record_start", 2)["id"]
        page.reply(started(take))
        page.reply(chunk(take, 0), [b"y" * 2048])
        page.reply(end(take, 1, reason="too_large"))

    with pytest.raises(dw.RecordingTooLarge, match="size limit") as caught:
        asyncio.run(run(too_large, seconds=5, path="big.webm", max_bytes=2000))
    assert caught.value.path == tmp_path / "big.webm"
    assert (tmp_path / "big.webm").read_bytes() == b"y" * 2048
    assert "Recording stopped" in widget.note

    # a page that does not stop at the limit is cut off by the kernel
    monkeypatch.setattr(recording_module, "OVERSHOOT_BYTES", 1000)

    def runaway() -> None:
        take = page.wait_sent("record_start", 3)["id"]
        page.reply(started(take))
        for seq in range(3):
            page.reply(chunk(take, seq), [b"z" * 1500])

    with pytest.raises(dw.RecordingTooLarge):
        asyncio.run(run(runaway, seconds=5, path="runaway.webm", max_bytes=1024))
    assert (tmp_path / "runaway.webm").stat().st_size == 1500


def test_open_ended_takes_and_misuse(
    widget: dw.RealtimeWidget, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    page = Page(widget, monkeypatch)
    with pytest.raises(dw.NotRecording):
        asyncio.run(widget.stop_recording())
    widget.start_recording("open.mp4", which="input")
    take = page.wait_sent("record_start")["id"]
    assert page.of("record_start")[0]["mimes"][0].startswith("video/mp4")
    with pytest.raises(dw.AlreadyRecording):
        widget.start_recording("second.webm")
    page.reply(started(take))
    assert "Recording the input to open.mp4" in widget.note
    page.reply(chunk(take, 0), [b"m" * 10])

    def finish() -> None:
        page.wait_sent("record_stop")
        page.reply(end(take, 1, reason="stopped"))

    async def stop() -> Path:
        player = asyncio.create_task(asyncio.to_thread(finish))
        path = await widget.stop_recording()
        await player
        return path

    assert asyncio.run(stop()) == tmp_path / "open.mp4"
    with pytest.raises(dw.NotRecording):
        asyncio.run(widget.stop_recording())
    for bad in ({"path": "x.avi"}, {"which": "sideways"}, {"seconds": 0}, {"fps": 0}):
        with pytest.raises(dw.InvalidInput):
            asyncio.run(widget.record(**{"seconds": 1, "path": "x.webm", **bad}))


def test_an_open_ended_take_lasts_as_long_as_the_page_drew_it(
    widget: dw.RealtimeWidget, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A starved CPU makes the browser's encoder drop frames, even all of a take's end: the page
    drew 45 frames at 30 fps (1.5 s), its file holds 6 from the first 0.2 s; the kernel's file
    lasts the 1.5 s, the last picture kept standing for the rest."""
    import av
    import numpy as np

    made = tmp_path / "made.webm"
    with av.open(str(made), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(6):
            picture = np.full((48, 64, 3), 40 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    page = Page(widget, monkeypatch)
    widget.start_recording("open.webm", fps=30)
    take = page.wait_sent("record_start")["id"]
    page.reply(started(take))
    page.reply(chunk(take, 0), [made.read_bytes()])

    def finish() -> None:
        page.wait_sent("record_stop")
        page.reply({**end(take, 1, reason="stopped"), "frames": 45})

    async def stop() -> Path:
        player = asyncio.create_task(asyncio.to_thread(finish))
        path = await widget.stop_recording()
        await player
        return path

    path = asyncio.run(stop())
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 45, len(frames)
    assert abs(float(frames[-1].mean()) - 200) < 10  # the last picture kept: 40 * 5


def test_nothing_to_record_without_a_page_or_after_close(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(recording_module, "ANSWER_GRACE", 0.2)
    hidden = dw.RealtimeWidget(backend=emulator)
    with pytest.raises(NotDisplayed, match="display the widget"):
        asyncio.run(hidden.record(seconds=1, path="x.webm"))
    page = Page(hidden, monkeypatch)  # displayed, but no page answers
    with pytest.raises(NotDisplayed, match="answered"):
        asyncio.run(hidden.record(seconds=1, path="x.webm", timeout=0.3))
    assert page.of("record_stop")  # the request is withdrawn
    hidden.start_recording("cut.webm")
    take = page.of("record_start")[-1]["id"]
    page.reply(started(take))
    hidden.close()
    with pytest.raises(dw.RecordingError, match="closed"):
        asyncio.run(hidden.stop_recording())
    with pytest.raises(WidgetClosed):
        asyncio.run(hidden.record(seconds=1, path="x.webm"))
