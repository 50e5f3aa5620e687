"""`RealtimeSession`: the headless Python client (websockets signaling; a LiveKit room or an
aiortc peer connection for the media).

A thin adapter around the sans-I/O `SessionCore`: one task feeds it events (socket frames, media
state changes, user requests, deadlines) in order and carries out the actions it returns.
Slow actions (opening the socket, joining the room, building the peer) run as tasks that post
their outcome back as events, so timers keep firing while they run. The media actions go to the
session's media link, built once from ``_links.MEDIA_LINKS`` by the transport's name: `RoomLink`
(``transport="livekit"``, Gen-B, ``_livekit.py``) or `PeerLink` (``transport="webrtc"``, Gen-A,
``_webrtc.py``); the session only calls the `MediaLink` protocol (``_media.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import websockets
from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame
from websockets.asyncio.client import ClientConnection

from .._backends import Backend, default_backend
from .._ice import IceServersSource, validate_ice_servers
from .._recording import (
    DEFAULT_MAX_BYTES,
    check_max_bytes,
    check_record_fps,
    check_record_path,
    check_record_which,
    check_seconds,
)
from .._upstream import connect_failure, open_upstream
from ..images import image_bytes, to_base64
from ..models import DEFAULT_MODEL, RealtimeModel
from ..models import get as get_model
from ..protocol import messages
from ..protocol._constants import IMAGE_ACK_TIMEOUT, MEDIA_TRANSPORTS, PROMPT_ACK_TIMEOUT
from ..protocol._errors import ConnectionLost, DecartError, InvalidInput, ProtocolError
from ..protocol._session import (
    Action,
    AddRemoteCandidate,
    ApplyAnswer,
    ClosePeer,
    CloseSocket,
    ConnectionState,
    Emit,
    Fail,
    JoinRoom,
    OpenSocket,
    Resolve,
    RestartIce,
    RetryPolicy,
    Send,
    SessionCore,
    StartPeer,
    StateChanged,
)
from ..protocol._urls import build_stream_url, check_resolution, redact
from ._links import MEDIA_LINKS, require
from ._livekit import livekit_installed
from ._media import MediaAction, MediaLink
from ._recording import Recording, SessionRecordings
from ._sources import FrameSource, RGBFrame, make_track

if TYPE_CHECKING:
    from ..widget._session_view import SessionView

log = logging.getLogger("decart_widget.client.session")

Event: TypeAlias = Callable[[float], list[Action]]
Callback: TypeAlias = Callable[[Any], Any]
EVENTS = (
    "connection_change",
    "generation_tick",
    "error",
    "session_id",
    "generation_ended",
    "queue",
)
#: Of a `connect` timeout, the part kept for tearing down a start that failed (a quarter at most).
START_CLEANUP_SECONDS = 0.25
#: Frames kept per `frames()` reader before the oldest are dropped (stay live, never lag).
FRAME_BUFFER = 4
_DONE = object()


def _now() -> float:
    return time.monotonic()


def default_transport() -> str:
    """What ``transport=None`` means: ``"livekit"`` (Gen-B, what Decart's SDKs use) when LiveKit's
    Python SDK is installed (``pip install 'decart-widget[livekit]'``), else ``"webrtc"``."""
    return "livekit" if livekit_installed() else "webrtc"


def _choose_transport(transport: object) -> str:
    if transport is None:
        if not livekit_installed():
            log.info(
                "LiveKit's Python SDK is not installed: using transport='webrtc' "
                "(pip install 'decart-widget[livekit]' for Decart's current transport)"
            )
        return default_transport()
    if transport not in MEDIA_TRANSPORTS:
        known = " or ".join(repr(name) for name in MEDIA_TRANSPORTS)
        raise InvalidInput(f"transport must be {known} (or None: the default), got {transport!r}")
    require(str(transport))  # before anything (a video file, a track) is opened
    return str(transport)


class RealtimeSession:
    """A live session with the realtime service, from Python. Create it with `connect`."""

    def __init__(
        self,
        *,
        model: str | RealtimeModel = DEFAULT_MODEL,
        source: FrameSource = "synthetic",
        prompt: str | None = None,
        image: Any = None,
        enhance: bool = True,
        backend: Backend | None = None,
        fps: float | None = None,
        retry: RetryPolicy | None = None,
        prompt_ack_timeout: float = PROMPT_ACK_TIMEOUT,
        image_ack_timeout: float = IMAGE_ACK_TIMEOUT,
        transport: str | None = None,
        resolution: str | None = None,
        ice_servers: IceServersSource | None = None,
    ) -> None:
        self.model = get_model(model)
        if ice_servers is not None and not callable(ice_servers):
            ice_servers = validate_ice_servers(ice_servers)  # before a default backend starts
        self.backend = backend if backend is not None else default_backend()
        if prompt is not None and not isinstance(prompt, str):
            raise InvalidInput(f"prompt must be a string, got {type(prompt).__name__}")
        #: ``"livekit"`` (Gen-B: a LiveKit room) or ``"webrtc"`` (Gen-A: SDP over the socket)
        self.transport = _choose_transport(transport)
        #: the output resolution asked of the service (``resolution=``), None for its default
        self.resolution = check_resolution(resolution)
        encoded = None if image is None else to_base64(image_bytes(image))
        self._track = make_track(source, self.model, fps)
        self._owns_track = not isinstance(source, MediaStreamTrack)
        self._recordings = SessionRecordings(
            live=lambda: self._state in (ConnectionState.CONNECTED, ConnectionState.GENERATING),
            ended=lambda: self._ended.is_set(),
        )
        # the media link reads the source through a tap: recordings of the input see what is sent
        sent = self._recordings.tap_input(self._track)
        if ice_servers is None:
            ice_servers = list(getattr(self.backend, "ice_servers", ()))
        self._media: MediaLink = MEDIA_LINKS[self.transport](
            self, sent, self.model, float(fps or self.model.fps), ice_servers
        )
        self._core = SessionCore(
            prompt=prompt,
            image=encoded,
            enhance=enhance,
            retry=retry,
            prompt_ack_timeout=prompt_ack_timeout,
            image_ack_timeout=image_ack_timeout,
            transport=self.transport,
        )
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._callbacks: dict[str, list[Callback]] = {name: [] for name in EVENTS}
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._socket: ClientConnection | None = None
        self._socket_generation = 0
        self._readers: list[asyncio.Queue[object]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._state = ConnectionState.DISCONNECTED
        self._state_changed = asyncio.Event()
        self._final_error: DecartError | None = None
        self._socket_opened = False
        self._service_heard = False
        self._ended = asyncio.Event()
        self._batch_error: DecartError | None = None
        # Gen-B's queue: seconds spent in it, and since when it waits now (connect's timeout
        # does not count them)
        self._queued_seconds = 0.0
        self._queued_since: float | None = None
        self.last_error: DecartError | None = None

    # ---- public API ----------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        model: str | RealtimeModel = DEFAULT_MODEL,
        source: FrameSource = "synthetic",
        prompt: str | None = None,
        image: Any = None,
        enhance: bool = True,
        backend: Backend | None = None,
        *,
        fps: float | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: str | None = None,
        resolution: str | None = None,
        ice_servers: IceServersSource | None = None,
    ) -> RealtimeSession:
        """Connect, send the initial state, and return once media is flowing.

        ``transport``: ``"livekit"`` (Gen-B, Decart's current transport; needs
        ``pip install 'decart-widget[livekit]'``) or ``"webrtc"`` (Gen-A); None picks LiveKit
        when it is installed. ``resolution``: ``"720p"`` or ``"1080p"`` (None: the service's
        default). ``ice_servers``: a list of RTCIceServer-like dicts, or a function (plain or async)
        returning one, called before every peer connection or room join (fresh TURN credentials);
        in a room they replace the ICE servers the LiveKit server offers. Raises the typed error
        (`AuthenticationError`, `ConcurrencyLimit`, ...) when the service refuses, and
        `ConnectionLost` when nothing connects within ``timeout`` seconds, not counting the time
        spent waiting in the service's queue.
        """
        session = cls(
            model=model,
            source=source,
            prompt=prompt,
            image=image,
            enhance=enhance,
            backend=backend,
            fps=fps,
            retry=retry,
            transport=transport,
            resolution=resolution,
            ice_servers=ice_servers,
        )
        await session._start(timeout)
        return session

    async def start(self, timeout: float = 60.0) -> None:
        """Connect a session made with the constructor, as `connect` does: for callbacks that
        must be registered first (``on("queue", ...)`` sees the queue while it connects)."""
        if self._runner is not None:
            raise InvalidInput("this session was started already")
        await self._start(timeout)

    @property
    def connection_state(self) -> str:
        return self._state.value

    @property
    def generation_seconds(self) -> int:
        """Seconds generated since `connect`, summed over reconnects (as the widget shows it)."""
        return self._core.generation_seconds

    @property
    def session_id(self) -> str | None:
        return self._core.session_id

    @property
    def prompt(self) -> str | None:
        """The last prompt the service accepted."""
        return self._core.accepted_prompt

    @property
    def queue_position(self) -> int | None:
        """Gen-B: the 1-based place in the service's queue, None when not queued."""
        return self._core.queue_position

    @property
    def queue_size(self) -> int | None:
        """Gen-B: how many sessions wait in the service's queue, None when not queued."""
        return self._core.queue_size

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(value)`` on an event; returns a function that unsubscribes.

        Events: ``connection_change`` (state), ``generation_tick`` (seconds), ``error``
        (a `DecartError`), ``session_id`` (str), ``generation_ended`` (reason), ``queue``
        (Gen-B: ``{"position": int, "size": int | None}`` while queued, then None).
        Coroutine callbacks are scheduled as tasks.
        """
        if event not in self._callbacks:
            raise InvalidInput(f"unknown event {event!r}; known: {', '.join(EVENTS)}")
        self._callbacks[event].append(callback)
        return lambda: self._callbacks[event].remove(callback)

    async def set_prompt(self, prompt: str, enhance: bool = True) -> None:
        """Change the prompt; returns when the service accepted it (raises otherwise)."""
        await self._request(lambda now: self._core.set_prompt(now, prompt, enhance))

    async def set_image(self, image: Any, prompt: str | None = None, enhance: bool = True) -> None:
        """Set (or with None, clear) the reference image; ``prompt=None`` keeps the prompt."""
        encoded = None if image is None else to_base64(image_bytes(image))
        await self._request(lambda now: self._core.set_image(now, encoded, prompt, enhance))

    async def set(self, prompt: str | None = None, image: Any = None, enhance: bool = True) -> None:
        """Replace the whole state at once, as the SDKs' ``set()``: prompt and image together."""
        encoded = None if image is None else to_base64(image_bytes(image))
        text = prompt if prompt is not None else ""
        await self._request(lambda now: self._core.set_image(now, encoded, text, enhance))

    async def frames(self) -> AsyncIterator[RGBFrame]:
        """Transformed frames as HxWx3 uint8 RGB arrays, live (old ones are dropped).

        Ends when the session is disconnected; raises the error that ended it, if any.
        """
        async for frame in self.video_frames():
            yield np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)

    async def video_frames(self) -> AsyncIterator[VideoFrame]:
        """Like `frames`, but the decoded `av.VideoFrame` objects (with their ``pts``)."""
        reader: asyncio.Queue[object] = asyncio.Queue(maxsize=FRAME_BUFFER)
        self._readers.append(reader)
        try:
            while True:
                if self._ended.is_set() and reader.empty():
                    break
                item = await reader.get()
                if item is _DONE:
                    break
                assert isinstance(item, VideoFrame)
                yield item
        finally:
            self._readers.remove(reader)
        if self._final_error is not None:
            raise self._final_error

    async def next_frame(self, timeout: float = 10.0) -> RGBFrame:
        """The next transformed frame; `ConnectionLost` if none arrives within ``timeout``."""

        async def first() -> RGBFrame | None:
            async for frame in self.frames():
                return frame
            return None

        try:
            frame = await asyncio.wait_for(first(), timeout)
        except asyncio.TimeoutError:
            raise ConnectionLost(f"no frame arrived within {timeout:g} s") from None
        if frame is None:
            raise ConnectionLost("the session ended before a frame arrived")
        return frame

    async def record(
        self,
        path: str | Path,
        seconds: float = 5.0,
        which: str = "output",
        fps: float | None = None,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
    ) -> Path:
        """Record ``seconds`` of the output (or ``which="input"``, or ``"both"`` side by side)
        into ``path`` (``.webm``, ``.mp4`` or ``.mkv``); returns its absolute path.

        The file runs at ``fps`` (default: the model's rate) from the first frame on, each frame
        the latest the session had; a reconnect shows as black frames. Raises
        `decart_widget.RecordingTooLarge` past ``max_bytes`` (the file stays playable up to
        there), `decart_widget.AlreadyRecording`, or a `decart_widget.RecordingError` when the
        session ends first.
        """
        recording = self._start_recording(path, which, fps, check_seconds(seconds), max_bytes)
        return await self._recordings.finish(recording)

    def start_recording(
        self,
        path: str | Path,
        which: str = "output",
        fps: float | None = None,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
    ) -> None:
        """Start an open-ended recording (as `record`); `stop_recording` ends it. It also ends at
        ``max_bytes`` or with the session, closing the file either way."""
        self._start_recording(path, which, fps, None, max_bytes)

    async def stop_recording(self) -> Path:
        """End the recording `start_recording` began; its file's path. Raises its error, if it
        stopped on one (`RecordingTooLarge`), or `decart_widget.NotRecording`."""
        return await self._recordings.stop()

    def _start_recording(
        self,
        path: str | Path,
        which: str,
        fps: float | None,
        seconds: float | None,
        max_bytes: int | None,
    ) -> Recording:
        target = check_record_path(path)
        side = check_record_which(which)
        rate = check_record_fps(fps if fps is not None else self.model.fps)
        limit = check_max_bytes(max_bytes)
        if self._runner is None or self._ended.is_set():
            raise self._final_error or ConnectionLost("the session is not connected")
        return self._recordings.start(target, side, rate, seconds, limit)

    def show(self, fps: float = 15.0) -> SessionView:
        """The transformed output, live in a notebook: put ``session.show()`` last in a cell.

        A `decart_widget.widget.SessionView` (no camera, no session of its own) fed from
        `frames` at up to ``fps`` (at most 30) while it is displayed; make it where the session
        runs (a notebook cell). Raw RGB rides the widget comm, so keep ``fps`` modest for large
        frames (1088 x 624 at 15 fps is ~30 MB/s). ``view.close()`` stops it.
        """
        from ..widget._session_view import SessionView

        return SessionView(self, fps=fps)

    async def wait_for_state(self, state: str, timeout: float = 30.0) -> None:
        """Wait until ``connection_state == state`` (raises the session's error if it ends)."""
        try:
            await self._wait_until(lambda: self._state.value == state, timeout)
        except asyncio.TimeoutError:
            raise ConnectionLost(
                f"state {state!r} not reached within {timeout:g} s (now {self._state.value!r})"
            ) from None

    async def _wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        *,
        since: float | None = None,
        paused: Callable[[], float] | None = None,
    ) -> None:
        """Wait for a state predicate; raise the session's error if it ends first, and
        `asyncio.TimeoutError` after ``timeout`` seconds from ``since`` (now), not counting the
        ``paused()`` seconds (it grows while the wait is paused; a change wakes the wait)."""
        start = _now() if since is None else since
        while not predicate():
            if self._ended.is_set():
                raise self._final_error or ConnectionLost("the session ended")
            self._state_changed.clear()
            if paused is not None and self._queued_since is not None:
                await self._state_changed.wait()  # queued: no clock runs
                continue
            left = start + timeout + (paused() if paused else 0.0) - _now()
            if left <= 0:
                raise asyncio.TimeoutError
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._state_changed.wait(), left)

    async def disconnect(self) -> None:
        """End the session: close the socket and the peer, stop every task. Idempotent."""
        if self._runner is None:
            return
        if not self._runner.done():
            self._post(lambda now: self._core.stop(now))
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._runner), 10)
        await self._shutdown()

    async def __aenter__(self) -> RealtimeSession:
        if self._runner is None:
            await self._start(60.0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    def __repr__(self) -> str:
        return (
            f"<RealtimeSession model={self.model.name!r} transport={self.transport!r} "
            f"state={self._state.value!r} seconds={self.generation_seconds} "
            f"session_id={self.session_id!r}>"
        )

    # ---- the event loop around the core ----------------------------------------------------------

    async def _start(self, timeout: float) -> None:
        """Connect within ``timeout`` seconds (time in the service's queue not counted), cleanup
        included: a failed start tears the session down in the time it kept for that
        (`_abandon`), never waiting on a silent server's close reply."""
        started = _now()
        cleanup = min(START_CLEANUP_SECONDS, timeout / 4)
        self._runner = asyncio.create_task(self._run(), name="decart-session")
        self._post(lambda now: self._core.start(now))
        live = (ConnectionState.CONNECTED, ConnectionState.GENERATING)
        try:
            await self._wait_until(
                lambda: self._state in live,
                timeout - cleanup,
                since=started,
                paused=self._time_queued,
            )
        except asyncio.TimeoutError:
            error = ConnectionLost(
                f"could not connect to {redact(self.backend.realtime_url)} within {timeout:g} s: "
                + self._stall_reason()
            )
            await self._abandon(error, _now() + cleanup)
            raise error from None
        except BaseException:
            await self._abandon(None, _now() + cleanup)
            raise

    def _time_queued(self) -> float:
        """Seconds spent in the service's queue so far (Gen-B)."""
        waiting = 0.0 if self._queued_since is None else _now() - self._queued_since
        return self._queued_seconds + waiting

    def _stall_reason(self) -> str:
        """How far a connection that did not come up got (for the timeout's message)."""
        if not self._socket_opened:
            return "the socket did not open"
        if not self._service_heard:
            return "the socket opened but the service never answered"
        return f"the service answered but {self._media.MEDIA_NAME} did not come up"

    async def _abandon(self, error: DecartError | None, deadline: float) -> None:
        """Tear everything down by ``deadline``: stop the tasks, offer the socket a close only
        while there is time (then drop it), close the peer."""
        self._finish(error)
        pending = [t for t in (*self._tasks, self._runner) if t is not None and not t.done()]
        for task in pending:
            task.cancel()
        socket, self._socket = self._socket, None
        if socket is not None:
            self._socket_generation += 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    socket.close(1000, "connect timeout"), max(0.0, (deadline - _now()) / 2)
                )
            socket.transport.abort()  # whether or not the close reply came
        if pending:
            await asyncio.wait(pending, timeout=max(0.0, deadline - _now()))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._media.close(), max(0.0, deadline - _now()))
        if self._owns_track:
            self._track.stop()

    def _post(self, event: Event) -> None:
        self._events.put_nowait(event)

    async def _request(self, call: Callable[[float], tuple[int, list[Action]]]) -> None:
        if self._runner is None or self._ended.is_set():
            raise self._final_error or ConnectionLost("the session is not connected")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def event(now: float) -> list[Action]:
            request_id, actions = call(now)
            self._pending[request_id] = future
            return actions

        self._post(event)
        await future

    async def _run(self) -> None:
        try:
            while True:
                deadline = self._core.next_deadline()
                try:
                    if deadline is None:
                        event = await self._events.get()
                    else:
                        event = await asyncio.wait_for(
                            self._events.get(), max(0.0, deadline - _now())
                        )
                except asyncio.TimeoutError:
                    actions = self._core.on_timer(_now())
                else:
                    actions = event(_now())
                self._batch_error = None
                for action in actions:
                    await self._execute(action)
                if self._ended.is_set():
                    return
        except Exception as exc:  # a bug here must end the session visibly, not hang it
            log.exception("session loop failed")
            self._finish(DecartError(f"internal error in the session loop: {exc}"))

    async def _execute(self, action: Action) -> None:
        if isinstance(action, Send):
            await self._send(action)
        elif isinstance(action, OpenSocket):
            self._spawn(self._open_socket(action.attempt))
        elif isinstance(action, CloseSocket):
            await self._close_socket(action.code, action.reason)
        elif isinstance(action, ClosePeer):
            await self._media.close()
        elif isinstance(action, (StartPeer, RestartIce, ApplyAnswer, AddRemoteCandidate, JoinRoom)):
            await self._media_action(action)
        elif isinstance(action, StateChanged):
            self._set_state(action.state)
        elif isinstance(action, Resolve):
            self._settle(action.request_id, None)
        elif isinstance(action, Fail):
            self._settle(action.request_id, action.error)
        elif isinstance(action, Emit):
            self._emit(action)

    async def _media_action(self, action: MediaAction) -> None:
        await self._media.handle(action)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- what the media link reports (`MediaHost`) ---------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._spawn(coro)

    def media_state(self, state: str) -> None:
        self._post(lambda now: self._core.peer_state(now, state))

    def local_offer(self, sdp: str) -> None:
        # aiortc gathers every candidate before the offer: they are in the SDP already.
        self._post(
            lambda now: [*self._core.local_offer(now, sdp), *self._core.local_candidate(now, None)]
        )

    def deliver(self, frame: VideoFrame) -> None:
        self._recordings.output(frame)
        for reader in list(self._readers):
            if reader.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    reader.get_nowait()
            reader.put_nowait(frame)

    # ---- socket ------------------------------------------------------------------------------

    async def _open_socket(self, attempt: int) -> None:
        await self._close_socket(1000, "reconnecting")
        self._socket_generation += 1
        generation = self._socket_generation
        url = build_stream_url(
            self.backend.realtime_url,
            self.backend.api_key,
            self.model.name,
            resolution=self.resolution,
        )
        log.info("connecting to %s (attempt %d)", redact(url), attempt + 1)
        try:
            socket = await open_upstream(url)
        except Exception as exc:
            reason = connect_failure(exc)
            log.warning("could not open the socket: %s", reason)
            self._post(
                self._if_current(
                    generation, lambda now: self._core.socket_closed(now, None, reason)
                )
            )
            return
        if generation != self._socket_generation or self._ended.is_set():
            await socket.close()
            return
        self._socket = socket
        self._socket_opened = True
        self._post(lambda now: self._core.socket_opened(now))
        self._spawn(self._read_socket(socket, generation))

    def _if_current(self, generation: int, event: Event) -> Event:
        return lambda now: event(now) if generation == self._socket_generation else []

    async def _read_socket(self, socket: ClientConnection, generation: int) -> None:
        try:
            async for frame in socket:
                self._service_heard = True
                try:
                    message = messages.parse_server(frame)
                except ProtocolError as exc:
                    log.warning("ignoring a malformed server frame: %s", exc)
                    self._post(functools.partial(_emit_now, Emit("error", exc)))
                    continue
                received = functools.partial(self._core.message, msg=message)
                self._post(self._if_current(generation, received))
        except websockets.ConnectionClosed:
            pass
        closed = functools.partial(
            self._core.socket_closed, code=socket.close_code, reason=socket.close_reason or ""
        )
        self._post(self._if_current(generation, closed))

    async def _send(self, action: Send) -> None:
        socket = self._socket
        if socket is None:
            log.debug("dropping %s: no socket", action.message.type)
            return
        with contextlib.suppress(websockets.ConnectionClosed):
            await socket.send(messages.encode(action.message))

    async def _close_socket(self, code: int, reason: str) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            self._socket_generation += 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(socket.close(code, reason), 5)

    # ---- outcomes ------------------------------------------------------------------------------

    def _set_state(self, state: ConnectionState) -> None:
        self._state = state
        self._state_changed.set()
        self._call("connection_change", state.value)
        if state is ConnectionState.DISCONNECTED:
            self._finish(self._batch_error)

    def _settle(self, request_id: int, error: DecartError | None) -> None:
        future = self._pending.pop(request_id, None)
        if future is None or future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def _emit(self, action: Emit) -> None:
        if action.name == "error":
            assert isinstance(action.value, DecartError)
            self.last_error = action.value
            if not isinstance(action.value, ProtocolError):
                self._batch_error = action.value
            log.warning("%s: %s", type(action.value).__name__, action.value)
        elif action.name == "queue":
            self._queue_changed(action.value is not None)
        self._call(action.name, action.value)

    def _queue_changed(self, queued: bool) -> None:
        """Keep the time spent in the queue (connect's timeout does not count it)."""
        if queued and self._queued_since is None:
            self._queued_since = _now()
        elif not queued and self._queued_since is not None:
            self._queued_seconds += _now() - self._queued_since
            self._queued_since = None
        self._state_changed.set()

    def _call(self, event: str, value: object) -> None:
        for callback in list(self._callbacks.get(event, ())):
            try:
                result = callback(value)
                if inspect.isawaitable(result):
                    self._spawn(result)
            except Exception:
                log.exception("a %s callback failed", event)

    def _finish(self, error: DecartError | None) -> None:
        if self._ended.is_set():
            return
        self._final_error = error
        self._ended.set()
        self._state_changed.set()
        final = error or ConnectionLost("the session was disconnected")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(final)
        self._pending.clear()
        for reader in self._readers:
            with contextlib.suppress(asyncio.QueueFull):
                reader.put_nowait(_DONE)

    async def _shutdown(self) -> None:
        self._finish(self._final_error)
        await self._recordings.close()
        await self._close_socket(1000, "disconnect")
        await self._media.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._owns_track:
            self._track.stop()


def _emit_now(action: Emit, now: float) -> list[Action]:
    return [action]
