"""Prompt-to-ack round trip: signaling "kernel" versus "direct", in the same run, on loopback.

Run ``python bench/signaling.py [--prompts 40] [--chromium /usr/bin/chromium]``. Not part of the
test run; it prints figures next to the goal and never fails on them.

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
* One sample: type a fresh prompt into a widget's prompt box and press Enter (t0, in the page),
  until its ack reaches the page (t1). Direct: page -> service -> page. Kernel: page -> Jupyter
  server -> kernel (traitlet) -> relay thread -> service -> relay -> kernel -> server -> page.
  Modes alternate, one prompt in flight at a time, after a warm-up.
* Also printed, without a browser or Jupyter: the relay alone (a websockets client straight to the
  emulator versus the same frames through a kernel-mode widget's relay), to split the overhead
  between the relay and Jupyter's comm.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for path in (ROOT, ROOT / "tests" / "browser"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import decart_widget as dw  # noqa: E402

GOAL_ADDED_P50_MS = 5.0
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-gpu",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]

WRAP_WEBSOCKETS = r"""
(() => {
  window.__acks = {};
  window.__echoes = {};
  const Native = window.WebSocket;
  const decoder = new TextDecoder();
  const name = String.raw`"prompt":\s*"(bench-[a-z]+-[0-9]+)"`;
  const pattern = new RegExp(`"prompt_ack"[^}]*?${name}|${name}[^}]*?"prompt_ack"`);
  class Timed extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        const now = performance.now();
        const data = event.data;
        const text = typeof data === "string" ? data
          : data instanceof ArrayBuffer ? decoder.decode(data) : "";
        if (text.includes("echo_update")) {
          const echo = text.match(/"prompt":\s*"(bench-[a-z]+-[0-9]+)"/);
          if (echo && !(echo[1] in window.__echoes)) window.__echoes[echo[1]] = now;
        }
        if (!text.includes("prompt_ack")) return;
        const match = text.match(pattern);
        const found = match && (match[1] || match[2]);
        if (found && !(found in window.__acks)) window.__acks[found] = now;
      });
    }
  }
  window.WebSocket = Timed;
})();
"""

SEND_PROMPT = """
([index, text]) => {
  const input = document.querySelectorAll('.decart-widget .dw-prompt')[index];
  input.focus();
  input.value = text;
  const t0 = performance.now();
  input.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}));
  return t0;
}
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


def browser_round_trips(emu: dw.Emulator, prompts: int, chromium: str) -> dict[str, list[float]]:
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
        "direct echo": [],
        "kernel echo": [],
    }
    with JupyterServer("lab", env=env) as server, sync_playwright() as pw:
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
        modes = ["direct", "kernel"]
        warmup = 5
        for index in range(warmup + prompts):
            for view, mode in enumerate(modes):
                name = f"bench-{mode}-{index}"
                t0 = page.evaluate(SEND_PROMPT, [view, name])
                t1 = _wait_ack(page, name)
                if index >= warmup:
                    results[mode].append(t1 - t0)
                    echo = page.evaluate("(name) => window.__echoes[name] ?? null", name)
                    if echo is not None:
                        results[f"{mode} echo"].append(echo - t0)
        browser.close()
    return results


def _text(ui: Any) -> str:
    try:
        return str(ui.output_text(-1))
    except Exception:
        return ""


def _wait_ack(page: Any, name: str, timeout: float = 20.0) -> float:
    handle = page.wait_for_function(
        "(name) => window.__acks[name] ?? null", arg=name, timeout=timeout * 1000, polling="raf"
    )
    return float(handle.json_value())


# ---- the relay alone, in Python ------------------------------------------------------------------


def relay_round_trips(emu: dw.Emulator, prompts: int) -> dict[str, list[float]]:
    import websockets

    from decart_widget.protocol.urls import build_stream_url

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
        print("\nin Chromium, JupyterLab 4 (page: prompt box Enter -> ack in the page):")
        browser = browser_round_trips(emu, args.prompts, args.chromium)
        print("  " + summary("signaling=direct", browser["direct"]))
        print("  " + summary("signaling=kernel", browser["kernel"]))
        for mode in ("direct", "kernel"):
            if browser[f"{mode} echo"]:
                print("  " + summary(f"{mode}: state echo", browser[f"{mode} echo"]))
        added = percentile(browser["kernel"], 0.5) - percentile(browser["direct"], 0.5)
        verdict = "met" if added <= GOAL_ADDED_P50_MS else "missed"
        print(
            f"  kernel mode adds {added:+.2f} ms at p50 "
            f"(goal <= {GOAL_ADDED_P50_MS:g} ms: {verdict})"
        )


if __name__ == "__main__":
    main()
