"""The relay's frames handled inside the socket's read (`decart_widget.proxy._frames`): in use,
in order behind a tick that waits for the ledger, and with back-pressure on a stalled side.

The upstream here is a small aiohttp server of the test's own that writes several frames in one
``write`` (so they reach the proxy in one read) or stops reading, which the emulator never does.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from proxy_kit import WAIT, ProxyFactory, connect, wait_for

from decart_widget.proxy import ProxyServer
from decart_widget.proxy._frames import FastQueue, buffered, fast_queue
from decart_widget.proxy._ledger_sqlite import SQLiteLedger
from decart_widget.proxy._relay import Relay


def server_frame(payload: dict[str, Any]) -> bytes:
    """One unmasked text frame, as a server writes it."""
    data = json.dumps(payload).encode()
    if len(data) < 126:
        return bytes([0x81, len(data)]) + data
    return bytes([0x81, 126]) + len(data).to_bytes(2, "big") + data


class Upstream:
    """An upstream whose reaction to each client frame the test chooses (``on_frame``)."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.on_frame: Callable[[web.WebSocketResponse, str], Any] | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Upstream:
        app = web.Application()
        app.router.add_get("/v1/stream", self._stream)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=0)
        await ws.prepare(request)
        self.sockets.append(ws)
        async for msg in ws:
            self.received.append(msg.data)
            if self.on_frame is not None:
                result = self.on_frame(ws, msg.data)
                if asyncio.iscoroutine(result):
                    await result
        return ws

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = await Upstream().start()
    try:
        yield server
    finally:
        await server.stop()


def only_relay(proxy: ProxyServer) -> Relay:
    assert proxy.service is not None
    [relay] = proxy.service.relays
    return relay


async def test_text_frames_take_the_fast_path_in_both_directions(
    proxy_factory: ProxyFactory,
) -> None:
    """With the installed aiohttp, both sockets of a relay read through a `FastQueue` whose
    hook is set: an aiohttp release that changes the internals it relies on fails here (the
    relay would still work, on aiohttp's slower path)."""
    proxy = await proxy_factory()
    async with await connect(proxy.stream_url(proxy.issue_token("fay"))) as ws:
        await ws.send(json.dumps({"type": "prompt", "prompt": "Noir", "enhance_prompt": False}))
        while json.loads(await ws.recv()).get("type") != "prompt_ack":
            pass
        relay = only_relay(proxy)
        assert relay.upstream is not None
        for side in (relay.client, relay.upstream):
            queue = fast_queue(side)
            assert isinstance(queue, FastQueue) and queue.hook is not None
        before = relay.frames["client_to_upstream"]
        await ws.send(json.dumps({"type": "prompt", "prompt": "Anime", "enhance_prompt": False}))
        while json.loads(await ws.recv()).get("type") != "prompt_ack":
            pass
        assert relay.frames["client_to_upstream"] == before + 1


class SlowTicks(SQLiteLedger):
    """A ledger whose tick writes take a while (a busy database): a tick must still reach the
    client after it is committed, and no later frame may overtake it."""

    async def record_tick(self, session_id: str, seconds: float, *, now: float) -> None:
        await asyncio.sleep(0.2)
        await super().record_tick(session_id, seconds, now=now)


async def test_frames_behind_a_tick_wait_for_the_ledger_and_keep_their_order(
    upstream: Upstream, proxy_factory: ProxyFactory
) -> None:
    burst = [
        {"type": "generation_tick", "seconds": 1},
        {"type": "prompt_ack", "prompt": "Noir", "success": True, "error": None},
        {"type": "generation_started"},
        {"type": "generation_tick", "seconds": 2},
        {"type": "some_future_message", "n": 1},
        {"type": "some_future_message", "n": 2},
    ]

    def answer(ws: web.WebSocketResponse, text: str) -> None:
        if json.loads(text).get("type") == "prompt":
            assert ws._writer is not None
            ws._writer.transport.write(b"".join(server_frame(frame) for frame in burst))

    upstream.on_frame = answer
    ledger = SlowTicks(":memory:")
    proxy = await proxy_factory(upstream_url=upstream.url, api_key="dct_test_key", ledger=ledger)
    seen: list[dict[str, Any]] = []
    recorded_at_receipt: list[float] = []
    async with await connect(proxy.stream_url(proxy.issue_token("gus"))) as ws:
        await ws.send(json.dumps({"type": "prompt", "prompt": "Noir", "enhance_prompt": False}))
        while len(seen) < len(burst):
            message = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            seen.append(message)
            if message["type"] == "generation_tick":
                [row] = await ledger.sessions("gus")
                recorded_at_receipt.append(row.seconds)
    assert seen == burst
    assert recorded_at_receipt == [1, 2]  # each tick was in the ledger before the client saw it
    await ledger.close()


