"""Prompt-to-ack round trip: signaling "kernel" versus "direct", in the same run, on loopback.

Run ``python bench/signaling.py [--prompts 40] [--settle-ms 150] [--focus-in-window]
[--compare-nagle] [--chromium /usr/bin/chromium]``. Not part of the test run; it prints figures
next to the goal and never fails on them. Figures depend on the machine's load more than on
anything else: the load average is printed before and after.

How it measures:

* One local emulator (this process), a real JupyterLab 4 server whose kernel uses it
  (``DECART_API_KEY`` / ``DECART_API_URL`` / ``DECART_REALTIME_URL``), Debian's Chromium through
  Playwright. One notebook shows two widgets on the synthetic source: ``signaling="direct"`` and
  ``signaling="kernel"``; both reach ``generating`` before measuring. Their video is small
  (320x184, 15 fps): on a 2-core machine two full-size sessions saturate the CPU and every figure
  (direct mode's too) then measures the contention, not the signaling.
* In the page: every WebSocket is wrapped so that each incoming message holding a
  ``prompt_ack`` for a bench prompt is timestamped (``performance.now()``). For direct mode that is
  the service's own socket; for kernel mode it is JupyterLab's kernel socket carrying the relayed
  ack (binary frames are decoded).
* One sample: a fresh prompt is typed into a widget's prompt box (focus and text, then two
  animation frames, as a person types before pressing Enter), then Enter is pressed (t0, in the
  page), until its ack reaches the page (t1). Direct: page -> service -> page. Kernel: page ->
  Jupyter server -> kernel (one ``set`` custom message) -> relay thread -> service -> relay ->
  kernel -> server -> page. ``--focus-in-window`` focuses and fills the box in the same task as t0
  instead (the first figures' method): the focus change's style and layout work then lands inside
  the timed window (about 15 ms more for direct mode on the development machine).
* Before each sample the bench waits until JupyterLab's kernel socket has been quiet for
  ``--settle-ms`` (150 ms): otherwise a sample inherits the comm traffic of the one before (the
  direct widget's own state reports and acks go to the kernel too), which once made a bare comm
  round trip look like 50 ms. ``--settle-ms 0`` measures back to back.
* The floor, in the same page and order: a bare ``WebSocket`` round trip to a loopback echo server
  in this process, and a bare comm round trip (a trivial anywidget whose kernel side answers a
  custom message from the relay's thread, as the relay answers). A comm round trip minus a
  WebSocket round trip is what any kernel-relayed frame must add; kernel mode's overhead beyond
  that is printed too.
* The server runs with decart_widget's Jupyter server extension, which sets ``TCP_NODELAY`` on
  kernel WebSockets (``decart_widget/server_extension.py``). ``--compare-nagle`` first measures
  the server as Jupyter ships it (extension off: Nagle's algorithm holds a comm reply written right
  after the kernel's ``busy`` status until the browser's delayed ACK, up to 40 ms), then with it.
* Also printed, without a browser or Jupyter: the relay alone (a websockets client straight to the
  emulator versus the same frames through a kernel-mode widget's relay), to split the overhead
  between the relay and Jupyter's comm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for path in (ROOT, ROOT / "tests" / "browser"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _common import CHROMIUM_ARGS, load_average  # noqa: E402

import decart_widget as dw  # noqa: E402

GOAL_ADDED_P50_MS = 5.0

#: the server as Jupyter ships it: decart_widget's server extension (TCP_NODELAY) switched off
NAGLE_ON = "--ServerApp.jpserver_extensions=decart_widget=False"

WRAP_WEBSOCKETS = r"""
(() => {
  window.__acks = {};
  window.__acksWall = {};
  window.__pongs = {};
  window.__kernelQuietSince = performance.now();
  const Native = window.WebSocket;
  const decoder = new TextDecoder();
  const name = String.raw`"prompt":\s*"(bench-[a-z]+-[0-9]+)"`;
  const pattern = new RegExp(`"prompt_ack"[^}]*?${name}|${name}[^}]*?"prompt_ack"`);
  const pong = /"pong":\s*"(bench-[a-z]+-[0-9]+)"/;
  class Timed extends Native {
    constructor(...args) {
      super(...args);
      const kernel = String(args[0]).includes("/api/kernels/");
      this.addEventListener("message", (event) => {
        const now = performance.now();
        if (kernel) window.__kernelQuietSince = now;
        const data = event.data;
        const text = typeof data === "string" ? data
          : data instanceof ArrayBuffer ? decoder.decode(data) : "";
        const echoed = text.includes('"pong"') && text.match(pong);
        if (echoed && !(echoed[1] in window.__pongs)) window.__pongs[echoed[1]] = now;
        if (!text.includes("prompt_ack")) return;
        const match = text.match(pattern);
        const found = match && (match[1] || match[2]);
        if (found && !(found in window.__acks)) {
          window.__acks[found] = now;
          window.__acksWall[found] = performance.timeOrigin + now;
        }
      });
    }
  }
  window.WebSocket = Timed;
})();
"""

#: Type into a widget's prompt box (as a person does before pressing Enter), then let the page
#: draw, so that the focus change's style and layout work is not inside the timed window.
TYPE_PROMPT = """
async ([index, text]) => {
  const input = document.querySelectorAll('.decart-widget .dw-prompt')[index];
  input.focus();
  input.value = text;
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
}
"""

PRESS_ENTER = """
(index) => {
  const input = document.querySelectorAll('.decart-widget .dw-prompt')[index];
  const t0 = performance.now();
  input.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}));
  return t0;
}
"""

#: The method of the first figures: focus and fill the box in the same task as t0.
FOCUS_FILL_ENTER = """
([index, text]) => {
  const input = document.querySelectorAll('.decart-widget .dw-prompt')[index];
  input.focus();
  input.value = text;
  const t0 = performance.now();
  input.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}));
  return t0;
}
"""

#: A bare WebSocket round trip from the page, to an echo server in this process.
OPEN_WS_ECHO = """
async (url) => {
  window.__wsEchoes = {};
  const socket = new WebSocket(url);
  await new Promise((opened, failed) => { socket.onopen = opened; socket.onerror = failed; });
  socket.addEventListener("message", (event) => {
    const now = performance.now();
    if (!(event.data in window.__wsEchoes)) window.__wsEchoes[event.data] = now;
  });
  window.__wsEcho = socket;
}
"""

SEND_WS_ECHO = """
(name) => {
  const t0 = performance.now();
  window.__wsEcho.send(name);
  return t0;
}
"""

SEND_PING = """
(name) => {
  const t0 = performance.now();
  window.__benchEcho.send({ping: name});
  return t0;
}
"""

#: The floor: a bare anywidget whose kernel side answers a custom message from the relay's thread,
#: the way the relay answers (page -> server -> kernel -> relay thread -> server -> page).
ECHO_CELL = r'''
import anywidget
from decart_widget.widget._kernel_relay import relay_loop

class BenchEcho(anywidget.AnyWidget):
    _esm = """
