"""`RealtimeSession.connect(timeout=...)` bounds the whole call, cleanup included, against
servers that stay silent (issue 14's probe: ``timeout=8`` raised after 13 s, saying "within 8 s",
because closing the socket then waited 5 s more for a close reply that never came).

The servers are raw TCP on loopback: one completes the WebSocket upgrade and then never sends a
byte (nor answers the close), one accepts the connection and never answers the upgrade."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import decart_widget as dw
from decart_widget.protocol._session import RetryPolicy

TIMEOUT = 2.0
#: What the call may take beyond ``timeout``: scheduling only, far below the old 5 s close wait.
SLACK = 0.75
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _upgrade_then_silence(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    key = ""
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
    )
    await writer.drain()
    while await reader.read(65536):  # read (and ignore) everything, answer nothing
        pass


async def _accept_then_silence(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):
        pass


@contextlib.asynccontextmanager
async def silent_server(handler: Handler) -> AsyncIterator[dw.Decart]:
    connections: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await handler(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield dw.Decart(
            api_key="dct_test_silent",
            api_url=f"http://127.0.0.1:{port}",
            realtime_url=f"ws://127.0.0.1:{port}",
        )
    finally:
        for writer in connections:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("handler", "says"),
    [
        (_upgrade_then_silence, "the socket opened but the service never answered"),
        (_accept_then_silence, "the socket did not open"),
    ],
    ids=["upgraded-then-silent", "never-upgraded"],
)
async def test_connect_raises_within_its_timeout_with_a_true_message(
    handler: Handler, says: str
) -> None:
    async with silent_server(handler) as backend:
        started = time.monotonic()
        with pytest.raises(dw.ConnectionLost) as caught:
            await dw.RealtimeSession.connect(
                backend=backend, prompt="Anime", timeout=TIMEOUT, retry=RetryPolicy(delays=())
            )
        elapsed = time.monotonic() - started
    message = str(caught.value)
    assert elapsed < TIMEOUT + SLACK, f"took {elapsed:.2f} s for timeout={TIMEOUT:g}: {message}"
    assert f"within {TIMEOUT:g} s" in message and says in message, message
    assert "dct_test_silent" not in message
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not [t for t in leftover if "decart" in t.get_name()], leftover
