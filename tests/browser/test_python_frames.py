"""Frames from Python into the page, in real JupyterLab with Chromium and the test emulator:
``RealtimeWidget(source=frames)`` publishes numpy frames as its camera (they come back
transformed: checked with `w.snapshot()`; in each signaling mode), and ``session.show()`` shows
a headless `RealtimeSession`'s output live with no camera at all (checked on the page's canvas).

The source picture is two known colours side by side, so the emulator's ``invert`` is a known
pair of colours, robust to the codec's small shifts.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from browser_kit import wait_for
from jupyter_servers import JupyterPage, JupyterServer, kernels_use, run, write_notebook

import decart_widget as dw
from decart_widget.proxy import ProxyServer

#: each test starts a session (and the first, JupyterLab and Chromium) on a loaded machine
pytestmark = pytest.mark.timeout(240)

LEFT, RIGHT = (200, 40, 40), (30, 60, 220)
INVERTED_LEFT = [255 - c for c in LEFT]
INVERTED_RIGHT = [255 - c for c in RIGHT]

SETUP = f"""\
import asyncio, itertools, json
import numpy as np
import decart_widget as dw

loop = asyncio.get_running_loop()

def report(tag, **values):
    print(tag, json.dumps(values))

def pattern(width=1088, height=624):
    frame = np.empty((height, width, 3), np.uint8)
    frame[:, : width // 2] = {LEFT}
    frame[:, width // 2 :] = {RIGHT}
    return frame

def halves(frame):
    # the mean colours of the middle of each half (away from the edge the codec blurs)
    h, w = frame.shape[:2]
    band = frame[h // 4 : 3 * h // 4].astype(float)
    return (band[:, w // 8 : 3 * w // 8].reshape(-1, 3).mean(0).round().tolist(),
            band[:, 5 * w // 8 : 7 * w // 8].reshape(-1, 3).mean(0).round().tolist())

def near(seen, expected):
    return max(abs(a - b) for a, b in zip(seen, expected)) < 40
"""

WIDGET = """\
pulled = []
def frames():
    for index in itertools.count():
        pulled.append(index)
        yield pattern()

w = dw.RealtimeWidget(prompt="invert", source=frames(), source_fps=10, {kwargs})
w"""

#: start, then snapshots until the output is the Python frames inverted
TRANSFORMED = f"""\
w.start()
deadline = loop.time() + 90
while True:
    out = await w.snapshot(timeout=max(1.0, deadline - loop.time()))
    inp = await w.snapshot(which="input", timeout=10)
    left, right = halves(out)
    if (near(left, {INVERTED_LEFT}) and near(right, {INVERTED_RIGHT})) or loop.time() > deadline:
        break
    await asyncio.sleep(0.2)
in_left, in_right = halves(inp)
report("TRANSFORMED", source=w.source, out=out.shape, inp=inp.shape, left=left, right=right,
       in_left=in_left, in_right=in_right, most_in_flight=w._feed.most_in_flight,
       ahead=len(pulled) - w._feed.sent)
w.close()"""

SESSION = """\
session = await dw.RealtimeSession.connect(
    prompt="invert", source=itertools.repeat(pattern()), transport="webrtc", timeout=60)
view = session.show(fps=10)
view"""

SESSION_END = """\
sent = view.frames_sent
await session.disconnect()
view.close()
report("SESSION", sent=sent)"""

#: the mean colours of the middle of each half of the session view's canvas
CANVAS_HALVES = """
() => {
  const canvas = document.querySelector('.dw-session-view');
  if (!canvas || !canvas.width) return null;
  const ctx = canvas.getContext('2d');
  const {width: w, height: h} = canvas;
  const mean = (x0, x1) => {
    const data = ctx.getImageData(x0, h / 4, x1 - x0, h / 2).data;
    const sum = [0, 0, 0];
    for (let i = 0; i < data.length; i += 4) {
      sum[0] += data[i]; sum[1] += data[i + 1]; sum[2] += data[i + 2];
    }
    return sum.map((s) => Math.round(s / (data.length / 4)));
  };
  return {size: [w, h], left: mean(w / 8, 3 * w / 8), right: mean(5 * w / 8, 7 * w / 8)};
}
"""


@pytest.fixture(scope="module")
def jupyter(emulator: dw.Emulator) -> Iterator[JupyterServer]:
    env = kernels_use(emulator)
    with JupyterServer("lab", env=env) as server:
        yield server


@pytest.fixture(autouse=True)
def shut_kernels(jupyter: JupyterServer) -> Iterator[None]:
    """Each test's kernel (its sessions and pumps) ends with it, not all at the server's stop."""
    yield
    base = f"{jupyter.base_url}/api/sessions"
    with urllib.request.urlopen(f"{base}?token={jupyter.token}", timeout=10) as response:
        sessions = json.load(response)
    for session in sessions:
        url = f"{base}/{session['id']}?token={jupyter.token}"
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30).close()


def near(seen: list[float], expected: list[int]) -> bool:
    return max(abs(a - b) for a, b in zip(seen, expected, strict=True)) < 40


#: each signaling mode once, each transport at least once: the page's input is the same canvas
MODES = [("direct", "webrtc"), ("kernel", "livekit"), ("proxy", "livekit")]


@pytest.fixture
def proxy(emulator: dw.Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    ledger = tmp_path_factory.mktemp("ledger") / "usage.sqlite"
    server = ProxyServer(upstream=emulator, secret="pyframes-test-secret", ledger=str(ledger))
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize(("signaling", "transport"), MODES, ids=["-".join(m) for m in MODES])
def test_python_frames_come_back_transformed(
    jupyter: JupyterServer,
    page: Any,
    request: pytest.FixtureRequest,
    signaling: str,
    transport: str,
) -> None:
    name = f"python_source_{signaling}_{transport}.ipynb"
    kwargs = f'signaling="{signaling}", transport="{transport}"'
    if signaling == "proxy":
        proxy: ProxyServer = request.getfixturevalue("proxy")
        kwargs += f", proxy_url={proxy.realtime_url!r}, proxy_token={proxy.issue_token('py')!r}"
    widget = WIDGET.replace("{kwargs}", kwargs)
    write_notebook(jupyter.root_dir / name, [SETUP, widget, TRANSFORMED])
    ui = JupyterPage(page, jupyter)
    ui.open(name)
    ui.run_cell(0)
    ui.run_cell(1)
    page.locator(".decart-widget").first.wait_for(timeout=30_000)

    seen = run(ui, 2, "TRANSFORMED", 150)
    assert seen["source"] == "python"
    # the page publishes the frames at the model's size (lucy-2.1: 1088 x 624); the output comes
    # back at that size or, when WebRTC's encoder adapts to a loaded machine, scaled down
    assert seen["inp"] == [624, 1088, 3], seen
    out_h, out_w, _ = seen["out"]
    assert out_w <= 1088 and abs(out_w / out_h - 1088 / 624) < 0.05, seen
    assert near(seen["in_left"], list(LEFT)) and near(seen["in_right"], list(RIGHT)), seen
    assert near(seen["left"], INVERTED_LEFT) and near(seen["right"], INVERTED_RIGHT), seen
    # back-pressure: at most two frames unacknowledged, and the source pulled only to send
    assert 1 <= seen["most_in_flight"] <= 2 and seen["ahead"] <= 1, seen


def test_a_headless_session_shows_live_in_the_notebook(jupyter: JupyterServer, page: Any) -> None:
    write_notebook(jupyter.root_dir / "session_view.ipynb", [SETUP, SESSION, SESSION_END])
    console: list[str] = []
    page.on(
        "console",
        lambda message: console.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: console.append(str(error)))
    ui = JupyterPage(page, jupyter)
    ui.open("session_view.ipynb")
    ui.run_cell(0)
    ui.run_cell(1)
    page.locator(".dw-session-view").first.wait_for(timeout=90_000)
    last: list[Any] = []

    def shows_the_inverted_pattern() -> bool:
        halves = page.evaluate(CANVAS_HALVES)
        last[:] = [halves]
        return bool(
            halves and near(halves["left"], INVERTED_LEFT) and near(halves["right"], INVERTED_RIGHT)
        )

    try:
        wait_for(shows_the_inverted_pattern, 30, "the session's inverted output", every=0.2)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; the canvas: {last}; the cell shows: {ui.output_text(1)!r}; "
            f"the page logged: {console}"
        ) from None
    # the picture is at the session's frame size (the emulator answers at the input's)
    assert last[0]["size"] == [1088, 624], last
    caption = page.locator(".dw-session-view-caption").first.inner_text()
    assert caption == "1088 × 624", caption
    assert run(ui, 2, "SESSION", 60)["sent"] >= 2