export default { render({ model, el }) { el.textContent = 'echo'; window.__benchEcho = model; } };
"""

    def __init__(self):
        super().__init__()
        self.on_msg(self._ping)

    def _ping(self, _widget, content, _buffers):
        relay_loop().call_soon_threadsafe(self.send, {"pong": content.get("ping")})

echo = BenchEcho()
echo
'''

#: Prompts set from Python, the way a notebook user sets them (``w.prompt = ...``), one widget
#: after the other, each stamped with the kernel's wall clock (the page stamps the ack with its
#: own: both read the same system clock). Direct: kernel -> page (comm) -> service -> page. Kernel:
#: kernel -> relay -> service -> relay -> page (comm).
PYTHON_ORIGIN_CELL = r"""
import json, pathlib, time

def set_from_python(count, gap):
    sent = {}
    for index in range(count):
        for mode, widget in (("direct", direct), ("kernel", kernel)):
            name = f"bench-py{mode}-{index}"
            sent[name] = time.time() * 1000
            widget.prompt = name
            time.sleep(gap)
    pathlib.Path("python-origin.json").write_text(json.dumps(sent))
"""

NOTEBOOK_CELLS = [
    "import decart_widget as dw\n"
    "# small video, so that media does not starve the 2-core machine being measured\n"
    "small = dw.RealtimeModel('lucy-2.1', 320, 184, 15)\n"
    "direct = dw.RealtimeWidget(small, prompt='invert', signaling='direct', source='synthetic',"
    " autostart=True)\n"
    "direct",
    "kernel = dw.RealtimeWidget(small, prompt='invert', signaling='kernel', source='synthetic',"
    " autostart=True)\n"
    "kernel",
    ECHO_CELL,
    PYTHON_ORIGIN_CELL,
    "if pathlib.Path('python-origin.go').exists():\n"
    "    set_from_python(**json.loads(pathlib.Path('python-origin.go').read_text()))\n"
    "print('STATES', direct.connection_state, kernel.connection_state)",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:<22} n={len(values):<3} p50={percentile(values, 0.5):7.2f} ms  "
        f"p95={percentile(values, 0.95):7.2f} ms  mean={statistics.fmean(values):7.2f} ms"
    )


# ---- in the browser, through JupyterLab ------------------------------------------------------


def browser_round_trips(
    emu: dw.Emulator,
    prompts: int,
    chromium: str,
    focus_in_window: bool = False,
    settle_ms: float = 0.0,
    nagle: bool = False,
) -> dict[str, list[float]]:
    from jupyter_servers import JupyterPage, JupyterServer, write_notebook
    from playwright.sync_api import sync_playwright

    env = {
        "DECART_API_KEY": emu.api_key,
        "DECART_API_URL": emu.api_url,
        "DECART_REALTIME_URL": emu.realtime_url,
    }
    results: dict[str, list[float]] = {
        "direct": [],
        "kernel": [],
        "comm echo": [],
        "websocket echo": [],
    }
    with (
        echo_server() as echo_url,
        JupyterServer("lab", env=env, args=[NAGLE_ON] if nagle else []) as server,
        sync_playwright() as pw,
    ):
        write_notebook(server.root_dir / "bench.ipynb", NOTEBOOK_CELLS)
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.add_init_script(WRAP_WEBSOCKETS)
        ui = JupyterPage(page, server)
        ui.open("bench.ipynb")
        ui.run_all()
        deadline = time.monotonic() + 90
        while "STATES generating generating" not in _text(ui):
            if time.monotonic() > deadline:
                raise SystemExit(f"the widgets did not reach generating: {_text(ui)!r}")
            time.sleep(1)
            ui.run_cell(-1)
        page.wait_for_function("() => Boolean(window.__benchEcho)", timeout=30_000)
        page.evaluate(OPEN_WS_ECHO, echo_url)
        warmup = 5
        for index in range(warmup + prompts):
            samples: dict[str, float] = {}
            for view, mode in enumerate(("direct", "kernel")):
                name = f"bench-{mode}-{index}"
                _settle(page, settle_ms)
                if focus_in_window:
                    t0 = page.evaluate(FOCUS_FILL_ENTER, [view, name])
                else:
                    page.evaluate(TYPE_PROMPT, [view, name])
                    t0 = page.evaluate(PRESS_ENTER, view)
                samples[mode] = _wait_for(page, "__acks", name) - t0
            name = f"bench-ping-{index}"
            _settle(page, settle_ms)
            t0 = page.evaluate(SEND_PING, name)
            samples["comm echo"] = _wait_for(page, "__pongs", name) - t0
            name = f"bench-ws-{index}"
            _settle(page, settle_ms)
            t0 = page.evaluate(SEND_WS_ECHO, name)
            samples["websocket echo"] = _wait_for(page, "__wsEchoes", name) - t0
            if index >= warmup:
                for key, value in samples.items():
                    results[key].append(value)
        for mode, values in python_origin(page, ui, server.root_dir, warmup + prompts).items():
            results[f"python {mode}"] = values[warmup:]
        browser.close()
    return results


@contextlib.contextmanager
def echo_server() -> Iterator[str]:
    """A loopback WebSocket echo server on a thread: the page's bare socket round trip."""
    from websockets.sync.server import ServerConnection, serve

    def echo(connection: ServerConnection) -> None:
        for message in connection:
            connection.send(message)

    with serve(echo, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, name="bench-echo", daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        try:
            yield f"ws://127.0.0.1:{port}"
        finally:
            server.shutdown()
            thread.join(5)


def python_origin(page: Any, ui: Any, root: Path, count: int) -> dict[str, list[float]]:
    """Prompts set in the kernel (``w.prompt = ...``), to their ack in the page: ms per mode."""
    (root / "python-origin.go").write_text(json.dumps({"count": count, "gap": 0.25}))
    ui.run_cell(-1)
    results = root / "python-origin.json"
    deadline = time.monotonic() + 30 + count * 0.6
    while not results.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"the kernel did not set the prompts: {_text(ui)!r}")
        time.sleep(0.5)
    time.sleep(0.1)  # the file is written in one call; let it land
    sent: dict[str, float] = json.loads(results.read_text())
    acked = page.evaluate(
        "(names) => names.map((name) => window.__acksWall[name] ?? null)", list(sent)
    )
    missing = [name for name, at in zip(sent, acked, strict=True) if at is None]
    if missing:
        raise SystemExit(f"no ack reached the page for {missing[:5]}")
    out: dict[str, list[float]] = {"direct": [], "kernel": []}
    for (name, t0), t1 in zip(sent.items(), acked, strict=True):
        out["kernel" if name.startswith("bench-pykernel-") else "direct"].append(t1 - t0)
    return out


