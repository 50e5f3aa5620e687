"""Text frames relayed inside the socket's read, without a task wake-up per frame.

aiohttp hands every WebSocket message to a queue that a task awaits: per relayed frame a future
resolved, a task woken, ``receive()``'s checks, and ``send_str()``'s coroutine. At a thousand
sessions that machinery cost more than the relay's own work (issue 14). Here the queue of each
relayed socket (`FastQueue`) offers a text message to a synchronous hook first (`TextHook`),
called from aiohttp's frame parser inside ``data_received``; the hook inspects the frame and
writes it to the other socket at once (`write_text_now`). Everything else takes aiohttp's
ordinary path: control frames (close, ping, pong), binary frames, errors, and any text frame the
hook declines (a frame that must wait for an await, e.g. a tick written to the ledger before it
is forwarded). Order is kept: the hook is offered a message only when nothing is queued ahead of
it and the task that reads the queue holds no message (``held``).

aiohttp's parser (its C reader: UTF-8 and frame checks, size limits) is kept; only the queue
behind it changes. The sockets install their queue where aiohttp creates it (`ClientSocket`,
`UpstreamSocket`). If an aiohttp release changes those internals, `fast_queue` finds no
`FastQueue` and the relay uses aiohttp's ordinary path for every frame (slower, same behaviour).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Union

import aiohttp
from aiohttp import WSMsgType, web
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp._websocket.writer import WebSocketWriter

from . import codes

#: Returns True when it took the text frame (forwarded, dropped or refused), False to leave it
#: to the task that reads the queue.
TextHook = Callable[[str], bool]
#: Either end of a relay.
Socket = Union["web.WebSocketResponse[Any]", "aiohttp.ClientWebSocketResponse[Any]"]
_TEXT = WSMsgType.TEXT
_OP_TEXT = int(WSMsgType.TEXT)
#: The writer's synchronous frame writer (aiohttp >= 3.11); without it, no fast path.
AVAILABLE = hasattr(WebSocketWriter, "_write_websocket_frame")
#: aiohttp's heartbeat timer re-arms itself from `_heartbeat_when` (aiohttp >= 3.11).
_LAZY_HEARTBEAT = hasattr(web.WebSocketResponse, "_flush_heartbeat_reset")


class FastQueue(WebSocketDataQueue):
    """aiohttp's WebSocket message queue, offering text messages to `hook` first."""

    def __init__(self, protocol: Any, limit: int, *, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(protocol, limit, loop=loop)
        self.hook: TextHook | None = None
        #: The task reading this queue holds a message it has not finished with.
        self.held = False

    def feed_data(self, data: Any, size: int) -> None:
        hook = self.hook
        if (
            hook is not None
            and data[0] is _TEXT
            and not self.held
            and not self._buffer
            and hook(data[1])
        ):
            return
        super().feed_data(data, size)


def _fast_queue_like(queue: WebSocketDataQueue) -> FastQueue:
    """A `FastQueue` for the same connection as ``queue``, which aiohttp just made."""
    return FastQueue(queue._protocol, queue._limit // 2, loop=asyncio.get_running_loop())


def fast_queue(ws: Socket) -> FastQueue | None:
    """The socket's `FastQueue`, or None when aiohttp's own queue is in place."""
    queue = getattr(ws, "_reader", None)
    return queue if AVAILABLE and isinstance(queue, FastQueue) else None


class ClientSocket(web.WebSocketResponse):
    """The client's WebSocket: an oversized frame closes it with 4009 and a reason (aiohttp
    itself would send a bare 1009), and its messages go through a `FastQueue`.

    aiohttp's ``_post_start`` assigns a fresh queue to ``_reader`` and then builds the frame
    parser on ``self._reader``; the property swaps the queue for a `FastQueue` before the
    parser is built, so no byte has been read yet.
    """

    def __init__(self, *, max_frame_bytes: int, **kwargs: Any) -> None:
        self._fast_reader: WebSocketDataQueue | None = None
        super().__init__(max_msg_size=max_frame_bytes, **kwargs)
        self.max_frame_bytes = max_frame_bytes

    @property
    def _reader(self) -> WebSocketDataQueue | None:
        return self._fast_reader

    @_reader.setter
    def _reader(self, queue: WebSocketDataQueue | None) -> None:
        if queue is not None and type(queue) is WebSocketDataQueue:
            queue = _fast_queue_like(queue)
        self._fast_reader = queue

    def _on_data_received(self) -> None:
        # aiohttp schedules a callback per read to push the next heartbeat ping back; moving
        # the deadline is enough, since its timer re-arms itself when it fires before
        # `_heartbeat_when`. While a ping awaits its answer, aiohttp's own handling runs.
        loop, heartbeat = self._loop, self._heartbeat
        if _LAZY_HEARTBEAT and self._pong_response_cb is None and loop and heartbeat:
            self._heartbeat_when = loop.time() + heartbeat
        else:
            super()._on_data_received()

    async def close(
        self, *, code: int = aiohttp.WSCloseCode.OK, message: bytes = b"", drain: bool = True
    ) -> bool:
        if code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG and not message:
            code = codes.FRAME_TOO_BIG
            message = f"frame too big (limit {self.max_frame_bytes} bytes)".encode()
        return await super().close(code=code, message=message, drain=drain)


class UpstreamSocket(aiohttp.ClientWebSocketResponse):
    """The upstream WebSocket (``ws_response_class`` of the proxy's HTTP session), its messages
    going through a `FastQueue`.

    aiohttp's ``ws_connect`` makes the queue, passes it here, then builds the frame parser on
    it and installs the parser on the connection (which feeds it what already arrived). The
    ``_reader`` property swaps the queue for a `FastQueue`; the ``_parser`` property swaps the
    parser, at its assignment (before it is installed: no byte has been read yet), for one
    built on that queue with the same size limit (`max_frame_bytes`, set by the proxy).
    """

    max_frame_bytes = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._fast_reader: WebSocketDataQueue | None = None
        self._plain_reader: WebSocketDataQueue | None = None
        self._fast_parser: WebSocketReader | None = None
        self._parser_swapped = False
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]  # aiohttp's attribute is never None on this side
    def _reader(self) -> WebSocketDataQueue | None:
        return self._fast_reader

    @_reader.setter
    def _reader(self, queue: WebSocketDataQueue | None) -> None:
        self._plain_reader = queue
        if queue is not None and type(queue) is WebSocketDataQueue:
            queue = _fast_queue_like(queue)
        self._fast_reader = queue

    @property
    def _parser(self) -> WebSocketReader | None:
        return self._fast_parser

    @_parser.setter
    def _parser(self, parser: WebSocketReader | None) -> None:
        queue = self._fast_reader
        if parser is not None and not self._parser_swapped and isinstance(queue, FastQueue):
            self._parser_swapped = True
            parser = WebSocketReader(queue, self.max_frame_bytes, compress=False, decode_text=True)
        self._fast_parser = parser

    def fix_payload(self) -> None:
        """Point the connection's end-of-stream and error reports at the `FastQueue` too
        (``ws_connect`` gave the connection the queue it made)."""
        connection = self._conn
        protocol = connection.protocol if connection is not None else None
        queue = self._fast_reader
        if isinstance(queue, FastQueue) and protocol is not None and self._parser_swapped:
            protocol._payload = queue  # type: ignore[assignment]
        elif isinstance(queue, FastQueue):  # the parser reads into aiohttp's queue: read it
            self._fast_reader = self._plain_reader


def upstream_socket_class(max_frame_bytes: int) -> type[UpstreamSocket]:
    """`UpstreamSocket` with the proxy's frame size limit."""
    return type("UpstreamSocket", (UpstreamSocket,), {"max_frame_bytes": max_frame_bytes})


def buffered(ws: Socket) -> int:
    """Bytes waiting in the socket's send buffer (0 when it has no transport)."""
    writer = ws._writer
    transport = writer.transport if writer is not None else None
    return transport.get_write_buffer_size() if transport is not None else 0


def congested(ws: Socket) -> bool:
    """The socket's send buffer is above its high-water mark (asyncio's 64 KiB): its transport
    paused the writer (aiohttp's ``send_str`` would wait for it to drain)."""
    writer = ws._writer
    return writer is not None and bool(writer.protocol._paused)


def write_text_now(ws: Socket, text: str) -> None:
    """Write a text frame without awaiting (masked on the client's leg, as aiohttp does).

    Raises `ConnectionResetError` when the socket is closing or closed, as ``send_str`` does.
    The caller checks `buffered` first: this never waits for the buffer to drain.
    """
    writer = ws._writer
    if writer is None or ws.closed or writer._closing:
        raise ConnectionResetError("Cannot write to closing transport")
    writer._write_websocket_frame(text.encode("utf-8"), _OP_TEXT, 0)
