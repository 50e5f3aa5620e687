"""A server that sends malformed frames: the client reports them and carries on.

The emulator never misbehaves this way, so this test runs a small misbehaving WebSocket server
on loopback that speaks just enough of the protocol.
"""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.server import ServerConnection, serve

import decart_widget as dw

GARBAGE = ["not json at all", "[1, 2, 3]", '{"no": "type"}', '{"type": "prompt_ack", "prompt": 5}']


async def test_malformed_frames_are_reported_and_the_session_goes_on() -> None:
    offers: list[str] = []

    async def handler(socket: ServerConnection) -> None:
        initial = json.loads(await socket.recv())
        for frame in GARBAGE:
            await socket.send(frame)
        await socket.send(json.dumps({"type": "some_future_message", "x": 1}))  # ignored
        await socket.send(
            json.dumps({"type": "prompt_ack", "prompt": initial["prompt"], "success": True})
        )
        offer = json.loads(await socket.recv())
        offers.append(offer["type"])
        # Ending with a permanent error proves the valid frames after the garbage were handled.
        await socket.send(json.dumps({"type": "error", "error": "Invalid API key"}))
        await socket.close(4001, "invalid_api_key")

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        backend = dw.Decart(
            api_key="dct_test",
            api_url=f"http://127.0.0.1:{port}",
            realtime_url=f"ws://127.0.0.1:{port}",
        )
        session = dw.RealtimeSession(
            model="lucy-2.1", prompt="anime", backend=backend, transport="webrtc"
        )
        errors: list[dw.DecartError] = []
        session.on("error", errors.append)
        with pytest.raises(dw.AuthenticationError, match="Invalid API key"):
            await session._start(timeout=20)
    protocol_errors = [e for e in errors if isinstance(e, dw.ProtocolError)]
    assert len(protocol_errors) == len(GARBAGE)
    assert "not valid JSON" in str(protocol_errors[0])
    assert offers == ["offer"]
    assert session.connection_state == "disconnected"