def _text(ui: Any) -> str:
    try:
        return str(ui.output_text(-1))
    except Exception:
        return ""


def _settle(page: Any, quiet_ms: float, timeout: float = 5.0) -> None:
    """Wait until the kernel's socket has been quiet for ``quiet_ms`` (the last sample's tail)."""
    if quiet_ms <= 0:
        return
    page.wait_for_function(
        "(quiet) => performance.now() - window.__kernelQuietSince >= quiet",
        arg=quiet_ms,
        timeout=timeout * 1000,
        polling="raf",
    )


def _wait_for(page: Any, table: str, name: str, timeout: float = 20.0) -> float:
    handle = page.wait_for_function(
        f"(name) => window.{table}[name] ?? null", arg=name, timeout=timeout * 1000, polling="raf"
    )
    return float(handle.json_value())


# ---- the relay alone, in Python ------------------------------------------------------------------


def relay_round_trips(emu: dw.Emulator, prompts: int) -> dict[str, list[float]]:
    import websockets

    from decart_widget.protocol._urls import build_stream_url

    results: dict[str, list[float]] = {"direct": [], "kernel": []}

    async def direct() -> None:
        url = build_stream_url(emu.realtime_url, emu.api_key, "lucy-2.1")
        async with websockets.connect(url) as socket:
            for index in range(prompts + 5):
                name = f"bench-py-{index}"
                t0 = time.perf_counter()
                await socket.send(json.dumps({"type": "prompt", "prompt": name}))
                while True:
                    frame = json.loads(await socket.recv())
                    if frame.get("type") == "prompt_ack" and frame.get("prompt") == name:
                        break
                if index >= 5:
                    results["direct"].append((time.perf_counter() - t0) * 1000)

    asyncio.run(direct())

    widget = dw.RealtimeWidget(backend=emu, signaling="kernel", prompt="invert")
    acks: dict[str, float] = {}
    arrived = threading.Condition()

    def capture(content: dict[str, Any], buffers: Any = None) -> None:
        frame = content.get("frame")
        if content.get("type") == "signal_opened" or (
            isinstance(frame, dict) and frame.get("type") == "prompt_ack"
        ):
            with arrived:
                acks[str(frame["prompt"]) if isinstance(frame, dict) else "opened"] = (
                    time.perf_counter()
                )
                arrived.notify_all()

    widget.send = capture  # type: ignore[method-assign]

    def wait(key: str) -> float:
        with arrived:
            arrived.wait_for(lambda: key in acks, 10)
            return acks[key]

    post = widget._on_frontend_message
    post(widget, {"type": "signal_open", "id": 1, "model": "lucy-2.1"}, [])
    wait("opened")
    post(widget, {"type": "signal", "id": 1, "frame": {"type": "prompt", "prompt": "invert"}}, [])
    wait("invert")
    for index in range(prompts + 5):
        name = f"bench-kpy-{index}"
        t0 = time.perf_counter()
        widget.prompt = name  # the kernel's own send: traitlet -> relay thread -> service
        t1 = wait(name)
        if index >= 5:
            results["kernel"].append((t1 - t0) * 1000)
    widget.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument(
        "--focus-in-window",
        action="store_true",
        help="focus and fill the prompt box in the timed task (the first figures' method)",
    )
    parser.add_argument(
        "--compare-nagle",
        action="store_true",
        help="also measure with decart_widget's server extension off (Nagle's algorithm on the "
        "kernel WebSocket, as Jupyter server ships it), first",
    )
    parser.add_argument(
        "--settle-ms",
        type=float,
        default=150.0,
        help="before each sample, wait until the kernel socket has been quiet this long "
        "(0: back to back, each sample inheriting the previous one's comm traffic)",
    )
    args = parser.parse_args()

    with dw.Emulator() as emu:
        print("relay alone (Python, no browser, no Jupyter):")
        py = relay_round_trips(emu, args.prompts)
        print("  " + summary("direct websocket", py["direct"]))
        print("  " + summary("through the relay", py["kernel"]))
        added_py = percentile(py["kernel"], 0.5) - percentile(py["direct"], 0.5)
        print(f"  relay adds {added_py:+.2f} ms at p50")
        if args.skip_browser:
            return
        runs = [True, False] if args.compare_nagle else [False]
        for nagle in runs:
            server = "extension off: Nagle on" if nagle else "TCP_NODELAY"
            print(
                f"\nin Chromium, JupyterLab 4, kernel WebSocket {server} "
                "(page: Enter in the prompt box -> ack in the page):"
            )
            print(f"  before: load average {load_average()}")
            browser = browser_round_trips(
                emu, args.prompts, args.chromium, args.focus_in_window, args.settle_ms, nagle
            )
            print(f"  after:  load average {load_average()}")
            print_browser_figures(browser)


