"""Test kit for the Gen-B (LiveKit) control channel tests (no tests here).

* `StandInRooms`: a room server that opens no media, so the control channel's reactions to the
  room's states (``connected``, ``failed``, ``left``) can be driven exactly, including the ones
  real clients cannot provoke on demand (a media failure). It stands in for
  `decart_widget.emulator._livekit` only in `test_emulator_gen_b_control.py`; every test that
  needs a real room uses the real one with LiveKit's own client.
* `connect` / `join`: the Gen-B handshake as a client does it, on a `StreamClient`.
* `LiveKitUser`: the user's side of the room with LiveKit's own Python client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import websockets
from test_emulator_kit import RGB, WAIT, StreamClient, centre

from decart_widget.emulator import Emulator
from decart_widget.emulator._effects import Effect
from decart_widget.protocol._urls import build_stream_url


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
        frame_size: tuple[int, int] = (1280, 720),
        ice_servers: object = (),
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


class LiveKitUser:
    """The user's side of a Gen-B room, with LiveKit's own Python client (PyPI ``livekit``).

    `join` connects to the room of a ``livekit_room_info`` and publishes a paced solid-colour
    camera track (set ``color`` at any time); the video of the ``inference-server-*``
    participant is read as it comes, `frame_where` waits for one that matches.
    """

    def __init__(
        self, color: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (320, 180)
    ) -> None:
        from livekit import rtc

        self.rtc = rtc
        self.room = rtc.Room()
        self.color = color
        self.size = size
        self.inference_identity: str | None = None
        self.disconnected = asyncio.Event()
        self._latest: RGB | None = None
        self._count = 0
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    async def join(self, info: dict[str, Any]) -> None:
        rtc = self.rtc

        @self.room.on("track_subscribed")
        def _on_track(track: Any, publication: Any, participant: Any) -> None:
            if participant.identity.startswith("inference-server-") and (
                track.kind == rtc.TrackKind.KIND_VIDEO
            ):
                self.inference_identity = participant.identity
                self._tasks.append(asyncio.ensure_future(self._read(track)))

        @self.room.on("disconnected")
        def _on_disconnected(*_: Any) -> None:
            self.disconnected.set()

        await asyncio.wait_for(self.room.connect(info["livekit_url"], info["token"]), WAIT)
        width, height = self.size
        source = rtc.VideoSource(width, height)
        track = rtc.LocalVideoTrack.create_video_track("camera", source)
        self._tasks.append(asyncio.ensure_future(self._publish(source)))
        # As Decart's Python SDK publishes: one H.264 camera track (no simulcast).
        options = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_CAMERA, video_codec=rtc.VideoCodec.H264, simulcast=False
        )
        await asyncio.wait_for(self.room.local_participant.publish_track(track, options), WAIT)

    async def _publish(self, source: Any) -> None:
        width, height = self.size
        rgba = np.full((height, width, 4), 255, np.uint8)
        kind = self.rtc.VideoBufferType.RGBA
        while True:
            rgba[..., :3] = self.color
            frame = self.rtc.VideoFrame(width, height, kind, rgba.tobytes())
            source.capture_frame(frame)
            await asyncio.sleep(1 / 30)

    async def _read(self, track: Any) -> None:
        stream = self.rtc.VideoStream(track, format=self.rtc.VideoBufferType.RGB24)
        try:
            async for event in stream:
                frame = event.frame
                pixels = np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 3)
                async with self._changed:
                    self._latest = pixels.copy()
                    self._count += 1
                    self._changed.notify_all()
        finally:
            await stream.aclose()

    async def frame_where(self, predicate: Callable[[RGB], bool], timeout: float = WAIT) -> RGB:
        """The first frame from now on from the inference participant that matches."""

        async def scan() -> RGB:
            seen = [self._count]
            while True:
                async with self._changed:
                    await self._changed.wait_for(lambda: self._count > seen[0])
                    seen[0] = self._count
                    pixels = self._latest
                assert pixels is not None
                if predicate(pixels):
                    return pixels

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            last = None if self._latest is None else centre(self._latest)
            raise AssertionError(
                f"no matching frame from the inference participant within {timeout} s "
                f"({self._count} frames, last centre {last})"
            ) from None

    async def leave(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.room.disconnect()
