"""Memory of a long ``w.on_frame`` stream at the highest rate: does the kernel or the page grow?

``python bench/frames_memory.py`` (about 2 minutes; ``--seconds N``, default 60; ``--step S``
between samples, default 5) starts the emulator, a JupyterLab server whose kernels use it, and
Debian's Chromium, and runs one notebook: a widget (``lucy-2.1``, 1088 x 624, ``source=
"synthetic"``, Gen-A) is started, then ``w.on_frame(callback, fps=30)`` (the cap) runs for the
window with a callback that counts and drops each frame. Every ``step`` seconds the kernel prints
its resident memory (``VmRSS``) and the frames delivered; the bench samples the page's JavaScript
heap (Chrome DevTools Protocol ``Runtime.getHeapUsage``, after no forced GC) and the resident
memory of its Chromium's processes (``/proc``: the ones descending from the bench, so other
browsers on a shared machine do not count). It prints the samples and the growth from the first
sample after the warm-up (``--warmup``, default 10 s) to the last: bounded memory shows as a flat
line, a leak as growth in proportion to the frames (1088 x 624 x 3 = 2 MB a frame).
``--no-stream`` runs the same session without the stream: Chromium's own drift (video decoding,
WebRTC buffers) to compare with.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "browser"))

from _common import CHROMIUM_ARGS, load_average
from jupyter_servers import JupyterPage, JupyterServer, write_notebook
from playwright.sync_api import sync_playwright

import decart_widget as dw

CELL = """\
import asyncio, json, time
import decart_widget as dw

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

w = dw.RealtimeWidget(prompt="invert", source="synthetic", transport="webrtc")
display(w)
w.start()
first = await w.snapshot(timeout=60)
count = 0
def drop(frame):
    global count
    count += 1
if {stream}:
    w.on_frame(drop, fps=30)
start = time.monotonic()
while (elapsed := time.monotonic() - start) <= {seconds}:
    print("SAMPLE", json.dumps({{"t": round(elapsed, 1), "rss": rss_mb(), "frames": count}}),
          flush=True)
    await asyncio.sleep({step})
w.on_frame(drop, remove=True)
print("DONE", json.dumps({{"frames": count, "shape": list(first.shape)}}))
w.close()"""


def _processes() -> dict[int, tuple[int, bytes]]:
    """Every process's parent and command, by pid."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            found[int(pid)] = (parent, Path(f"/proc/{pid}/cmdline").read_bytes())
        except (OSError, ValueError, IndexError):
            continue
    return found


def chromium_rss_mb() -> float:
    """Resident memory of this bench's Chromium (the Chromium processes descending from this
    process: other Chromiums on a shared machine are not counted), in MB."""
    processes = _processes()
    ours = {os.getpid()}
    grew = True
    while grew:  # the descendants of this process
        grew = False
        for pid, (parent, _) in processes.items():
            if parent in ours and pid not in ours:
                ours.add(pid)
                grew = True
    total = 0
    for pid in ours:
        command = processes.get(pid, (0, b""))[1]
        if b"chromium" not in command.split(b"\0")[0]:
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def tagged(text: str, tag: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[len(tag) + 1 :]) for line in text.splitlines() if line.startswith(tag + " ")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--step", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument(
        "--no-stream",
        action="store_true",
        help="the same session without the on_frame stream: the baseline the stream adds to",
    )
    args = parser.parse_args()
    page_samples: list[tuple[float, float, float]] = []  # (time, JS heap MB, Chromium RSS MB)
    with dw.Emulator() as emulator:
        env = {
            "DECART_API_KEY": emulator.api_key,
            "DECART_API_URL": emulator.api_url,
            "DECART_REALTIME_URL": emulator.realtime_url,
        }
        with JupyterServer("lab", env=env) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page()
                cdp = page.context.new_cdp_session(page)
                write_notebook(
                    server.root_dir / "memory.ipynb",
                    [CELL.format(seconds=args.seconds, step=args.step, stream=not args.no_stream)],
                )
                ui = JupyterPage(page, server)
                ui.open("memory.ipynb")
                ui.run_cell(0)
                deadline = time.monotonic() + 120 + args.seconds
                started: float | None = None
                done: list[dict[str, Any]] = []
                while not done and time.monotonic() < deadline:
                    text = ui.output_text(0)
                    done = tagged(text, "DONE")
                    if started is None and tagged(text, "SAMPLE"):
                        started = time.monotonic()
                    if started is not None:
                        heap = cdp.send("Runtime.getHeapUsage")["usedSize"] / 2**20
                        page_samples.append((time.monotonic() - started, heap, chromium_rss_mb()))
                    time.sleep(args.step)
                shown = ui.output_text(0)
            finally:
                browser.close()
    kernel = tagged(shown, "SAMPLE")
    if not done or not kernel:
        raise SystemExit("the notebook did not finish: " + shown[-2000:])
    print(f"load average: {load_average()}")
    print(f"frames delivered: {done[0]['frames']} of {done[0]['shape']} in {args.seconds:g} s")
    print(f"{'t (s)':>6} {'frames':>7} {'kernel RSS MB':>14}")
    for sample in kernel:
        print(f"{sample['t']:6.1f} {sample['frames']:7d} {sample['rss']:14.1f}")
    print(f"{'t (s)':>6} {'page JS heap MB':>16} {'Chromium RSS MB':>16}")
    for t, heap, rss in page_samples:
        print(f"{t:6.1f} {heap:16.1f} {rss:16.1f}")

    def growth(samples: list[tuple[float, float]]) -> str:
        after = [value for t, value in samples if t >= args.warmup]
        if len(after) < 2:
            return "n/a (too few samples)"
        return f"{after[-1] - after[0]:+.1f} MB (min {min(after):.1f}, max {max(after):.1f})"

    print(f"growth after {args.warmup:g} s:")
    print(f"  kernel RSS      {growth([(s['t'], s['rss']) for s in kernel])}")
    print(f"  page JS heap    {growth([(t, h) for t, h, _ in page_samples])}")
    print(f"  Chromium RSS    {growth([(t, r) for t, _, r in page_samples])}")


if __name__ == "__main__":
    main()