async def test_a_stalled_upstream_pushes_back_on_the_client(
    upstream: Upstream, proxy_factory: ProxyFactory
) -> None:
    """Frames are written without awaiting only while the destination's buffer is small;
    beyond, aiohttp's path waits for it to drain and the client's socket stops being read."""
    upstream_reading = asyncio.Event()

    async def stall(ws: web.WebSocketResponse, text: str) -> None:
        if json.loads(text).get("n") == 0:  # the first big frame: stop reading for a while
            transport = ws._writer.transport if ws._writer is not None else None
            assert transport is not None
            transport.pause_reading()
            await upstream_reading.wait()
            transport.resume_reading()

    upstream.on_frame = stall
    proxy = await proxy_factory(upstream_url=upstream.url, api_key="dct_test_key")
    big = "x" * 1024 * 1024
    count = 40  # 40 MB: far more than the socket buffers on the way hold
    async with await connect(proxy.stream_url(proxy.issue_token("hal"))) as ws:
        await ws.send(json.dumps({"type": "warmup"}))
        await wait_for(lambda: upstream.received, what="the upstream connection")
        relay = only_relay(proxy)
        assert relay.upstream is not None

        async def send_all() -> None:
            for n in range(count):
                await ws.send(json.dumps({"type": "blob", "n": n, "data": big}))

        sending = asyncio.create_task(send_all())
        client_transport = relay.client._req.transport if relay.client._req else None
        assert client_transport is not None
        await wait_for(
            lambda: not client_transport.is_reading(), what="the proxy to stop reading the client"
        )
        # Held in the proxy meanwhile: at most a frame or two beyond the 64 KiB threshold.
        assert buffered(relay.upstream) < 3 * len(big)
        upstream_reading.set()
        await asyncio.wait_for(sending, WAIT * 3)
        await wait_for(lambda: len(upstream.received) == count + 1, WAIT * 3, "every frame")
    order = [json.loads(text).get("n") for text in upstream.received[1:]]
    assert order == list(range(count))


# ---- the heartbeat ------------------------------------------------------------------------------


class RawClient:
    """A WebSocket client on a bare socket, so the test sees (and may ignore) every ping."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url: str) -> RawClient:
        rest = url.removeprefix("ws://")
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send_text(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    def send_frame(self, opcode: int, data: bytes) -> None:
        assert len(data) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.writer.write(bytes([0x80 | opcode, 0x80 | len(data)]) + mask + masked)

    async def frame(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload; (-1, b"") when the connection ends."""
        try:
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await self.reader.readexactly(8), "big")
            return first & 0x0F, await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return -1, b""

    def close(self) -> None:
        self.writer.close()


PING, CLOSE, GONE = 0x9, 0x8, -1


async def test_data_postpones_the_heartbeat_and_an_unanswered_ping_ends_the_session(
    proxy_factory: ProxyFactory,
) -> None:
    heartbeat = 1.0
    proxy = await proxy_factory(heartbeat=heartbeat)
    client = await RawClient.connect(proxy.stream_url(proxy.issue_token("ida")))
    opcodes: list[int] = []

    async def read_all() -> None:
        while True:
            opcode, _ = await client.frame()
            opcodes.append(opcode)
            if opcode in (CLOSE, GONE):
                return

    reading = asyncio.create_task(read_all())
    try:
        # Busy for three heartbeats: a frame every 0.1 s, so never a ping.
        for _ in range(30):
            client.send_text(json.dumps({"type": "some_future_message"}))
            await asyncio.sleep(0.1)
        assert PING not in opcodes
        # Then idle: a ping comes; unanswered, the proxy ends the session.
        await wait_for(lambda: PING in opcodes, what="a ping")
        await asyncio.wait_for(reading, WAIT)
        assert opcodes[-1] in (CLOSE, GONE)
        await wait_for(lambda: proxy.service is not None and not proxy.service.relays)
    finally:
        reading.cancel()
        client.close()


