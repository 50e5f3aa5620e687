"""Frames from the widget to Python (`await w.snapshot()`, `w.on_frame`, `w.frames()`), in real
JupyterLab with Chromium's fake camera and the test emulator.

The notebook's cells take the snapshots with top-level ``await`` (the comm answers arrive while the
cell runs) and print what they saw as JSON lines; the test compares them with the page's own
<video> elements. The errors and the iterator run once (direct signaling, Gen-A); the pixels and
the stream's rate run in every signaling mode and on both media transports, chosen so each mode
meets each transport at least once without the full product (CI time).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from browser_kit import wait_for
from jupyter_servers import JupyterPage, JupyterServer, kernels_use, run, write_notebook

import decart_widget as dw
from decart_widget.proxy import ProxyServer

SETUP = """\
import asyncio, json
import numpy as np
import decart_widget as dw
from decart_widget.widget import FrameUnavailable, ViewHidden

loop = asyncio.get_running_loop()

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

async def inverted(seconds):
    # snapshots until the output is the input's negative: a LiveKit room's first frames can be a
    # placeholder, and the prompt's effect follows its ack by a frame or two
    deadline = loop.time() + seconds
    while True:
        out = await w.snapshot(timeout=max(1.0, deadline - loop.time()))
        inp = await w.snapshot(which="input", timeout=10)
        a, b = grid(inp), grid(out)
        seen = dict(out=out.shape, inp=inp.shape, dtype=str(out.dtype),
                    corr=float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) if b.std() > 0 else 0.0,
                    mirrored=float(np.abs(b.reshape(-1, 3).mean(0)
                                          - (255 - a.reshape(-1, 3).mean(0))).max()),
                    in_colour=float((a.max(2) - a.min(2)).mean()))
        if (seen["corr"] < -0.6 and seen["mirrored"] < 40) or loop.time() > deadline:
            return seen
        await asyncio.sleep(0.2)

async def grey(seconds):
    # snapshots until the output is a grey picture (the prompt's ack and the next frames)
    deadline = loop.time() + seconds
    while True:
        out = grid(await w.snapshot(timeout=10))
        colour = float((out.max(2) - out.min(2)).mean())
        if (colour < 12 and out.mean() > 20) or loop.time() > deadline:
            return dict(colour=colour, bright=float(out.mean()))
        await asyncio.sleep(0.2)

w = dw.RealtimeWidget(prompt="invert", {kwargs})
w"""

BEFORE_START = 'report("BEFORE", error=await failure(timeout=2))'

START_AND_SNAPSHOT = """\
w.start()
report("INVERT", **await inverted(60))"""

NOIR = """\
w.prompt = "noir"
report("NOIR", **await grey(20))"""

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

#: on_frame at 5 fps: the frames of a 3 s window after the first, then none after the removal
RATE = """\
times, shapes = [], set()
def keep(frame):
    times.append(loop.time())
    shapes.add(frame.shape)
w.on_frame(keep, fps=5)
deadline = loop.time() + 30
while not times and loop.time() < deadline:
    await asyncio.sleep(0.05)
first = times[0] if times else loop.time()
await asyncio.sleep(3.0)  # the measured window
w.on_frame(keep, remove=True)
window = sum(1 for t in times if first < t <= first + 3.0)
delivered = len(times)
await asyncio.sleep(1.0)  # five intervals: nothing may arrive after the removal
report("RATE", window=window, after=len(times) - delivered, shapes=sorted(shapes))"""

STOP = """\
w.stop()
report("STOPPED", stopped=await failure(timeout=5))"""

#: run after the widget cell's output was cleared: then shown again, it answers again
HIDDEN = """\
hidden = await failure(timeout=5)
display(w)
w.start()
deadline = loop.time() + 60
while True:  # until the new view is in the page (it renders after this message is sent)
    try:
        shown = (await w.snapshot(timeout=60)).shape
        break
    except ViewHidden:
        if loop.time() > deadline:
            raise
        await asyncio.sleep(0.2)
