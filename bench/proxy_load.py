"""Load on the signaling proxy: N concurrent control-plane sessions (no media), one prompt a
second each, through the proxy to the emulator, against the same sessions direct to the emulator
in the same run.

    python bench/proxy_load.py                 # 100, 500 and 1000 sessions, 20 s each
    python bench/proxy_load.py --sessions 100 --seconds 10

Both groups of N sessions stay open; the measurement alternates 2-second windows in which only
the direct or only the proxied sessions prompt, so both paths see the same background load.
Prints, for each N: frames forwarded per second by the proxy, prompt -> ack round trip (p50,
p99) direct and through the proxy and the difference (the proxy's added latency), the proxy's
resident memory per session, and the proxy's CPU (share of one core) during the window.

By default it runs twice: with the emulator upstream (as a platform would see it), and with a
trivial ack-only upstream that isolates the proxy's own cost. The upstream and the proxy each
run in their own process (the proxy through its CLI, with the
default SQLite ledger in a temp dir); the clients run here on one event loop. All three share
the machine's cores, so absolute figures include that contention. Not part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-0123456789abcdef"
#: How to start the proxy, and extra flags (e.g. from an experiment script).
PROXY_COMMAND = [sys.executable, "-m", "decart_widget.proxy"]
EXTRA: list[str] = []
EMULATOR_SCRIPT = """
import sys, threading
from decart_widget.emulator import Emulator
emu = Emulator(port=0, max_concurrent_sessions=100000).start()
print(emu.realtime_url, emu.api_key, flush=True)
sys.stdin.read()   # until the bench closes our stdin
emu.stop()
"""

# A trivial upstream that only acknowledges prompts: isolates the proxy's own cost.
ACK_ONLY_SCRIPT = """
import asyncio, json, sys
from aiohttp import web

async def stream(request):
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    async for msg in ws:
        data = json.loads(msg.data)
        if data.get("type") == "prompt":
            await ws.send_str(json.dumps(
                {"type": "prompt_ack", "prompt": data["prompt"], "success": True, "error": None}))
    return ws

async def main():
    app = web.Application()
    app.router.add_get("/v1/stream", stream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"ws://127.0.0.1:{port} dct_ack_only", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()

asyncio.run(main())
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---- /proc readings ----------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# ---- the processes under test ------------------------------------------------------------------


class Upstream:
    """The emulator (``kind="emulator"``) or the ack-only server, in a child process."""

    def __init__(self, kind: str) -> None:
        script = EMULATOR_SCRIPT if kind == "emulator" else ACK_ONLY_SCRIPT
        self.process = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env(),
        )  # fmt: skip
        assert self.process.stdout is not None
        self.realtime_url, self.api_key = self.process.stdout.readline().split()

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Proxy:
    def __init__(self, emulator: Upstream, workdir: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "decart_widget.proxy", "--port", "0",
                "--upstream-url", emulator.realtime_url, "--api-key", emulator.api_key,
                "--secret", SECRET, "--ledger", os.path.join(workdir, "ledger.sqlite3"),
                "--max-sessions-per-user", "0", "--log-level", "warning", "--heartbeat", "0",
                *EXTRA,
            ],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(),
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"the proxy did not start: {line!r}")
        self.realtime_url = line.split("listening on ", 1)[1].strip().removesuffix("/v1/stream")
        self.http_url = self.realtime_url.replace("ws://", "http://", 1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def frames_forwarded(http: aiohttp.ClientSession, proxy: Proxy) -> float:
    async with http.get(f"{proxy.http_url}/metrics") as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("decart_proxy_frames_forwarded_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---- the clients -------------------------------------------------------------------------------


@dataclass
class Group:
    """N sessions on one path (direct or through the proxy), prompting only while active."""

    sessions: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    opened: int = 0
    settled: int = 0  # opened or failed
    active: asyncio.Event = field(default_factory=asyncio.Event)
    all_settled: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self, ok: bool) -> None:
        self.opened += ok
        self.errors += not ok
        self.settled += 1
        if self.settled == self.sessions:
            self.all_settled.set()


def prompt(text: str) -> str:
    return json.dumps({"type": "prompt", "prompt": text, "enhance_prompt": False})


async def client(
    http: aiohttp.ClientSession,
    url: str,
    index: int,
    group: Group,
    ramp: asyncio.Semaphore,
    stop: asyncio.Event,
) -> None:
    sent: dict[str, float] = {}
    first_ack = asyncio.get_running_loop().create_future()

    async def reader(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data.get("type") == "prompt_ack":
                started = sent.pop(data.get("prompt", ""), None)
                if not first_ack.done():
                    first_ack.set_result(None)
                elif started is not None:
                    group.latencies.append(time.perf_counter() - started)

    async with ramp:  # at most this many sessions opening at once: no thundering herd
        try:
            ws = await http.ws_connect(url, max_msg_size=0, compress=0, autoping=True)
        except (aiohttp.ClientError, OSError):
            group.settle(False)
            return
        reading = asyncio.create_task(reader(ws))
        first = f"anime {index} 0"
        sent[first] = time.perf_counter()
        await ws.send_str(prompt(first))
        try:
            await asyncio.wait_for(first_ack, 60)
        except asyncio.TimeoutError:
            group.settle(False)
            await ws.close()
            return
        group.settle(True)
    seq = 0
    # Each session keeps its own one-a-second cadence, at a random offset, and prompts only
    # while its group is active: no synchronised bursts when a window opens.
    next_send = time.monotonic() + random.random()
    try:
        while not stop.is_set() and not ws.closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_send - time.monotonic()))
            next_send += 1.0
            if stop.is_set() or not group.active.is_set():
                continue
            seq += 1
            text = f"anime {index} {seq}"
            sent[text] = time.perf_counter()
            await ws.send_str(prompt(text))
    except (aiohttp.ClientError, ConnectionError):
        group.errors += 1
    finally:
        await ws.close()
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reading