async def test_a_client_answering_pings_stays_connected(proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(heartbeat=0.3)
    client = await RawClient.connect(proxy.stream_url(proxy.issue_token("jay")))
    pings = 0
    try:
        while pings < 3:  # idle: pinged, and each ping answered
            opcode, payload = await asyncio.wait_for(client.frame(), WAIT)
            assert opcode == PING, opcode
            pings += 1
            client.send_frame(0xA, payload)
        client.send_text(json.dumps({"type": "prompt", "prompt": "Noir", "enhance_prompt": False}))
        while True:
            opcode, payload = await asyncio.wait_for(client.frame(), WAIT)
            if opcode == PING:
                client.send_frame(0xA, payload)
            elif json.loads(payload).get("type") == "prompt_ack":
                break
        assert proxy.service is not None and proxy.service.metrics.sessions_total == 1
    finally:
        client.close()


# ---- a close that does not finish ----------------------------------------------------------------


async def end_a_session_whose_client_does_not_read(
    proxy: ProxyServer, upstream: Upstream, end: str
) -> str:
    """A client that stops reading while the upstream floods it, so that the proxy's close to
    it waits for a buffer that never drains; then the session is ended (``end``: the client's
    malformed frame, the same with the closing task cancelled, the proxy stopping). The reason
    it ended with."""
    big = "x" * 512 * 1024

    async def flood(ws: web.WebSocketResponse, text: str) -> None:
        if json.loads(text).get("type") == "flood":
            for _ in range(64):  # 32 MB: more than the socket buffers on the way hold
                await ws.send_str(json.dumps({"type": "blob", "data": big}))

    upstream.on_frame = flood
    client = await RawClient.connect(proxy.stream_url(proxy.issue_token("kim")))
    try:
        client.send_text(json.dumps({"type": "flood"}))  # and never read
        await wait_for(lambda: proxy.service is not None and proxy.service.relays)
        relay = only_relay(proxy)
        await wait_for(lambda: buffered(relay.client) > 0, what="the client's buffer to fill")
        if end == "proxy_stop":
            await asyncio.wait_for(proxy.astop(), WAIT)
        else:
            client.send_text("not json")  # refused with 4008: the close cannot be written
            await wait_for(lambda: relay.ending is not None, what="the refusal")
            if end == "cancelled":  # e.g. a server shutting down cancels its tasks
                [closing] = relay._background
                await asyncio.sleep(0.2)
                closing.cancel()
            assert proxy.service is not None
            service = proxy.service
            await wait_for(lambda: not service.relays, WAIT, "the session's end")
        assert relay.ending is not None
        return relay.ending.reason
    finally:
        client.close()


@pytest.mark.parametrize(
    ("end", "reason"),
    [("refusal", "malformed_frame"), ("cancelled", "malformed_frame"), ("proxy_stop", "shutdown")],
)
async def test_a_close_that_does_not_finish_is_given_up_cleanly(
    end: str, reason: str, upstream: Upstream, proxy_factory: ProxyFactory
) -> None:
    """The session still ends (its connections dropped after ``close_timeout`` + 1 s, when the
    task closing it is cancelled, or when the proxy stops), and asyncio reports no future whose
    exception nobody retrieved (a cancelled close left one behind, logged at level error, when
    the relay waited on ``wait_for(gather(...))``)."""
    reports: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reports.append(context))
    try:
        proxy = await proxy_factory(upstream_url=upstream.url, api_key="dct_test_key")
        assert await end_a_session_whose_client_does_not_read(proxy, upstream, end) == reason
        await proxy.astop()
        for _ in range(3):  # a future's unretrieved exception is reported when it is freed
            gc.collect()
            await asyncio.sleep(0)
        unretrieved = [r for r in reports if "never retrieved" in str(r.get("message"))]
        assert not unretrieved, unretrieved
    finally:
        loop.set_exception_handler(previous)
