"""Test kit for the Gen-B (LiveKit) control channel tests (no tests here).

* `StandInRooms`: a room server that opens no media, so the control channel's reactions to the
  room's states (``connected``, ``failed``, ``left``) can be driven exactly, including the ones
  real clients cannot provoke on demand (a media failure). It stands in for
  `decart_widget.emulator.livekit` only in `test_emulator_gen_b_control.py`; every test that
  needs a real room uses the real one with LiveKit's own client.
* `join`: the Gen-B handshake as a client does it, on a `StreamClient`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import websockets
from test_emulator_kit import WAIT, StreamClient

from decart_widget.emulator import Emulator
from decart_widget.emulator.effects import Effect
from decart_widget.protocol.urls import build_stream_url


class StandInRoom:
    def __init__(
        self, name: str, on_state: Callable[[str], None], effect: Callable[[], Effect | None]
    ) -> None:
        self.name = name
        self.effect = effect
        self.closed: str | None = None
        self._on_state = on_state
        self._loop = asyncio.get_running_loop()

    def user_token(self) -> str:
        return f"stand-in-token-for-{self.name}"

    async def close(self, reason: str = "") -> None:
        self.closed = reason

    def report(self, state: str) -> None:
        """Report a media state as the real room would (thread-safe)."""
        self._loop.call_soon_threadsafe(self._on_state, state)


class StandInRooms:
    def __init__(self) -> None:
        self.rooms: dict[str, StandInRoom] = {}

    def open_room(
        self,
        session_id: str,
        *,
        effect: Callable[[], Effect | None],
        on_frame_received: Callable[[], None],
        on_frame_sent: Callable[[], None],
        on_state: Callable[[str], None],
        ttl_seconds: float = 600,
    ) -> StandInRoom:
        room = StandInRoom(f"room-{session_id}", on_state, effect)
        self.rooms[session_id] = room
        return room


def with_stand_in(emu: Emulator) -> StandInRooms:
    rooms = StandInRooms()
    emu._services.rooms = rooms
    return rooms


async def connect(
    emu: Emulator,
    *,
    early: bool = False,
    api_key: str | None = None,
    origin: str | None = None,
    model: str = "lucy-2.1",
) -> StreamClient:
    """A control socket as Decart's SDKs open it (``early``: as the Python SDK does)."""
    url = build_stream_url(emu.realtime_url, api_key or emu.api_key, model)
    if early:
        url += "&livekit_early_room_info=true"
    headers = {"Origin": origin} if origin is not None else None
    ws = await websockets.connect(
        url, additional_headers=headers, proxy=None, max_size=None, open_timeout=WAIT
    )
    return StreamClient(ws)


async def join(client: StreamClient, **fields: Any) -> dict[str, Any]:
    """Send ``livekit_join`` (with ``fields``) and wait for the room info."""
    await client.send({"type": "livekit_join", **fields})
    return await client.expect("livekit_room_info")
