"""Pipeline bench: one session through the emulator (Gen-A and Gen-B) vs a bare aiortc echo, plus
a concurrency ramp.

Run ``python bench/pipeline.py [--seconds 10] [--sizes 640x360,1088x624] [--skip-concurrency]
[--skip-gen-b] [--gen-b-codec h264|vp8]``.
Not part of the test run; it prints figures and goals, and never fails on them.

How it measures (see bench/README.md):

* Two far ends, each in its own process (bench/_peers.py): a bare aiortc echo that returns every
  frame inverted, and the decart-widget emulator. This process is the client: a bare aiortc peer
  for the echo, `dw.RealtimeSession` (prompt ``"invert"``) for the emulator (Gen-A), and for
  Gen-B ("gen-b" rows) the control socket as Decart's Python SDK opens it plus LiveKit's Python
  client (PyPI ``livekit``, native encode/decode) in the emulator's room, publishing one H.264
  layer at a fixed size (`LiveKitClient`).
* The source is a 30 fps moving colour-bar pattern, handed to the encoder as yuv420p. Each frame
  carries its index as a barcode of 16x16 luma blocks (macroblock-aligned, 16 vs 235) in the top
  band: two polarity blocks, 16 index bits and 16 check bits. Both far ends invert, which keeps
  the barcode decodable (read with inverted polarity); a frame whose polarity blocks are not
  inverted counts as untransformed, one whose check bits disagree as undecodable.
* Latency: from the moment the client's sender takes the frame from the track (just before VP8
  encode; Gen-B: just before it is handed to LiveKit's `VideoSource`) to the moment the client
  gets its transformed frame back, decoded.
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

from decart_widget.client._sources import PacedTrack  # noqa: E402 - after the path is set

FPS = 30
BLOCK = 16
INDEX_BITS = 16
HI, LO, MID = 235, 16, 128
CLK_TCK = os.sysconf("SC_CLK_TCK")
GOAL_FPS = 29.0
GOAL_RATIO = 1.2
#: Gen-B (LiveKit room) p50 over Gen-A (offer/answer) p50, both against the emulator.
GOAL_GEN_B_RATIO = 1.3
GEN_B = "gen-b"
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
        self.on_luma(now, luma)

    def on_i420(self, width: int, height: int, data: Any) -> None:
        """A frame from LiveKit's client (I420 bytes: the luma plane comes first)."""
        now = time.monotonic()
        if width != self.width or height != self.height:
            self.undecodable += 1
            return
        luma = np.frombuffer(data, np.uint8, count=width * height).reshape(height, width)
        self.on_luma(now, luma)

    def on_luma(self, now: float, luma: U8) -> None:
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
            model="lucy-2.1",
            source=self.track,
            prompt="invert",
            backend=backend,
            timeout=30,
            transport="webrtc",  # the Gen-A rows; Gen-B goes through LiveKitClient
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


