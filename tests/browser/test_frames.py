"""Frames from the widget to Python (`await w.snapshot()`, `w.on_frame`, `w.frames()`), in real
JupyterLab with Chromium's fake camera and the test emulator (direct signaling).

The notebook's cells take the snapshots with top-level ``await`` (the comm answers arrive while the
cell runs) and print what they saw as JSON lines; the test compares them with the page's own
<video> elements.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from browser_kit import wait_for
from jupyter_servers import JupyterPage, JupyterServer, write_notebook

import decart_widget as dw

SETUP = """\
import asyncio, json
import numpy as np
import decart_widget as dw
from decart_widget.widget import FrameUnavailable

def grid(frame, w=48, h=27):
    rows = np.linspace(0, frame.shape[0] - 1, h).astype(int)
    cols = np.linspace(0, frame.shape[1] - 1, w).astype(int)
    return frame[rows][:, cols].astype(float)

def report(tag, **values):
    print(tag, json.dumps(values))

async def failure(**kwargs):
    try:
        frame = await w.snapshot(**kwargs)
    except FrameUnavailable as exc:
        return type(exc).__name__
    return f"a frame {frame.shape}"

w = dw.RealtimeWidget(prompt="invert")
w"""

BEFORE_START = 'report("BEFORE", error=await failure(timeout=2))'

START_AND_SNAPSHOT = """\
w.start()
out = await w.snapshot(timeout=60)
inp = await w.snapshot(which="input", timeout=10)
a, b = grid(inp), grid(out)
report("INVERT", out=out.shape, inp=inp.shape, dtype=str(out.dtype),
       corr=float(np.corrcoef(a.ravel(), b.ravel())[0, 1]),
       mirrored=float(np.abs(b.reshape(-1, 3).mean(0) - (255 - a.reshape(-1, 3).mean(0))).max()),
       in_colour=float((a.max(2) - a.min(2)).mean()))"""

NOIR = """\
w.prompt = "noir"
loop = asyncio.get_running_loop()
deadline = loop.time() + 20
while True:  # until the output is a grey picture (the prompt's ack and the next frames)
    out = grid(await w.snapshot(timeout=10))
    colour = float((out.max(2) - out.min(2)).mean())
    if (colour < 12 and out.mean() > 20) or loop.time() > deadline:
        break
    await asyncio.sleep(0.2)
report("NOIR", colour=colour, bright=float(out.mean()))"""

STREAM = """\
got = []
def keep(frame):
    got.append(frame.shape)
w.on_frame(keep, fps=10)
deadline = loop.time() + 30
while len(got) < 5 and loop.time() < deadline:
    await asyncio.sleep(0.05)
w.on_frame(keep, remove=True)
delivered = len(got)
await asyncio.sleep(1.5)  # ten intervals: nothing may arrive after the removal
looped = 0
async for frame in w.frames(fps=5, which="input"):
    looped += 1
    if looped == 3:
        break
report("STREAM", delivered=delivered, after=len(got) - delivered, shapes=sorted(set(got)),
       looped=looped, input_shape=frame.shape)"""

STOP_AND_CLOSE = """\
w.stop()
stopped = await failure(timeout=5)
w.close()
report("AFTER", stopped=stopped, closed=await failure(timeout=5))"""


@pytest.fixture(scope="module")
def jupyter(emulator: dw.Emulator) -> Iterator[JupyterServer]:
    env = {
        "DECART_API_KEY": emulator.api_key,
        "DECART_API_URL": emulator.api_url,
        "DECART_REALTIME_URL": emulator.realtime_url,
    }
    with JupyterServer("lab", env=env) as server:
        yield server


def printed(ui: JupyterPage, index: int, tag: str) -> dict[str, Any] | None:
    for line in ui.output_text(index).splitlines():
        if line.startswith(tag + " "):
            return dict(json.loads(line[len(tag) + 1 :]))
    return None


def run(ui: JupyterPage, index: int, tag: str, timeout: float) -> dict[str, Any]:
    ui.run_cell(index)
    return dict(
        wait_for(
            lambda: printed(ui, index, tag),
            timeout,
            f"cell {index} to print {tag}; it shows: {ui.output_text(index)!r}",
            every=0.2,
        )
    )


def video_size(page: Any, pane: str) -> tuple[int, int]:
    size = page.evaluate(
        "(pane) => { const v = document.querySelector(`.decart-widget .dw-${pane} video`);"
        " return v ? [v.videoHeight, v.videoWidth] : null; }",
        pane,
    )
    assert size, f"no {pane} video in the view"
    return int(size[0]), int(size[1])


def test_snapshots_streams_and_errors(jupyter: JupyterServer, page: Any) -> None:
    write_notebook(
        jupyter.root_dir / "frames.ipynb",
        [SETUP, BEFORE_START, START_AND_SNAPSHOT, NOIR, STREAM, STOP_AND_CLOSE],
    )
    ui = JupyterPage(page, jupyter)
    ui.open("frames.ipynb")
    ui.run_cell(0)
    page.locator(".decart-widget").first.wait_for(timeout=30_000)

    assert run(ui, 1, "BEFORE", 30) == {"error": "NotStarted"}

    # start and snapshot in one cell: the snapshot waits for the first transformed frame
    seen = run(ui, 2, "INVERT", 90)
    assert seen["dtype"] == "uint8"
    out_h, out_w = video_size(page, "output")
    in_h, in_w = video_size(page, "input")
    assert seen["out"] == [out_h, out_w, 3], (seen, out_w, out_h)
    assert seen["inp"] == [in_h, in_w, 3], (seen, in_w, in_h)
    # the emulator's `invert`: the output is the input's negative
    assert seen["in_colour"] > 20, seen  # the fake camera's picture is colourful
    assert seen["corr"] < -0.6 and seen["mirrored"] < 40, seen

    noir = run(ui, 3, "NOIR", 60)
    assert noir["colour"] < 12 and noir["bright"] > 20, noir

    stream = run(ui, 4, "STREAM", 60)
    assert stream["delivered"] >= 5 and stream["after"] == 0, stream
    assert stream["shapes"] == [[out_h, out_w, 3]], stream
    assert stream["looped"] == 3 and stream["input_shape"] == [in_h, in_w, 3], stream

    assert run(ui, 5, "AFTER", 30) == {"stopped": "NotStarted", "closed": "WidgetClosed"}


def test_on_frame_before_any_snapshot_delivers(jupyter: JupyterServer, page: Any) -> None:
    """A stream is the first thing the page is asked for (it loads the frame capture itself)."""
    write_notebook(
        jupyter.root_dir / "stream_first.ipynb",
        [
            SETUP,
            "got = []\n"
            "w.on_frame(lambda frame: got.append(frame.shape), fps=5)\n"
            "w.start()\n"
            "loop = asyncio.get_running_loop()\n"
            "deadline = loop.time() + 60\n"
            "while len(got) < 3 and loop.time() < deadline:\n"
            "    await asyncio.sleep(0.05)\n"
            'report("FIRST", count=len(got), shapes=sorted(set(got)))\n'
            "w.close()",
        ],
    )
    ui = JupyterPage(page, jupyter)
    ui.open("stream_first.ipynb")
    ui.run_cell(0)
    page.locator(".decart-widget").first.wait_for(timeout=30_000)
    seen = run(ui, 1, "FIRST", 90)
    assert seen["count"] >= 3, seen
    assert len(seen["shapes"]) == 1 and seen["shapes"][0][2] == 3, seen
