"""Load on the signaling proxy: N concurrent control-plane sessions (no media), one prompt a
second each, through the proxy to the emulator, against the same sessions direct to the emulator
in the same run.

    python bench/proxy_load.py                 # 100, 500 and 1000 sessions, 20 s each
    python bench/proxy_load.py --sessions 100 --seconds 10
    python bench/proxy_load.py --reference ~/src/decart-sdk/examples/ws-signaling-proxy
    python bench/proxy_load.py --reference-cmd "node /path/to/ws-signaling-proxy/dist/index.js"

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

With ``--reference`` (a built checkout of Decart's reference signaling proxy,
``examples/ws-signaling-proxy`` of github.com/DecartAI/sdk: ``npm install`` and ``npx tsc`` in
it) or ``--reference-cmd`` (any command that starts it in the foreground: it gets
``DECART_API_KEY``, ``DECART_BASE_URL`` and ``PORT`` in its environment), the run compares the two
proxies instead: the same ack-only upstream, 1000 sessions a path (``--sessions``: direct, ours,
the reference, all open at once), the three groups taking turns in 2-second windows until each had
``--seconds`` of load (default 10), ``--repeat`` times (default 3, the order alternating), so that
both proxies see the same background load.
Ours runs with its default flags except ``--max-sessions-per-user 0`` and
``--max-connections-per-address 0`` (every client connects from 127.0.0.1); both write their logs
to a file. For each run it prints, per proxy, the added p50/p99 latency (proxied minus direct in
the same measurement), the CPU seconds of the proxy process during its ``--seconds`` of load, the
memory per session (resident memory after the sessions opened, minus before, divided by the
sessions), and the ratios ours/reference.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _common import load_average  # noqa: E402

from decart_widget.proxy import issue_token  # noqa: E402 - after the path is set

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


class ProxyProcess:
    """A proxy under test in a child process: where clients connect, its pid for /proc."""

    name = "proxy"
    process: subprocess.Popen[str]
    realtime_url: str
    #: Where its ``/metrics`` are (ours only), for the frames-forwarded count.
    http_url: str | None = None

    def stream_url(self, index: int) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Proxy(ProxyProcess):
    """``decart-widget proxy`` through its CLI, with the SQLite ledger in ``workdir``.

    ``log_level`` ``warning`` (the sizes sweep) keeps per-prompt log lines out of the figures;
    the comparison keeps the default (``info``), its lines going to ``workdir/proxy.log``."""

    name = "ours"

    def __init__(
        self,
        emulator: Upstream,
        workdir: str,
        *,
        log_level: str = "warning",
        heartbeat: bool = False,
    ) -> None:
        # every client is on 127.0.0.1: no per-user or per-address cap
        flags = ["--max-sessions-per-user", "0", "--max-connections-per-address", "0"]
        if log_level != "info":
            flags += ["--log-level", log_level]
        if not heartbeat:
            flags += ["--heartbeat", "0"]
        with open(os.path.join(workdir, "proxy.log"), "w") as logfile:
            self.process = subprocess.Popen(
                [
                    *PROXY_COMMAND, "--port", "0",
                    "--upstream-url", emulator.realtime_url, "--api-key", emulator.api_key,
                    "--secret", SECRET, "--ledger", os.path.join(workdir, "ledger.sqlite3"),
                    *flags, *EXTRA,
                ],
                stdout=subprocess.PIPE, stderr=logfile, text=True, env=_env(),
            )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"the proxy did not start: {line!r}")
        self.realtime_url = line.split("listening on ", 1)[1].strip().removesuffix("/v1/stream")
        self.http_url = self.realtime_url.replace("ws://", "http://", 1)

    def stream_url(self, index: int) -> str:
        token = issue_token(f"user{index}", SECRET)
        return f"{self.realtime_url}/v1/stream?" + urlencode({"model": "lucy-2.1", "token": token})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ReferenceProxy(ProxyProcess):
    """Decart's reference proxy (Node, ``ws``): ``command`` run with the upstream's URL and key
    and a free port in its environment; its output goes to ``workdir/reference.log``.

    ``command`` must be the server process itself (``node dist/index.js``), not a wrapper such
    as ``pnpm start``: its CPU and memory are read from its pid."""

    name = "reference"

    def __init__(self, command: list[str], upstream: Upstream, workdir: str) -> None:
        port = free_port()
        env = dict(os.environ)
        env.update(
            DECART_API_KEY=upstream.api_key, DECART_BASE_URL=upstream.realtime_url, PORT=str(port)
        )
        with open(os.path.join(workdir, "reference.log"), "w") as logfile:
            self.process = subprocess.Popen(
                command, stdout=logfile, stderr=subprocess.STDOUT, text=True, env=env
            )
        self.realtime_url = f"ws://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                status = self.process.returncode
                raise SystemExit(f"the reference proxy exited ({status}): {command}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"the reference proxy did not listen on {port}") from None
                time.sleep(0.1)

    def stream_url(self, index: int) -> str:
        # it ignores any key the client sends and uses its own
        return f"{self.realtime_url}/v1/stream?" + urlencode({"model": "lucy-2.1"})


def reference_command(args: argparse.Namespace) -> list[str] | None:
    if args.reference_cmd:
        return shlex.split(args.reference_cmd)
    if args.reference:
        entry = Path(args.reference).expanduser() / "dist" / "index.js"
        if not entry.is_file():
            raise SystemExit(
                f"{entry} not found: run `npm install && npx tsc` in {args.reference} first"
            )
        return ["node", str(entry)]
    return None


async def frames_forwarded(http: aiohttp.ClientSession, proxy: ProxyProcess) -> float:
    if proxy.http_url is None:
        return 0.0
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
    sent: int = 0  # prompts sent after the first
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
            # a client that fell behind (a starved loop) skips the missed second, never bursts
            next_send = max(next_send + 1.0, time.monotonic())
            if stop.is_set() or not group.active.is_set():
                continue
            seq += 1
            text = f"anime {index} {seq}"
            sent[text] = time.perf_counter()
            group.sent += 1
            await ws.send_str(prompt(text))
    except (aiohttp.ClientError, ConnectionError):
        group.errors += 1
    finally:
        await ws.close()
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reading


async def measure(
    direct_urls: list[str], proxy_urls: list[str], seconds: float, proxy: ProxyProcess
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
        prompts = 0
        for _ in range(max(1, round(seconds / window))):
            for group in (direct, through):
                group.active.set()
                if group is through:
                    frames0 = await frames_forwarded(http, proxy)
                    cpu0 = cpu_seconds(proxy.process.pid)
                    sent0 = through.sent
                t0 = time.monotonic()
                await asyncio.sleep(window)
                group.active.clear()
                if group is through:
                    proxied_time += time.monotonic() - t0
                    cpu += cpu_seconds(proxy.process.pid) - cpu0
                    frames += await frames_forwarded(http, proxy) - frames0
                    prompts += through.sent - sent0
                await asyncio.sleep(0.3)  # let the window's acks arrive
        figures["frames_per_s"] = frames / proxied_time
        figures["cpu_core"] = cpu / proxied_time
        figures["cpu_seconds"] = cpu
        figures["load_seconds"] = proxied_time
        figures["prompts"] = prompts
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
                proxy_urls = [proxy.stream_url(i) for i in range(n)]
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


# ---- ours against the reference -------------------------------------------------------------


@dataclass
class Row:
    """One proxy's figures in one run."""

    name: str
    added_p50: float
    added_p99: float
    cpu_seconds: float
    cpu_per_prompt: float
    rss_per_session: float
    acks: int
    errors: int


