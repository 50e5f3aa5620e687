"""`RealtimeSession`: the headless Python client (aiortc media, websockets signaling).

A thin adapter around the sans-I/O `SessionCore`: one task feeds it events (socket frames, peer
state changes, user requests, deadlines) in order and carries out the actions it returns.
Slow actions (opening the socket, building the peer) run as tasks that post their outcome back
as events, so timers keep firing while they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import numpy as np
import websockets
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import candidate_from_sdp
from av import VideoFrame
from websockets.asyncio.client import ClientConnection

from .._upstream import connect_failure, open_upstream
from ..backends import Backend, default_backend
from ..images import image_bytes, to_base64
from ..models import DEFAULT_MODEL, RealtimeModel
from ..models import get as get_model
from ..protocol import messages
from ..protocol.constants import IMAGE_ACK_TIMEOUT, PROMPT_ACK_TIMEOUT
from ..protocol.errors import ConnectionLost, DecartError, InvalidInput, ProtocolError
from ..protocol.session import (
    Action,
    AddRemoteCandidate,
    ApplyAnswer,
    ClosePeer,
    CloseSocket,
    ConnectionState,
    Emit,
    OpenSocket,
    Reject,
    Resolve,
    RestartIce,
    RetryPolicy,
    Send,
    SessionCore,
    StartPeer,
    StateChanged,
)
from ..protocol.urls import build_stream_url, redact
from .sources import BorrowedTrack, FrameSource, RGBFrame, make_track

log = logging.getLogger("decart_widget.client.session")

Event: TypeAlias = Callable[[float], list[Action]]
Callback: TypeAlias = Callable[[Any], Any]
EVENTS = ("connection_change", "generation_tick", "error", "session_id", "generation_ended")
#: Of a `connect` timeout, the part kept for tearing down a start that failed (a quarter at most).
START_CLEANUP_SECONDS = 0.25
#: Frames kept per `frames()` reader before the oldest are dropped (stay live, never lag).
FRAME_BUFFER = 4
_DONE = object()


def _now() -> float:
    return time.monotonic()


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
    ) -> None:
        self.model = get_model(model)
        self.backend = backend if backend is not None else default_backend()
        if prompt is not None and not isinstance(prompt, str):
            raise InvalidInput(f"prompt must be a string, got {type(prompt).__name__}")
        encoded = None if image is None else to_base64(image_bytes(image))
        self._track = make_track(source, self.model, fps)
        self._owns_track = not isinstance(source, MediaStreamTrack)
        self._core = SessionCore(
            prompt=prompt,
            image=encoded,
            enhance=enhance,
            retry=retry,
            prompt_ack_timeout=prompt_ack_timeout,
            image_ack_timeout=image_ack_timeout,
        )
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._callbacks: dict[str, list[Callback]] = {name: [] for name in EVENTS}
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._socket: ClientConnection | None = None
        self._socket_generation = 0
        self._peer: RTCPeerConnection | None = None
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
    ) -> RealtimeSession:
        """Connect, send the initial state, and return once media is flowing.

        Raises the typed error (`AuthenticationError`, `ConcurrencyLimit`, ...) when the
        service refuses, and `ConnectionLost` when nothing connects within ``timeout`` seconds.
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
        )
        await session._start(timeout)
        return session

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

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(value)`` on an event; returns a function that unsubscribes.

        Events: ``connection_change`` (state), ``generation_tick`` (seconds), ``error``
        (a `DecartError`), ``session_id`` (str), ``generation_ended`` (reason).
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

    async def wait_for_state(self, state: str, timeout: float = 30.0) -> None:
        """Wait until ``connection_state == state`` (raises the session's error if it ends)."""
        try:
            await self._wait_until(lambda: self._state.value == state, timeout)
        except asyncio.TimeoutError:
            raise ConnectionLost(
                f"state {state!r} not reached within {timeout:g} s (now {self._state.value!r})"
            ) from None

    async def _wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait for a state predicate; raise the session's error if it ends first."""
        deadline = _now() + timeout
        while not predicate():
            if self._ended.is_set():
                raise self._final_error or ConnectionLost("the session ended")
            self._state_changed.clear()
            await asyncio.wait_for(self._state_changed.wait(), max(0.0, deadline - _now()))

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
            f"<RealtimeSession model={self.model.name!r} state={self._state.value!r} "
            f"seconds={self.generation_seconds} session_id={self.session_id!r}>"
        )

    # ---- the event loop around the core ----------------------------------------------------------

    async def _start(self, timeout: float) -> None:
        """Connect within ``timeout`` seconds, cleanup included: a failed start tears the
        session down in the time it kept for that (`_abandon`), never waiting on a silent
        server's close reply."""
        deadline = _now() + timeout
        cleanup = min(START_CLEANUP_SECONDS, timeout / 4)
        self._runner = asyncio.create_task(self._run(), name="decart-session")
        self._post(lambda now: self._core.start(now))
        live = (ConnectionState.CONNECTED, ConnectionState.GENERATING)
        try:
            await self._wait_until(lambda: self._state in live, timeout - cleanup)
        except asyncio.TimeoutError:
            error = ConnectionLost(
                f"could not connect to {redact(self.backend.realtime_url)} within {timeout:g} s: "
                + self._stall_reason()
            )
            await self._abandon(error, deadline)
            raise error from None
        except BaseException:
            await self._abandon(None, deadline)
            raise

    def _stall_reason(self) -> str:
        """How far a connection that did not come up got (for the timeout's message)."""
        if not self._socket_opened:
            return "the socket did not open"
        if not self._service_heard:
            return "the socket opened but the service never answered"
        return "the service answered but the video connection did not come up"

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
            await asyncio.wait_for(self._close_peer(), max(0.0, deadline - _now()))
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
        elif isinstance(action, StartPeer):
            self._spawn(self._start_peer(None))
        elif isinstance(action, RestartIce):
            self._spawn(self._start_peer(action.turn_config))
        elif isinstance(action, ClosePeer):
            await self._close_peer()
        elif isinstance(action, ApplyAnswer):
            await self._apply_answer(action.sdp)
        elif isinstance(action, AddRemoteCandidate):
            await self._add_candidate(action.candidate)
        elif isinstance(action, StateChanged):
            self._set_state(action.state)
        elif isinstance(action, Resolve):
            self._settle(action.request_id, None)
        elif isinstance(action, Reject):
            self._settle(action.request_id, action.error)
        elif isinstance(action, Emit):
            self._emit(action)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- socket ------------------------------------------------------------------------------

    async def _open_socket(self, attempt: int) -> None:
        await self._close_socket(1000, "reconnecting")
        self._socket_generation += 1
        generation = self._socket_generation
        url = build_stream_url(self.backend.realtime_url, self.backend.api_key, self.model.name)
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

    # ---- peer connection -----------------------------------------------------------------------

    async def _start_peer(self, turn_config: dict[str, Any] | None) -> None:
        await self._close_peer()
        peer = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers(turn_config)))
        self._peer = peer
        transceiver = peer.addTransceiver(BorrowedTrack(self._track), direction="sendrecv")
        vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
        if vp8:
            transceiver.setCodecPreferences(vp8)

        @peer.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._spawn(self._read_track(track))

        @peer.on("connectionstatechange")
        def on_state() -> None:
            state = peer.connectionState
            if peer is self._peer:
                self._post(lambda now: self._core.peer_state(now, state))

        await peer.setLocalDescription(await peer.createOffer())
        if peer is not self._peer:
            return
        sdp = peer.localDescription.sdp
        # aiortc gathers every candidate before the offer: they are in the SDP already.
        self._post(
            lambda now: [*self._core.local_offer(now, sdp), *self._core.local_candidate(now, None)]
        )

    def _ice_servers(self, turn_config: dict[str, Any] | None) -> list[RTCIceServer]:
        servers = [RTCIceServer(**server) for server in getattr(self.backend, "ice_servers", ())]
        if turn_config and turn_config.get("server_url"):
            servers.append(
                RTCIceServer(
                    urls=turn_config["server_url"],
                    username=turn_config.get("username"),
                    credential=turn_config.get("credential"),
                )
            )
        return servers

    async def _apply_answer(self, sdp: str) -> None:
        peer = self._peer
        if peer is None:
            return
        try:
            await peer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:
            log.warning("the answer could not be applied: %s", exc)
            self._post(lambda now: self._core.peer_state(now, "failed"))

    async def _add_candidate(self, candidate: dict[str, Any] | None) -> None:
        peer = self._peer
        if peer is None or candidate is None or not candidate.get("candidate"):
            return
        line = str(candidate["candidate"])
        try:
            parsed = candidate_from_sdp(line.removeprefix("candidate:"))
        except (ValueError, IndexError):
            log.debug("ignoring an unparsable candidate %r", line)
            return
        parsed.sdpMid = candidate.get("sdpMid")
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
        await peer.addIceCandidate(parsed)

    async def _close_peer(self) -> None:
        peer, self._peer = self._peer, None
        if peer is not None:
            with contextlib.suppress(Exception):
                await peer.close()

    async def _read_track(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            for reader in list(self._readers):
                if reader.full():
                    with contextlib.suppress(asyncio.QueueEmpty):
                        reader.get_nowait()
                reader.put_nowait(frame)

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
        self._call(action.name, action.value)

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
        await self._close_socket(1000, "disconnect")
        await self._close_peer()
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
