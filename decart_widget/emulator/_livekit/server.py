"""`RoomServer`: the rooms of one emulator and LiveKit's client signal endpoints on its app.

Routes (on the emulator's own aiohttp app and port):

* ``GET /rtc`` -- the signal WebSocket. The access token comes as ``?access_token=`` (LiveKit's
  JS client) or ``Authorization: Bearer`` (its Rust-based clients, PyPI ``livekit``) and is
  checked *before* the upgrade, answering as LiveKit's server does: 401 with the reason as the
  body for a missing, malformed, forged or expired token or one without a ``roomJoin`` grant
  (``invalid authorization token: ...``, ``invalid API key``, ``permissions denied``), 404
  ``requested room does not exist`` for a room that is not (or no longer) open.
* ``GET /rtc/validate`` -- the same checks without the upgrade: 200 ``success`` or the refusal.
  The clients call it after a failed upgrade to learn why.
* ``/rtc/v1`` (LiveKit's single-peer-connection signalling) is not served: it answers 404, on
  which both current clients fall back to ``/rtc`` (two peer connections).

The validate answers carry ``Access-Control-Allow-Origin: *``, as LiveKit's server's do: the JS
client reads them with ``fetch`` from the page's origin (a notebook's, not the emulator's), and a
404 it cannot read would not make it fall back from ``/rtc/v1``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from livekit.protocol import rtc as proto

from ...protocol._urls import url_host
from . import tokens
from .room import DEFAULT_FRAME_SIZE, EffectSource, Room
from .signal import SignalSocket

log = logging.getLogger("decart_widget.emulator.livekit.server")

ROOM_NOT_FOUND = "requested room does not exist"
#: Largest signal frame accepted (a client offer with many candidates is a few kB).
MAX_SIGNAL_BYTES = 1024 * 1024
#: Seconds a closing signal socket waits for the client's close frame before dropping the
#: connection (aiohttp waits 10 s by default): a page torn down may never answer, and the room,
#: and with it the session's end, would wait for it.
SIGNAL_CLOSE_WAIT = 1.0


def livekit_url(host: str, port: int, *, secure: bool = False) -> str:
    """The ``livekit_url`` for clients: the emulator's base WebSocket URL (they add ``/rtc``)."""
    return f"{'wss' if secure else 'ws'}://{url_host(host)}:{port}"


def livekit_url_for(request: web.BaseRequest) -> str:
    """The ``livekit_url`` as seen by the client of ``request`` (its ``Host``, its scheme)."""
    return f"{'wss' if request.secure else 'ws'}://{request.host}"


def _token_of(request: web.BaseRequest) -> str | None:
    token = request.query.get("access_token")
    if token:
        return token
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip() or None
    return None


class RoomServer:
    """Every room of one emulator, and the routes that let LiveKit clients join them."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self.node_id = "ND_" + secrets.token_hex(6)
        self.rooms: dict[str, Room] = {}
        self._serving: set[asyncio.Task[None]] = set()

    @property
    def secret(self) -> bytes:
        """The key room tokens are signed with (tests mint their own tokens with it)."""
        return self._secret

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/rtc", self._signal)
        app.router.add_get("/rtc/validate", self._validate)
        app.router.add_get("/rtc/v1/validate", _v1_not_served)

    def open_room(
        self,
        session_id: str,
        *,
        effect: EffectSource,
        on_frame_received: Callable[[], None],
        on_frame_sent: Callable[[], None],
        on_state: Callable[[str], None],
        ttl_seconds: float = 600,
        frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE,
        ice_servers: Sequence[Mapping[str, Any]] = (),
    ) -> Room:
        """Open the room of one session (call on the emulator's loop); ``ice_servers`` go to
        the room's peers and to the user in its join response."""
        name = f"room-{session_id}"
        if name in self.rooms:
            raise ValueError(f"session {session_id!r} already has a room")
        room = Room(
            name,
            secret=self._secret,
            node_id=self.node_id,
            effect=effect,
            on_frame_received=on_frame_received,
            on_frame_sent=on_frame_sent,
            on_state=on_state,
            ttl_seconds=ttl_seconds,
            frame_size=frame_size,
            ice_servers=ice_servers,
            on_closed=self._forget,
        )
        self.rooms[name] = room
        log.info("room %s opened", name)
        return room

    def _forget(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]

    async def close(self) -> None:
        """Close every room (the users hear "server shutdown") and end their connections."""
        await asyncio.gather(*(room.shutdown() for room in list(self.rooms.values())))
        if self._serving:
            await asyncio.wait(set(self._serving), timeout=5.0)

    # ---- routes ---------------------------------------------------------------------------------

    def _admit(self, request: web.BaseRequest) -> tuple[Room, tokens.Grant] | web.Response:
        token = _token_of(request)
        if token is None:
            return web.Response(status=401, text=tokens.PERMISSION_DENIED)
        try:
            grant = tokens.verify(token, self._secret)
        except tokens.TokenRefused as exc:
            log.info("refused a room token: %s", exc.message)
            return web.Response(status=exc.status, text=exc.message)
        room = self.rooms.get(grant.room)
        if room is None or room.closed:
            return web.Response(status=404, text=ROOM_NOT_FOUND)
        if grant.identity != room.user_identity:
            return web.Response(status=401, text=tokens.PERMISSION_DENIED)
        return room, grant

    async def _validate(self, request: web.Request) -> web.Response:
        admitted = self._admit(request)
        response = admitted if isinstance(admitted, web.Response) else web.Response(text="success")
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    async def _signal(self, request: web.Request) -> web.StreamResponse:
        admitted = self._admit(request)
        if isinstance(admitted, web.Response):
            return admitted
        room, grant = admitted
        ws = web.WebSocketResponse(
            max_msg_size=MAX_SIGNAL_BYTES,
            compress=False,
            heartbeat=None,
            timeout=SIGNAL_CLOSE_WAIT,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="expected a WebSocket upgrade")
        await ws.prepare(request)
        socket = SignalSocket(ws, request.transport)
        if request.query.get("reconnect") == "1":
            # A resume would need an ICE restart, which aiortc lacks: ask for a full rejoin.
            log.info("room %s: a resume was asked; asking for a full reconnect", room.name)
            await socket.send(
                proto.SignalResponse(
                    leave=proto.LeaveRequest(
                        can_reconnect=True, action=proto.LeaveRequest.RECONNECT
                    )
                )
            )
            await socket.close()
            return ws
        task = asyncio.current_task()
        if task is not None:
            self._serving.add(task)
        try:
            await room.serve(socket, grant)
        finally:
            if task is not None:
                self._serving.discard(task)
        return ws


async def _v1_not_served(_request: web.Request) -> web.Response:
    return web.Response(
        status=404, text="404 page not found", headers={"Access-Control-Allow-Origin": "*"}
    )