def print_browser_figures(browser: dict[str, list[float]]) -> None:
    print("  " + summary("signaling=direct", browser["direct"]))
    print("  " + summary("signaling=kernel", browser["kernel"]))
    print("  " + summary("bare WebSocket echo", browser["websocket echo"]))
    print("  " + summary("bare comm echo", browser["comm echo"]))
    print("  " + summary("python direct", browser["python direct"]))
    print("  " + summary("python kernel", browser["python kernel"]))
    added = percentile(browser["kernel"], 0.5) - percentile(browser["direct"], 0.5)
    verdict = "met" if added <= GOAL_ADDED_P50_MS else "missed"
    print(
        f"  kernel mode adds {added:+.2f} ms at p50 (goal <= {GOAL_ADDED_P50_MS:g} ms: {verdict})"
    )
    floor = percentile(browser["comm echo"], 0.5) - percentile(browser["websocket echo"], 0.5)
    print(
        f"  floor: a comm round trip takes {floor:+.2f} ms more than a WebSocket round trip "
        f"at p50; kernel mode's overhead beyond that: {added - floor:+.2f} ms"
    )
    added_py = percentile(browser["python kernel"], 0.5) - percentile(browser["python direct"], 0.5)
    verdict_py = "met" if added_py <= GOAL_ADDED_P50_MS else "missed"
    print(
        f"  prompts set from Python (w.prompt = ..., to the ack in the page): kernel mode adds "
        f"{added_py:+.2f} ms at p50 (goal <= {GOAL_ADDED_P50_MS:g} ms: {verdict_py})"
    )


if __name__ == "__main__":
    main()