async def measure_interleaved(
    direct_urls: list[str],
    proxies: list[tuple[ProxyProcess, list[str]]],
    seconds: float,
    window: float = 2.0,
) -> list[Row]:
    """Open the direct group and one group per proxy, then give each group in turn a window
    of prompting (direct, then the proxies in an order that alternates every cycle) until each
    had ``seconds`` of load: every path sees the same background load, minute by minute."""
    direct = Group(len(direct_urls))
    groups = [Group(len(urls)) for _, urls in proxies]
    stop = asyncio.Event()
    ramp = asyncio.Semaphore(100)
    rss: list[float] = []  # resident memory per session, after the group opened
    base: list[int] = []  # resident memory before
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = [
            asyncio.create_task(client(http, url, i, direct, ramp, stop))
            for i, url in enumerate(direct_urls)
        ]
        await asyncio.wait_for(direct.all_settled.wait(), 300)
        for (proxy, urls), group in zip(proxies, groups, strict=True):
            before = rss_bytes(proxy.process.pid)
            base.append(before)
            tasks += [
                asyncio.create_task(client(http, url, i, group, ramp, stop))
                for i, url in enumerate(urls)
            ]
            await asyncio.wait_for(group.all_settled.wait(), 300)
            rss.append((rss_bytes(proxy.process.pid) - before) / max(1, group.opened))
        for group in (direct, *groups):
            group.latencies.clear()
        cpu = [0.0] * len(proxies)
        prompts = [0] * len(proxies)
        load = [0.0] * len(proxies)
        for cycle in range(max(1, round(seconds / window))):
            order = list(range(len(proxies)))
            if cycle % 2:
                order.reverse()
            for index in [-1, *order]:
                group = direct if index < 0 else groups[index]
                pid = proxies[index][0].process.pid if index >= 0 else 0
                cpu0 = cpu_seconds(pid) if pid else 0.0
                sent0, t0 = group.sent, time.monotonic()
                group.active.set()
                await asyncio.sleep(window)
                group.active.clear()
                if pid:
                    load[index] += time.monotonic() - t0
                    cpu[index] += cpu_seconds(pid) - cpu0
                    prompts[index] += group.sent - sent0
                await asyncio.sleep(0.3)  # let the window's acks arrive
        for i, (proxy, _) in enumerate(proxies):  # a heap may grow under load: the larger
            grown = (rss_bytes(proxy.process.pid) - base[i]) / max(1, groups[i].opened)
            rss[i] = max(rss[i], grown)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    rows = []
    d50, d99 = percentile(direct.latencies, 0.5), percentile(direct.latencies, 0.99)
    for i, ((proxy, urls), group) in enumerate(zip(proxies, groups, strict=True)):
        rows.append(
            Row(
                proxy.name,
                percentile(group.latencies, 0.5) - d50,
                percentile(group.latencies, 0.99) - d99,
                cpu[i] * seconds / max(load[i], 1e-9),
                cpu[i] / max(1, prompts[i]),
                rss[i],
                len(group.latencies),
                direct.errors + group.errors + (len(urls) - group.opened),
            )
        )
    return rows


