"""Frames from the widget to Python: the rate ``w.frames(fps=30)`` reaches and its comm bytes.

``python bench/frames.py`` (about 2 minutes; ``--seconds N`` per size, default 8;
``--sizes 640x360,1088x624``) starts the emulator, a JupyterLab server whose kernels use it, and
Debian's Chromium, and runs one notebook. For each size it makes a widget of that size
(``lucy-2.1`` with its size replaced: the emulator transforms frames at the size it gets) with
``source="synthetic"``, starts it, takes one snapshot, then loops ``async for frame in
w.frames(fps=30)`` for the window and prints: the snapshot's shape (the stream's real size: under
load WebRTC's encoder may scale it down), frames received per second (``fps``), bytes per frame
on the comm (the RGB buffer plus the JSON header), the comm's MB/s, and Chromium's CPU seconds
(all its processes, from ``/proc``) per delivered frame over the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "browser"))

from _common import CHROMIUM_ARGS, load_average
from jupyter_servers import JupyterPage, JupyterServer, write_notebook
from playwright.sync_api import sync_playwright

import decart_widget as dw

CELL = """\
import asyncio, json, time
import decart_widget as dw
results = []
for width, height in {sizes}:
    w = dw.RealtimeWidget(model=dw.RealtimeModel("lucy-2.1", width, height, 30),
                          prompt="invert", source="synthetic")
    display(w)
    w.start()
    first = await w.snapshot(timeout=60)
    count, start = 0, time.monotonic()
    async for frame in w.frames(fps=30):
        count += 1
        if time.monotonic() - start > {seconds}:
            break
    elapsed = time.monotonic() - start
    header = len(json.dumps({{"type": "frame", "stream": 1, "which": "output",
                              "width": frame.shape[1], "height": frame.shape[0]}}))
    results.append({{"size": f"{{width}}x{{height}}", "snapshot": list(first.shape),
                     "frames": count, "seconds": elapsed, "bytes": frame.nbytes + header}})
    w.close()
print("BENCH", json.dumps(results))"""


def _renderer_cpu_seconds() -> float:
    """CPU seconds (user + system) of every Chromium process of this user."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"chromium" not in cmdline.split(b"\0")[0]:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--sizes", default="640x360,1088x624")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
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
                write_notebook(
                    server.root_dir / "bench.ipynb",
                    [CELL.format(sizes=sizes, seconds=args.seconds)],
                )
                ui = JupyterPage(page, server)
                ui.open("bench.ipynb")
                cpu_before = _renderer_cpu_seconds()
                ui.run_cell(0)
                deadline = time.monotonic() + 120 + len(sizes) * args.seconds
                results = None
                while results is None and time.monotonic() < deadline:
                    for line in ui.output_text(0).splitlines():
                        if line.startswith("BENCH "):
                            results = json.loads(line[len("BENCH ") :])
                    time.sleep(0.5)
                cpu = _renderer_cpu_seconds() - cpu_before
                shown = ui.output_text(0)
            finally:
                browser.close()
    if results is None:
        raise SystemExit("the notebook did not finish: " + shown[-2000:])
    print(f"load average: {load_average()}")
    print(f"{'size':>10} {'snapshot':>14} {'fps':>6} {'bytes/frame':>12} {'MB/s':>7}")
    frames = 0
    for r in results:
        fps = r["frames"] / r["seconds"]
        frames += r["frames"]
        print(
            f"{r['size']:>10} {'x'.join(map(str, r['snapshot'])):>14} {fps:6.1f} "
            f"{r['bytes']:>12,} {fps * r['bytes'] / 1e6:7.1f}"
        )
    print(
        f"Chromium CPU over the whole run (sessions, video and frames): {cpu:.1f} s, "
        f"{cpu / max(frames, 1) * 1000:.0f} ms per delivered frame (an upper bound on the "
        "frames' own cost)"
    )


if __name__ == "__main__":
    main()
