"""Helpers for Gen-B room tests: rooms opened on a running emulator, and LiveKit's Python SDK
(PyPI ``livekit``) as the user: it publishes solid-colour numpy frames and reads the
``inference-server-*`` participant's video as numpy arrays."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from livekit import rtc

from decart_widget.emulator import Emulator
from decart_widget.emulator._effects import Effect, build_effect
from decart_widget.emulator._livekit import Room, RoomServer, livekit_url

T = TypeVar("T")
RGB = npt.NDArray[np.uint8]


async def on_emulator(emu: Emulator, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on the emulator's loop (rooms live there) and await its result."""
    loop = emu._thread._loop  # the test reaches into the emulator's loop thread on purpose
    assert loop is not None
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(factory(), loop))


def room_server(emu: Emulator) -> RoomServer:
    rooms = emu._services.rooms
    assert isinstance(rooms, RoomServer)
    return rooms


@dataclass
class OpenRoom:
    """A room opened as the control channel would, with what it reported."""

    room: Room
    url: str
    prompt: str | None = None
    states: list[str] = field(default_factory=list)
    received: int = 0
    sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _effect: Effect | None = None

    def set_prompt(self, prompt: str | None) -> None:
        self._effect = build_effect(prompt)

    def effect(self) -> Effect | None:
        return self._effect


async def open_room(
    emu: Emulator, session_id: str = "s1", frame_size: tuple[int, int] = (320, 180), **kw: Any
) -> OpenRoom:
    opened, create = _room_opener(emu, session_id, frame_size, **kw)
    opened.room = await on_emulator(emu, create)
    return opened


def open_room_blocking(
    emu: Emulator, session_id: str = "s1", frame_size: tuple[int, int] = (320, 180), **kw: Any
) -> OpenRoom:
    """`open_room` for synchronous tests (the browser tests)."""
    opened, create = _room_opener(emu, session_id, frame_size, **kw)
    opened.room = emu._thread.call(create)
    return opened


def close_room_blocking(emu: Emulator, opened: OpenRoom, reason: str = "") -> None:
    async def close() -> None:
        await opened.room.close(reason)

    emu._thread.call(close)


def _room_opener(
    emu: Emulator, session_id: str, frame_size: tuple[int, int], **kw: Any
) -> tuple[OpenRoom, Callable[[], Coroutine[Any, Any, Room]]]:
    holder: list[OpenRoom] = []

    def received() -> None:
        holder[0].received += 1

    def sent() -> None:
        holder[0].sent += 1

    def state(value: str) -> None:
        holder[0].states.append(value)

    async def create() -> Room:
        return room_server(emu).open_room(
            session_id,
            effect=lambda: holder[0].effect(),
            on_frame_received=received,
            on_frame_sent=sent,
            on_state=state,
            frame_size=frame_size,
            **kw,
        )

    opened = OpenRoom(room=None, url=livekit_url(emu.host, emu.port))  # type: ignore[arg-type]
    holder.append(opened)
    return opened, create


async def wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


class ColourCamera:
    """Publishes a solid colour (changeable) at ``fps`` through an `rtc.VideoSource`."""

    def __init__(self, width: int, height: int, colour: tuple[int, int, int], fps: int = 30):
        self.width, self.height, self.fps = width, height, fps
        self.source = rtc.VideoSource(width, height)
        self.track = rtc.LocalVideoTrack.create_video_track("camera", self.source)
        self.colour = colour
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        rgba = np.empty((self.height, self.width, 4), dtype=np.uint8)
        rgba[..., 3] = 255
        while True:
            rgba[..., :3] = self.colour
            frame = rtc.VideoFrame(
                self.width, self.height, rtc.VideoBufferType.RGBA, rgba.tobytes()
            )
            self.source.capture_frame(frame)
            await asyncio.sleep(1 / self.fps)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def publish_options(codec: rtc.VideoCodec.ValueType, simulcast: bool = False) -> Any:
    return rtc.TrackPublishOptions(
        source=rtc.TrackSource.SOURCE_CAMERA,
        simulcast=simulcast,
        video_codec=codec,
        video_encoding=rtc.VideoEncoding(max_framerate=30, max_bitrate=3_500_000),
    )


class InferenceView:
    """The newest frame of the ``inference-server-*`` participant's video, as RGB."""

    def __init__(self, room: rtc.Room) -> None:
        self.frames = 0
        self.subscriptions = 0
        self.latest: RGB | None = None
        self.identity: str | None = None
        self._fresh = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        room.on("track_subscribed", self._subscribed)
        for participant in room.remote_participants.values():
            for publication in participant.track_publications.values():
                if publication.track is not None:
                    self._subscribed(publication.track, publication, participant)

    def _subscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if track.kind != rtc.TrackKind.KIND_VIDEO:
            return
        if not participant.identity.startswith("inference-server-"):
            return
        self.identity = participant.identity
        self.subscriptions += 1
        if self._task is not None:  # subscribed again (a full reconnect): read the new track
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._read(track))

    async def _read(self, track: rtc.Track) -> None:
        stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGBA)
        try:
            async for event in stream:
                frame = event.frame
                rgba = np.frombuffer(frame.data, dtype=np.uint8).reshape(
                    frame.height, frame.width, 4
                )
                self.latest = np.ascontiguousarray(rgba[..., :3])
                self.frames += 1
                self._fresh.set()
        finally:
            await stream.aclose()

    async def frame_where(self, predicate: Callable[[RGB], bool], timeout: float = 20.0) -> RGB:
        """The first new frame satisfying ``predicate`` (TimeoutError with the last one seen)."""

        async def wait() -> RGB:
            while True:
                self._fresh.clear()
                await self._fresh.wait()
                frame = self.latest
                if frame is not None and predicate(frame):
                    return frame

        try:
            return await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            last = None if self.latest is None else self.latest.shape
            raise TimeoutError(f"no matching frame in {timeout} s (last: {last})") from None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