async def compare(command: list[str], n: int, seconds: float, repeat: int) -> None:
    raise_fd_limit()
    upstream = Upstream("ack-only")
    ms = 1000.0
    print(
        f"{n} sessions per path (direct, ours, reference), one prompt a second each, "
        f"{seconds:g} s of load per path in rotating 2 s windows, ack-only upstream; "
        f"{os.cpu_count()} cores shared by the upstream, the proxies, the clients and anything "
        "else running",
        flush=True,
    )
    direct_urls = [
        f"{upstream.realtime_url}/v1/stream?"
        + urlencode({"api_key": upstream.api_key, "model": "lucy-2.1"})
        for _ in range(n)
    ]
    try:
        for run in range(1, repeat + 1):
            load_before = load_average()
            with (
                tempfile.TemporaryDirectory() as ours_dir,
                tempfile.TemporaryDirectory() as ref_dir,
            ):
                mine = Proxy(upstream, ours_dir, log_level="info", heartbeat=True)
                try:
                    ref = ReferenceProxy(command, upstream, ref_dir)
                except BaseException:
                    mine.stop()
                    raise
                try:
                    pair = [
                        (mine, [mine.stream_url(i) for i in range(n)]),
                        (ref, [ref.stream_url(i) for i in range(n)]),
                    ]
                    if not run % 2:  # which group opens (and prompts) first alternates
                        pair.reverse()
                    rows = {
                        row.name: row
                        for row in await measure_interleaved(direct_urls, pair, seconds)
                    }
                finally:
                    mine.stop()
                    ref.stop()
            print(f"\nrun {run} (load average {load_before} -> {load_average()})")
            header = (
                f"{'':>12} {'added p50 ms':>12} {'added p99 ms':>12} {'CPU s':>7} "
                f"{'CPU us/prompt':>13} {'KB/session':>10} {'acks':>6} {'errors':>6}"
            )
            print(header)
            for name in ("reference", "ours"):
                r = rows[name]
                print(
                    f"{name:>12} {r.added_p50 * ms:>12.2f} {r.added_p99 * ms:>12.2f} "
                    f"{r.cpu_seconds:>7.2f} {r.cpu_per_prompt * 1e6:>13.0f} "
                    f"{r.rss_per_session / 1024:>10.1f} {r.acks:>6} "
                    f"{r.errors:>6}"
                )
            ours_row, ref_row = rows["ours"], rows["reference"]
            print(
                f"{'ours/ref':>12} {_ratio(ours_row.added_p50, ref_row.added_p50):>12} "
                f"{_ratio(ours_row.added_p99, ref_row.added_p99):>12} "
                f"{_ratio(ours_row.cpu_seconds, ref_row.cpu_seconds):>7} "
                f"{_ratio(ours_row.cpu_per_prompt, ref_row.cpu_per_prompt):>13} "
                f"{_ratio(ours_row.rss_per_session, ref_row.rss_per_session):>10}",
                flush=True,
            )
    finally:
        upstream.stop()


def _ratio(mine: float, reference: float) -> str:
    return f"{mine / reference:.2f}" if reference > 0 else "n/a"


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
    parser.add_argument(
        "--reference",
        metavar="DIR",
        help="a built checkout of Decart's examples/ws-signaling-proxy: compare against it",
    )
    parser.add_argument(
        "--reference-cmd",
        metavar="COMMAND",
        help="the command that runs the reference proxy in the foreground: compare against it",
    )
    parser.add_argument("--repeat", type=int, default=3, help="comparison runs (default 3)")
    parser.add_argument(
        "--ours-args",
        default="",
        metavar="FLAGS",
        help='more flags for our proxy, e.g. "--log-level warning"',
    )
    args = parser.parse_args()
    EXTRA[:] = shlex.split(args.ours_args)
    command = reference_command(args)
    if command is not None:
        sessions = args.sessions if args.sessions != [100, 500, 1000] else [1000]
        seconds = args.seconds if args.seconds != 20.0 else 10.0
        for n in sessions:
            asyncio.run(compare(command, n, seconds, args.repeat))
        return
    kinds = ["emulator", "ack-only"] if args.upstream == "both" else [args.upstream]
    for kind in kinds:
        asyncio.run(bench(args.sessions, args.seconds, kind))


if __name__ == "__main__":
    main()
