"""LiveKit's signal framing: one protobuf ``SignalRequest``/``SignalResponse`` per binary frame.

LiveKit's server also speaks JSON text frames, which no current client uses: they are logged
and ignored here.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web
from google.protobuf.message import DecodeError
from livekit.protocol import rtc as proto

log = logging.getLogger("decart_widget.emulator.livekit.signal")


class SignalSocket:
    """A LiveKit client's signal WebSocket, as seen from the server."""

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None = None):
        self.ws = ws
        self._transport = transport

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def send(self, response: proto.SignalResponse) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_bytes(response.SerializeToString())
        except (ConnectionError, RuntimeError) as exc:
            log.debug("signal send failed: %s", exc)

    async def receive(self) -> proto.SignalRequest | None:
        """The next request; None once the socket is closed (or sent something unreadable)."""
        while True:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.BINARY:
                request = proto.SignalRequest()
                try:
                    request.ParseFromString(msg.data)
                except DecodeError as exc:
                    log.warning("unreadable signal request: %s", exc)
                    continue
                return request
            if msg.type == WSMsgType.TEXT:
                log.warning("a JSON signal frame: only protobuf signalling is emulated")
                continue
            return None

    def abort(self) -> None:
        """Drop the connection without a close frame, as a network loss would."""
        if self._transport is not None:
            self._transport.abort()

    async def close(self, code: int = 1000) -> None:
        if not self.ws.closed:
            await self.ws.close(code=code)