report("HIDDEN", hidden=hidden, shown=shown)"""

CLOSE = """\
w.close()
report("CLOSED", closed=await failure(timeout=5))"""


@pytest.fixture(scope="module")
def jupyter(emulator: dw.Emulator) -> Iterator[JupyterServer]:
    env = kernels_use(emulator)
    with JupyterServer("lab", env=env) as server:
        yield server


def video_size(page: Any, pane: str) -> tuple[int, int]:
    size = page.evaluate(
        "(pane) => { const v = document.querySelector(`.decart-widget .dw-${pane} video`);"
        " return v ? [v.videoHeight, v.videoWidth] : null; }",
        pane,
    )
    assert size, f"no {pane} video in the view"
    return int(size[0]), int(size[1])


def setup(**kwargs: str) -> str:
    """The first cell, making ``w`` with these (Python source) arguments besides the prompt."""
    return SETUP.replace("{kwargs}", ", ".join(f"{k}={v}" for k, v in kwargs.items()))


def clear_output(ui: JupyterPage, index: int) -> None:
    """Edit > Clear Output of code cell ``index``, as a user does: its views leave the page."""
    ui.cells().nth(index).locator(".jp-InputArea-editor").click()
    ui.page.locator(".lm-MenuBar-item", has_text="Edit").first.click()
    ui.page.locator(".lm-Menu-item[data-command='editmenu:clear-current']").click()
    wait_for(
        lambda: ui.page.locator(".decart-widget").count() == 0, 10, "the view to leave the page"
    )


def test_snapshots_streams_and_errors(jupyter: JupyterServer, page: Any) -> None:
    write_notebook(
        jupyter.root_dir / "frames.ipynb",
        [
            setup(transport='"webrtc"'),
            BEFORE_START,
            START_AND_SNAPSHOT,
            NOIR,
            STREAM,
            STOP,
            HIDDEN,
            CLOSE,
        ],
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

    assert run(ui, 5, "STOPPED", 30) == {"stopped": "NotStarted"}

    # the widget cell's output cleared: no view in the page, whatever the session does
    clear_output(ui, 0)
    hidden = run(ui, 6, "HIDDEN", 120)
    assert hidden["hidden"] == "ViewHidden", hidden
    assert hidden["shown"] == [out_h, out_w, 3], hidden  # shown again, it answers again

    assert run(ui, 7, "CLOSED", 30) == {"closed": "WidgetClosed"}


#: (signaling, media transport) besides direct on Gen-A (the test above): each signaling mode meets
#: Gen-B, and Gen-A, once more, through the proxy. The page reads frames from its streams whatever
#: the signaling: kernel signaling on Gen-A (test_kernel_signaling.py) would add ~25 s, no new path
MODES = [("kernel", "livekit"), ("proxy", "webrtc"), ("proxy", "livekit")]


@pytest.fixture
def proxy(emulator: dw.Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    ledger = tmp_path_factory.mktemp("ledger") / "usage.sqlite"
    server = ProxyServer(upstream=emulator, secret="frames-test-secret", ledger=str(ledger)).start()
    yield server
    server.stop()


@pytest.mark.parametrize(("signaling", "transport"), MODES, ids=["-".join(m) for m in MODES])
def test_frames_in_every_mode(
    jupyter: JupyterServer,
    page: Any,
    request: pytest.FixtureRequest,
    signaling: str,
    transport: str,
) -> None:
    """Snapshot pixels, sizes and the stream's rate through each signaling mode and transport."""
    kwargs = {"transport": json.dumps(transport), "signaling": json.dumps(signaling)}
    if signaling == "proxy":
        proxy: ProxyServer = request.getfixturevalue("proxy")
        kwargs["proxy_url"] = json.dumps(proxy.realtime_url)
        kwargs["proxy_token"] = json.dumps(proxy.issue_token("frames"))
    name = f"frames_{signaling}_{transport}.ipynb"
    write_notebook(
        jupyter.root_dir / name, [setup(**kwargs), START_AND_SNAPSHOT, NOIR, RATE, CLOSE]
    )
    ui = JupyterPage(page, jupyter)
    ui.open(name)
    ui.run_cell(0)
    page.locator(".decart-widget").first.wait_for(timeout=30_000)

    seen = run(ui, 1, "INVERT", 90)
    out_h, out_w = video_size(page, "output")
    in_h, in_w = video_size(page, "input")
    assert seen["dtype"] == "uint8"
    assert seen["out"] == [out_h, out_w, 3] and seen["inp"] == [in_h, in_w, 3], seen
    assert seen["in_colour"] > 20, seen
    assert seen["corr"] < -0.6 and seen["mirrored"] < 40, seen

    noir = run(ui, 2, "NOIR", 60)
    assert noir["colour"] < 12 and noir["bright"] > 20, noir

    rate = run(ui, 3, "RATE", 60)
    # 5 fps for 3 s: never more than the rate allows (15 ticks, one at the window's edge, the
    # window of 2), and the stream keeps going; how close to 5 fps it gets is bench/frames.py's
    # figure (a loaded 2-core machine delivered 4 in 3 s)
    assert 2 <= rate["window"] <= 18 and rate["after"] == 0, rate
    assert rate["shapes"] == [[out_h, out_w, 3]], rate

    assert run(ui, 4, "CLOSED", 30) == {"closed": "WidgetClosed"}


def test_on_frame_before_any_snapshot_delivers(jupyter: JupyterServer, page: Any) -> None:
    """A stream is the first thing the page is asked for (it loads the frame capture itself)."""
    write_notebook(
        jupyter.root_dir / "stream_first.ipynb",
        [
            setup(transport='"webrtc"'),
            "got = []\n"
            "w.on_frame(lambda frame: got.append(frame.shape), fps=5)\n"
            "w.start()\n"
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