async def measure(
    direct_urls: list[str], proxy_urls: list[str], seconds: float, proxy: Proxy
) -> tuple[Group, Group, dict[str, float]]:
    """Open both groups, then alternate 2-second windows (direct, proxied, ...) for ``seconds``
    each, so that both paths see the same background load on a shared machine."""
    direct, through = Group(len(direct_urls)), Group(len(proxy_urls))
    stop = asyncio.Event()
    ramp = asyncio.Semaphore(100)
    figures: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = [
            asyncio.create_task(client(http, url, i, direct, ramp, stop))
            for i, url in enumerate(direct_urls)
        ]
        await asyncio.wait_for(direct.all_settled.wait(), 300)
        base_rss = rss_bytes(proxy.process.pid)
        tasks += [
            asyncio.create_task(client(http, url, i, through, ramp, stop))
            for i, url in enumerate(proxy_urls)
        ]
        await asyncio.wait_for(through.all_settled.wait(), 300)
        figures["rss_per_session"] = (rss_bytes(proxy.process.pid) - base_rss) / max(
            1, through.opened
        )
        direct.latencies.clear()
        through.latencies.clear()
        window = 2.0
        frames = cpu = proxied_time = 0.0
        for _ in range(max(1, round(seconds / window))):
            for group in (direct, through):
                group.active.set()
                if group is through:
                    frames0 = await frames_forwarded(http, proxy)
                    cpu0 = cpu_seconds(proxy.process.pid)
                t0 = time.monotonic()
                await asyncio.sleep(window)
                group.active.clear()
                if group is through:
                    proxied_time += time.monotonic() - t0
                    cpu += cpu_seconds(proxy.process.pid) - cpu0
                    frames += await frames_forwarded(http, proxy) - frames0
                await asyncio.sleep(0.3)  # let the window's acks arrive
        figures["frames_per_s"] = frames / proxied_time
        figures["cpu_core"] = cpu / proxied_time
        figures["rss_per_session"] = max(
            figures["rss_per_session"],
            (rss_bytes(proxy.process.pid) - base_rss) / max(1, through.opened),
        )
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return direct, through, figures


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(sizes: list[int], seconds: float, upstream: str) -> None:
    sys.path.insert(0, str(ROOT))
    from decart_widget.proxy import issue_token

    raise_fd_limit()
    emulator = Upstream(upstream)
    rows = []
    idle_rss = 0
    try:
        for n in sizes:
            # A fresh proxy for each size, so its memory growth is this size's alone.
            with tempfile.TemporaryDirectory() as workdir:
                proxy = Proxy(emulator, workdir)
                idle_rss = rss_bytes(proxy.process.pid)
                direct_urls = [
                    f"{emulator.realtime_url}/v1/stream?"
                    + urlencode({"api_key": emulator.api_key, "model": "lucy-2.1"})
                    for _ in range(n)
                ]
                proxy_urls = [
                    f"{proxy.realtime_url}/v1/stream?"
                    + urlencode({"model": "lucy-2.1", "token": issue_token(f"user{i}", SECRET)})
                    for i in range(n)
                ]
                try:
                    direct, through, figures = await measure(
                        direct_urls, proxy_urls, seconds, proxy
                    )
                finally:
                    proxy.stop()
                rows.append((n, direct, through, figures))
                print(
                    f"  n={n}: {len(direct.latencies)} direct acks, {len(through.latencies)} "
                    f"proxied acks, {direct.opened}+{through.opened} sessions opened, "
                    f"{direct.errors + through.errors} errors",
                    flush=True,
                )
    finally:
        emulator.stop()

    ms = 1000.0
    print()
    print(
        f"upstream: {upstream}; proxy idle RSS {idle_rss / 2**20:.1f} MiB; "
        f"{seconds:g} s per path in alternating 2 s windows; "
        f"{os.cpu_count()} cores shared by all processes"
    )
    header = (
        f"{'sessions':>8} {'frames/s':>9} {'direct p50/p99 ms':>18} {'proxy p50/p99 ms':>17} "
        f"{'added p50/p99 ms':>17} {'KB/session':>10} {'CPU (cores)':>11}"
    )
    print(header)
    print("-" * len(header))
    for n, direct, through, figures in rows:
        d50, d99 = percentile(direct.latencies, 0.5), percentile(direct.latencies, 0.99)
        p50, p99 = percentile(through.latencies, 0.5), percentile(through.latencies, 0.99)
        print(
            f"{n:>8} {figures['frames_per_s']:>9.0f} {d50 * ms:>8.2f} / {d99 * ms:<7.2f} "
            f"{p50 * ms:>7.2f} / {p99 * ms:<7.2f} {(p50 - d50) * ms:>7.2f} / "
            f"{(p99 - d99) * ms:<7.2f} {figures['rss_per_session'] / 1024:>10.1f} "
            f"{figures['cpu_core']:>11.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="*", default=[100, 500, 1000])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--upstream",
        choices=("emulator", "ack-only", "both"),
        default="both",
        help="what the proxy fronts: the emulator, a trivial ack-only server, or both in turn",
    )
    args = parser.parse_args()
    kinds = ["emulator", "ack-only"] if args.upstream == "both" else [args.upstream]
    for kind in kinds:
        asyncio.run(bench(args.sessions, args.seconds, kind))


if __name__ == "__main__":
    main()
