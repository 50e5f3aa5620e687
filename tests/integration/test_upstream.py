"""`decart_widget._upstream` against real WebSocket servers on loopback: the settings every Python
adapter opens the service with, and the reasons a refused open is reported with."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

import decart_widget as dw
from decart_widget import _upstream
from decart_widget.protocol._constants import MAX_FRAME_BYTES
from decart_widget.protocol._errors import classify, is_permanent

KEY = "dct_live_supersecret1234"


AGENTS: list[str | None] = []


def refuse(connection: ServerConnection, request: Request) -> Response | None:
    AGENTS.append(request.headers.get("User-Agent"))
    if "refuse" in request.path:
        return connection.respond(401, "invalid api key\n")
    return None


async def echo(connection: ServerConnection) -> None:
    async for frame in connection:
        await connection.send(frame)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with serve(echo, "127.0.0.1", 0, process_request=refuse, max_size=None) as running:
        yield running


def url_of(server: Server, path: str) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"ws://{host}:{port}{path}?api_key={KEY}&model=lucy-2.1"


async def test_open_upstream_carries_a_large_image_frame_and_names_itself(server: Server) -> None:
    AGENTS.clear()
    socket_ = await _upstream.open_upstream(url_of(server, "/v1/stream"), user_agent="tester/1")
    try:
        frame = "x" * (14 * 1024 * 1024)  # a 10 MiB image as base64 is ~13.4 MB
        await socket_.send(frame)
        assert await asyncio.wait_for(socket_.recv(), 30) == frame
    finally:
        await socket_.close()
    assert AGENTS == ["tester/1"]


async def test_a_frame_over_the_limit_closes_the_socket(server: Server) -> None:
    socket_ = await _upstream.open_upstream(url_of(server, "/v1/stream"))
    try:
        await socket_.send("x" * (MAX_FRAME_BYTES + 1))
        with pytest.raises(Exception, match=r"1009|too big"):
            await asyncio.wait_for(socket_.recv(), 30)
    finally:
        await socket_.close()


async def test_an_http_refusal_becomes_a_permanent_reason_without_the_key(server: Server) -> None:
    with pytest.raises(Exception) as info:
        await _upstream.open_upstream(url_of(server, "/refuse"))
    reason = _upstream.connect_failure(info.value)
    assert reason.startswith("HTTP 401: invalid api key")
    assert is_permanent(reason) and isinstance(classify(reason), dw.AuthenticationError)
    assert "supersecret" not in reason


async def test_nothing_listening_is_a_transient_reason_without_the_key() -> None:
    with socket.socket() as held:  # bound, never listening: refused, and no one else can take it
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        with pytest.raises(OSError) as info:
            await _upstream.open_upstream(f"ws://127.0.0.1:{port}/v1/stream?api_key={KEY}")
    reason = _upstream.connect_failure(info.value)
    assert "supersecret" not in reason and not is_permanent(reason)


def test_failed_acks_become_typed_errors() -> None:
    assert isinstance(_upstream.ack_error(None, timed_out=True), dw.AckTimeout)
    assert isinstance(_upstream.ack_error(None), dw.ModerationError)
    assert isinstance(_upstream.ack_error("Prompt rejected"), dw.ModerationError)
    assert isinstance(_upstream.ack_error("Insufficient credits"), dw.InsufficientCredits)
    assert isinstance(_upstream.ack_error("invalid api key"), dw.AuthenticationError)