class LiveKitClient:
    """Gen-B: the control socket as Decart's Python SDK opens it (``livekit_join``, then the
    prompt "invert"), then the emulator's room with LiveKit's Python client (PyPI ``livekit``):
    the stamped frames go to a `rtc.VideoSource` (I420, one track, ``codec``), the
    ``inference-server-*`` participant's video comes back through a `rtc.VideoStream`."""

    def __init__(self, track: StampedTrack, codec: str) -> None:
        self.track = track
        self.codec = codec
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse[bool] | None = None
        self.room: Any = None
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self, port: int, api_key: str) -> None:
        from livekit import rtc

        self.http = aiohttp.ClientSession()
        url = (
            f"ws://127.0.0.1:{port}/v1/stream?api_key={api_key}&model=lucy-2.1"
            "&livekit_early_room_info=true"
        )
        self.ws = ws = await self.http.ws_connect(url)
        await ws.send_json({"type": "livekit_join"})
        info = await self._expect("livekit_room_info")
        await ws.send_json({"type": "prompt", "prompt": "invert", "enhance_prompt": False})
        await self._expect("prompt_ack")
        self.tasks.append(asyncio.ensure_future(self._drain()))

        self.room = room = rtc.Room()

        @room.on("track_subscribed")
        def on_track(track: Any, publication: Any, participant: Any) -> None:
            if participant.identity.startswith("inference-server-") and (
                track.kind == rtc.TrackKind.KIND_VIDEO
            ):
                self.tasks.append(asyncio.ensure_future(self._read(track)))

        await room.connect(info["livekit_url"], info["token"])
        probe = self.track.probe
        source = rtc.VideoSource(probe.width, probe.height)
        local = rtc.LocalVideoTrack.create_video_track("camera", source)
        # One layer whose size never adapts, so every frame keeps a readable barcode (with
        # LiveKit's defaults -- simulcast, "balanced" degradation -- a busy machine gets its
        # camera downscaled, e.g. 1088x624 arriving as 544x312 or 314x180).
        options = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_CAMERA,
            simulcast=False,
            video_codec=getattr(rtc.VideoCodec, self.codec.upper()),
            video_encoding=rtc.VideoEncoding(max_framerate=FPS, max_bitrate=3_500_000),
            degradation_preference=rtc.DegradationPreference.MAINTAIN_RESOLUTION.value,
        )
        await room.local_participant.publish_track(local, options)
        self.tasks.append(asyncio.ensure_future(self._pump(source)))

    async def _expect(self, kind: str) -> dict[str, Any]:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            body: dict[str, Any] = message.json()
            if body.get("type") == kind:
                return body
            if body.get("type") == "error":
                raise RuntimeError(f"emulator: {body.get('error')}")
        raise RuntimeError(f"control socket closed before {kind!r}")

    async def _drain(self) -> None:
        assert self.ws is not None
        async for _ in self.ws:
            pass

    async def _pump(self, source: Any) -> None:
        from livekit import rtc

        probe = self.track.probe
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await self.track.recv()  # paced; stamps the send time
                data = frame.to_ndarray().tobytes()  # yuv420p planes = I420
                source.capture_frame(
                    rtc.VideoFrame(probe.width, probe.height, rtc.VideoBufferType.I420, data)
                )

    async def _read(self, track: Any) -> None:
        from livekit import rtc

        stream = rtc.VideoStream(track, format=rtc.VideoBufferType.I420)
        try:
            async for event in stream:
                frame = event.frame
                self.track.probe.on_i420(frame.width, frame.height, frame.data)
        finally:
            await stream.aclose()

    async def close(self) -> None:
        self.track.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.room is not None:
            await self.room.disconnect()
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()


Client = EchoClient | EmulatorClient | LiveKitClient


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
    peer: Peer,
    size: tuple[int, int],
    sessions: int,
    seconds: float,
    warmup: float,
    *,
    gen_b_codec: str | None = None,
) -> Result:
    """``gen_b_codec`` set: Gen-B sessions (`LiveKitClient`) against the emulator peer."""
    width, height = size
    label = GEN_B if gen_b_codec is not None else peer.kind
    barcode = Barcode(width, height)
    tracks = [StampedTrack(Probe(barcode, width, height)) for _ in range(sessions)]
    clients: list[Client] = []
    try:
        openers: list[Awaitable[None]] = []
        for track in tracks:
            if gen_b_codec is not None:
                livekit = LiveKitClient(track, gen_b_codec)
                clients.append(livekit)
                openers.append(livekit.open(peer.port, peer.api_key))
            elif peer.kind == "echo":
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
        if GEN_B in by and "emulator" in by:
            ratio = by[GEN_B].p50 / by["emulator"].p50
            verdict = _ok(ratio <= GOAL_GEN_B_RATIO)
            print(
                f"{name:<10}gen-b/emulator p50 = {ratio:.2f}x   goal <= {GOAL_GEN_B_RATIO:g}x: "
                f"{verdict}"
            )
        elif any(row.label == GEN_B for row in rows if row.size == size):
            print(f"{name:<10}gen-b/emulator p50 = n/a (a measurement failed)")
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
            if not args.skip_gen_b:
                rows.append(
                    await run_sessions(
                        peers["emulator"],
                        size,
                        1,
                        args.seconds,
                        args.warmup,
                        gen_b_codec=args.gen_b_codec,
                    )
                )
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
    parser.add_argument("--skip-gen-b", action="store_true", help="no Gen-B (LiveKit) rows")
    parser.add_argument(
        "--gen-b-codec",
        choices=("h264", "vp8"),
        default="h264",
        help="the codec the Gen-B client publishes (Decart's Python SDK: h264)",
    )
    parser.add_argument("--max-sessions", type=int, default=32, help="where the ramp stops")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
