"""Pipeline bench: one session through the emulator vs a bare aiortc echo, plus a concurrency ramp.

Run ``python bench/pipeline.py [--seconds 10] [--sizes 640x360,1088x624] [--skip-concurrency]``.
Not part of the test run; it prints figures and goals, and never fails on them.

How it measures (see bench/README.md):

* Two far ends, each in its own process (bench/_peers.py): a bare aiortc echo that returns every
  frame inverted, and the decart-widget emulator. This process is the client: a bare aiortc peer
  for the echo, `dw.RealtimeSession` (prompt ``"invert"``) for the emulator.
* The source is a 30 fps moving colour-bar pattern, handed to the encoder as yuv420p. Each frame
  carries its index as a barcode of 16x16 luma blocks (macroblock-aligned, 16 vs 235) in the top
  band: two polarity blocks, 16 index bits and 16 check bits. Both far ends invert, which keeps
  the barcode decodable (read with inverted polarity); a frame whose polarity blocks are not
  inverted counts as untransformed, one whose check bits disagree as undecodable.
* Latency: from the moment the client's sender takes the frame from the track (just before VP8
  encode) to the moment the client gets its transformed frame back, decoded.
* Delivered fps: distinct transformed frames received in the measurement window / window.
* CPU s/frame: CPU seconds (all threads) of each process over the window / frames delivered;
  this process via `time.process_time`, the far end via /proc/<pid>/stat. "other" is the CPU
  (in cores) that the rest of the machine used meanwhile, from /proc/stat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import logging
import os
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _common import load_average  # noqa: E402

from decart_widget.client.sources import PacedTrack  # noqa: E402 - after the path is set

FPS = 30
BLOCK = 16
INDEX_BITS = 16
HI, LO, MID = 235, 16, 128
CLK_TCK = os.sysconf("SC_CLK_TCK")
GOAL_FPS = 29.0
GOAL_RATIO = 1.2
GOAL_CONCURRENT_FPS = 20.0
#: Cores that other processes may use during a window before the figures are flagged.
BUSY_OTHER = 0.25
CONCURRENCY_SIZE = (320, 180)
EARLIER_ECHO_P50 = {(640, 360): 80.0, (1088, 624): 100.0}
_TIME_BASE = fractions.Fraction(1, 90_000)

U8 = npt.NDArray[np.uint8]


# ---- the stamp ----------------------------------------------------------------------------------


def _check(index: int) -> int:
    return ((index * 0x9E37) ^ 0x5A5A) & 0xFFFF


class Barcode:
    """Frame index <-> a band of 16x16 luma blocks at the top of the frame."""

    NBITS = 2 + 2 * INDEX_BITS

    def __init__(self, width: int, height: int) -> None:
        self.cols = width // BLOCK
        self.rows = -(-self.NBITS // self.cols)
        self.band = self.rows * BLOCK
        if self.cols < 4 or self.band * 2 > height:
            raise ValueError(f"{width}x{height} is too small for the barcode")

    def bits(self, index: int) -> list[int]:
        code = index & 0xFFFF
        word = (code << INDEX_BITS) | _check(code)
        return [1, 0, *((word >> (2 * INDEX_BITS - 1 - i)) & 1 for i in range(2 * INDEX_BITS))]

    def draw(self, luma: U8, index: int) -> None:
        grid = np.full(self.rows * self.cols, MID, dtype=np.uint8)
        grid[: self.NBITS] = np.where(np.asarray(self.bits(index)) == 1, HI, LO)
        blocks = grid.reshape(self.rows, self.cols).repeat(BLOCK, 0).repeat(BLOCK, 1)
        luma[: self.band, : self.cols * BLOCK] = blocks

    def read(self, luma: U8) -> tuple[int | None, bool]:
        """(index or None when unreadable, True when the polarity says inverted)."""
        band = luma[: self.band, : self.cols * BLOCK].astype(np.float32)
        inner = band.reshape(self.rows, BLOCK, self.cols, BLOCK)[:, 4:12, :, 4:12]
        bright = (inner.mean(axis=(1, 3)).reshape(-1)[: self.NBITS] > MID).astype(int)
        if bright[0] == bright[1]:
            return None, False
        inverted = bool(bright[0] == 0)
        bits = 1 - bright if inverted else bright
        word = 0
        for bit in bits[2:]:
            word = (word << 1) | int(bit)
        code, check = word >> INDEX_BITS, word & 0xFFFF
        return (code if _check(code) == check else None), inverted


# ---- the source and the probe -------------------------------------------------------------------


@dataclass
class Probe:
    """Send times by index, and what came back."""

    barcode: Barcode
    width: int
    height: int
    sent: dict[int, float] = field(default_factory=dict)
    #: (receive time, latency s) of each distinct transformed frame.
    received: list[tuple[float, float]] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    undecodable: int = 0
    untransformed: int = 0

    def on_frame(self, frame: VideoFrame) -> None:
        now = time.monotonic()
        if frame.width != self.width or frame.height != self.height:
            self.undecodable += 1
            return
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        plane = frame.planes[0]
        luma = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)[
            :, : self.width
        ]
        index, inverted = self.barcode.read(luma)
        if index is None:
            self.undecodable += 1
        elif not inverted:
            self.untransformed += 1
        elif index in self.sent and index not in self.seen:
            self.seen.add(index)
            self.received.append((now, now - self.sent[index]))


class StampedTrack(PacedTrack):
    """30 fps moving colour bars (yuv420p) with the frame index stamped in, paced by the
    client's own `PacedTrack` (a late sender gets the frames it missed)."""

    def __init__(self, probe: Probe, fps: float = FPS) -> None:
        super().__init__(fps)
        self.probe = probe
        w, h = probe.width, probe.height
        bars = np.array(
            [[235, 235, 235], [235, 235, 16], [16, 235, 235], [16, 235, 16],
             [235, 16, 235], [235, 16, 16], [16, 16, 235], [16, 16, 16]],
            dtype=np.float32,
        )  # fmt: skip
        row = bars[np.arange(w) * len(bars) // w]
        r, g, b = row[:, 0], row[:, 1], row[:, 2]
        y = 0.257 * r + 0.504 * g + 0.098 * b + 16
        u = -0.148 * r - 0.291 * g + 0.439 * b + 128
        v = 0.439 * r - 0.368 * g - 0.071 * b + 128
        shade = np.linspace(1.0, 0.6, h, dtype=np.float32)[:, None]
        self._y = np.tile((y[None, :] * shade).astype(np.uint8), (1, 2))
        half = np.arange(0, w, 2)
        self._u = np.tile(np.repeat(u[half][None, :], h // 2, 0).astype(np.uint8), (1, 2))
        self._v = np.tile(np.repeat(v[half][None, :], h // 2, 0).astype(np.uint8), (1, 2))
        band = probe.barcode.band
        self._y[:band] = MID
        self._u[: band // 2] = MID
        self._v[: band // 2] = MID
        self._buf = np.empty((h * 3 // 2, w), dtype=np.uint8)

    def _frame(self, index: int) -> VideoFrame:
        w, h = self.probe.width, self.probe.height
        shift = (index * 4) % w
        flat = self._buf.reshape(-1)
        self._buf[:h] = self._y[:, shift : shift + w]
        quarter = h * w // 4
        flat[h * w : h * w + quarter] = self._u[:, shift // 2 : shift // 2 + w // 2].reshape(-1)
        flat[h * w + quarter :] = self._v[:, shift // 2 : shift // 2 + w // 2].reshape(-1)
        self.probe.barcode.draw(self._buf, index)
        frame = VideoFrame.from_ndarray(self._buf, format="yuv420p")
        frame.pts = int(index * 90_000 / self.fps)
        frame.time_base = _TIME_BASE
        return frame

    async def recv(self) -> VideoFrame:
        await self._next_pts()
        frame = self._frame(self._index)
        self.probe.sent[self._index & 0xFFFF] = time.monotonic()
        return frame


# ---- the far ends -------------------------------------------------------------------------------


@dataclass
class Peer:
    kind: str
    process: subprocess.Popen[str]
    port: int
    api_key: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)


def start_peer(kind: str) -> Peer:
    process = subprocess.Popen(
        [sys.executable, str(BENCH / "_peers.py"), kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 60)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("READY "):
        process.kill()
        process.wait(5)
        raise RuntimeError(f"the {kind} peer did not start (got {line!r})")
    _, port, key = line.split()
    return Peer(kind, process, int(port), key)


class EchoClient:
    """A bare aiortc client of the echo: offer over HTTP, read frames into the probe."""

    def __init__(self, track: StampedTrack) -> None:
        self.track = track
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.reader: asyncio.Task[None] | None = None

    async def open(self, port: int) -> None:
        transceiver = self.pc.addTransceiver(self.track, direction="sendrecv")
        codecs = RTCRtpSender.getCapabilities("video").codecs
        transceiver.setCodecPreferences([c for c in codecs if c.mimeType == "video/VP8"])

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self.reader = asyncio.ensure_future(self._read(track))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/offer"
            async with http.post(url, json={"sdp": self.pc.localDescription.sdp}) as response:
                response.raise_for_status()
                answer: dict[str, Any] = await response.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame):
                    self.track.probe.on_frame(frame)

    async def close(self) -> None:
        await self.pc.close()
        self.track.stop()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


class EmulatorClient:
    """`dw.RealtimeSession` with prompt "invert", frames read into the probe."""

    def __init__(self, track: StampedTrack) -> None:
        self.track = track
        self.session: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def open(self, port: int, api_key: str) -> None:
        import decart_widget as dw

        backend = dw.Decart(
            api_key=api_key,
            api_url=f"http://127.0.0.1:{port}",
            realtime_url=f"ws://127.0.0.1:{port}",
        )
        self.session = await dw.RealtimeSession.connect(
            model="lucy-2.1", source=self.track, prompt="invert", backend=backend, timeout=30
        )
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for frame in self.session.video_frames():
            self.track.probe.on_frame(frame)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.disconnect()
        self.track.stop()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self.reader


Client = EchoClient | EmulatorClient


# ---- measuring ----------------------------------------------------------------------------------


def proc_cpu(pid: int | str) -> float:
    """CPU seconds (user + system, all threads) of a process, from /proc."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def system_busy() -> float:
    """CPU seconds all cores spent busy since boot (not idle, not iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK


@dataclass
class Window:
    wall: float
    client_cpu: float
    server_cpu: float
    other_cpu: float
    start: float
    end: float


async def measure(server_pid: int, seconds: float) -> Window:
    t0, c0, s0 = time.monotonic(), time.process_time(), proc_cpu(server_pid)
    own0, b0 = proc_cpu("self"), system_busy()
    await asyncio.sleep(seconds)
    t1, c1, s1 = time.monotonic(), time.process_time(), proc_cpu(server_pid)
    own1, b1 = proc_cpu("self"), system_busy()
    other = (b1 - b0) - (own1 - own0) - (s1 - s0)
    return Window(t1 - t0, c1 - c0, s1 - s0, max(0.0, other) / (t1 - t0), t0, t1)


@dataclass
class Result:
    label: str
    size: tuple[int, int]
    sessions: int
    fps: list[float]
    p50: float
    p95: float
    client_cpu_per_frame: float
    server_cpu_per_frame: float
    client_cores: float
    server_cores: float
    other_cores: float
    undecodable: int
    untransformed: int
    error: str | None = None

    @property
    def min_fps(self) -> float:
        return min(self.fps) if self.fps else 0.0

    @property
    def mean_fps(self) -> float:
        return statistics.fmean(self.fps) if self.fps else 0.0


def _failed(label: str, size: tuple[int, int], sessions: int, error: str) -> Result:
    nan = float("nan")
    return Result(label, size, sessions, [], nan, nan, nan, nan, nan, nan, nan, 0, 0, error)


async def run_sessions(
    peer: Peer, size: tuple[int, int], sessions: int, seconds: float, warmup: float
) -> Result:
    width, height = size
    label = peer.kind
    barcode = Barcode(width, height)
    tracks = [StampedTrack(Probe(barcode, width, height)) for _ in range(sessions)]
    clients: list[Client] = []
    try:
        openers: list[Awaitable[None]] = []
        for track in tracks:
            if peer.kind == "echo":
                echo = EchoClient(track)
                clients.append(echo)
                openers.append(echo.open(peer.port))
            else:
                emu = EmulatorClient(track)
                clients.append(emu)
                openers.append(emu.open(peer.port, peer.api_key))
        await asyncio.wait_for(asyncio.gather(*openers), 60)
        await asyncio.sleep(warmup)
        window = await measure(peer.pid, seconds)
    except Exception as exc:
        return _failed(label, size, sessions, f"{type(exc).__name__}: {exc}")
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    fps: list[float] = []
    latencies: list[float] = []
    for track in tracks:
        inside = [lat for at, lat in track.probe.received if window.start <= at <= window.end]
        fps.append(len(inside) / window.wall)
        latencies.extend(inside)
    delivered = sum(fps) * window.wall
    if not latencies:
        return _failed(label, size, sessions, "no transformed frame came back")
    q = statistics.quantiles(latencies, n=20, method="inclusive") if len(latencies) > 1 else []
    p50 = statistics.median(latencies) * 1000
    p95 = (q[18] if q else latencies[0]) * 1000
    return Result(
        label=label,
        size=size,
        sessions=sessions,
        fps=fps,
        p50=p50,
        p95=p95,
        client_cpu_per_frame=window.client_cpu / delivered,
        server_cpu_per_frame=window.server_cpu / delivered,
        client_cores=window.client_cpu / window.wall,
        server_cores=window.server_cpu / window.wall,
        other_cores=window.other_cpu,
        undecodable=sum(t.probe.undecodable for t in tracks),
        untransformed=sum(t.probe.untransformed for t in tracks),
    )


# ---- reporting ----------------------------------------------------------------------------------


def _ok(flag: bool) -> str:
    return "ok" if flag else "MISS"


def warn_if_busy(rows: list[Result]) -> None:
    others = [row.other_cores for row in rows if not row.error]
    if others and max(others) > BUSY_OTHER:
        print(
            f"WARNING: other processes kept {statistics.fmean(others):.2f} cores busy on average "
            f"(up to {max(others):.2f}) during these windows: the figures are inflated, "
            "rerun on a quiet machine"
        )


def print_single(rows: list[Result]) -> None:
    head = (
        f"{'size':<10}{'peer':<10}{'fps':>6}{'p50 ms':>8}{'p95 ms':>8}"
        f"{'client CPU':>12}{'server CPU':>12}{'cores c/s/other':>17}{'bad':>6}"
        f"   goal fps>={GOAL_FPS:g}"
    )
    print(head)
    print(f"{'':<42}{'s/frame':>12}{'s/frame':>12}")
    for row in rows:
        name = f"{row.size[0]}x{row.size[1]}"
        if row.error:
            print(f"{name:<10}{row.label:<10}  FAILED: {row.error}")
            continue
        cores = f"{row.client_cores:.2f}/{row.server_cores:.2f}/{row.other_cores:.2f}"
        print(
            f"{name:<10}{row.label:<10}{row.mean_fps:>6.1f}{row.p50:>8.1f}{row.p95:>8.1f}"
            f"{row.client_cpu_per_frame:>12.4f}{row.server_cpu_per_frame:>12.4f}{cores:>17}"
            f"{row.undecodable + row.untransformed:>6}   {_ok(row.mean_fps >= GOAL_FPS)}"
        )
    sizes = list(dict.fromkeys(row.size for row in rows))
    for size in sizes:
        by = {row.label: row for row in rows if row.size == size and not row.error}
        name = f"{size[0]}x{size[1]}"
        earlier = EARLIER_ECHO_P50.get(size)
        note = f" (echo measured earlier: ~{earlier:g} ms)" if earlier else ""
        if "echo" in by and "emulator" in by:
            ratio = by["emulator"].p50 / by["echo"].p50
            verdict = _ok(ratio <= GOAL_RATIO)
            if min(by["emulator"].mean_fps, by["echo"].mean_fps) < GOAL_FPS:
                verdict += " (but frames were dropped: compare with care)"
            print(
                f"{name:<10}emulator/echo p50 = {ratio:.2f}x   goal <= {GOAL_RATIO:g}x: {verdict}"
            )
            if note:
                print(f"{'':<10}{note.strip()}")
        else:
            print(f"{name:<10}emulator/echo p50 = n/a (a measurement failed){note}")
    warn_if_busy(rows)


def print_concurrency(rows: list[Result]) -> None:
    w, h = CONCURRENCY_SIZE
    print(
        f"\nconcurrency: emulator, {w}x{h} @ {FPS} fps input, goal: every session "
        f">= {GOAL_CONCURRENT_FPS:g} fps delivered"
    )
    print(
        f"{'sessions':>8}{'min fps':>9}{'mean fps':>10}{'p50 ms':>8}{'p95 ms':>8}"
        f"{'client cores':>14}{'server cores':>14}{'other':>7}{'bad':>6}"
    )
    for row in rows:
        if row.error:
            print(f"{row.sessions:>8}  FAILED: {row.error}")
            continue
        print(
            f"{row.sessions:>8}{row.min_fps:>9.1f}{row.mean_fps:>10.1f}{row.p50:>8.1f}"
            f"{row.p95:>8.1f}{row.client_cores:>14.2f}{row.server_cores:>14.2f}"
            f"{row.other_cores:>7.2f}{row.undecodable + row.untransformed:>6}"
        )
    good = [r.sessions for r in rows if not r.error and r.min_fps >= GOAL_CONCURRENT_FPS]
    best = max(good, default=0)
    print(
        f"result: the emulator sustains {best} concurrent {w}x{h} session(s) at "
        f">= {GOAL_CONCURRENT_FPS:g} fps on this {os.cpu_count()}-core machine "
        "(client and emulator share the cores)"
    )
    warn_if_busy(rows)


# ---- main ---------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    width, height = int(w), int(h)
    if width % 16 or height % 4 or width < 64:
        raise argparse.ArgumentTypeError(f"{text}: width must be a multiple of 16, height of 4")
    return width, height


async def main_async(args: argparse.Namespace) -> None:
    sizes: list[tuple[int, int]] = args.sizes
    print(
        f"decart-widget pipeline bench: {os.cpu_count()} cores, "
        f"load avg {load_average()} (1/5/15 min) "
        f"at start; input {FPS} fps; {args.warmup:g} s warm-up + {args.seconds:g} s per figure"
    )
    print(
        "effect: emulator prompt 'invert' (RGB inversion); echo: bitwise_not of the yuv planes. "
        "cores c/s/other = CPU cores used by client / server / rest of machine; "
        "bad = frames that came back unreadable or untransformed\n",
        flush=True,
    )
    peers: dict[str, Peer] = {}
    try:
        peers["echo"] = start_peer("echo")
        peers["emulator"] = start_peer("emulator")
        rows: list[Result] = []
        for size in sizes:
            for kind in ("echo", "emulator"):
                rows.append(await run_sessions(peers[kind], size, 1, args.seconds, args.warmup))
        print_single(rows)
        sys.stdout.flush()
        if not args.skip_concurrency:
            ramp: list[Result] = []
            sessions = 1
            while sessions <= args.max_sessions:
                row = await run_sessions(
                    peers["emulator"], CONCURRENCY_SIZE, sessions, args.seconds, args.warmup
                )
                ramp.append(row)
                if row.error or row.min_fps < GOAL_CONCURRENT_FPS:
                    break
                sessions *= 2
            print_concurrency(ramp)
    finally:
        for peer in peers.values():
            peer.stop()
    print(f"\nload avg at end: {load_average()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per figure")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    parser.add_argument(
        "--sizes",
        type=lambda s: [parse_size(x) for x in s.split(",") if x.strip()],
        default=[(640, 360), (1088, 624)],
        help="comma-separated WxH list (default 640x360,1088x624)",
    )
    parser.add_argument("--skip-concurrency", action="store_true")
    parser.add_argument("--max-sessions", type=int, default=32, help="where the ramp stops")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
