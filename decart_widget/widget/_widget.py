"""`RealtimeWidget`: the camera and its live transformation in a notebook output cell.

The front end (js/, bundled into ``static/``) runs the camera, the session state machine and the
WebRTC peer. The kernel side holds the state as traitlets, validates what users set, and answers
the front end's token requests, so the permanent key never leaves the kernel: tokens travel by
custom message, never as traitlets (widget state is saved into notebooks).
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .._backends import Backend, Decart, is_emulator
from .._ice import IceServersSource, resolve_ice_servers_now
from .._recording import (
    DEFAULT_MAX_BYTES,
    check_max_bytes,
    check_record_fps,
    check_record_path,
    check_record_which,
    check_seconds,
)
from ..images import MAX_IMAGE_BYTES, check_image_bytes, image_bytes
from ..models import DEFAULT_MODEL, RealtimeModel
from ..models import get as get_model
from ..protocol._errors import DecartError, InvalidInput
from ._assets import asset_messages
from ._camera import check_camera
from ._frame_feed import FrameFeed, check_source
from ._frames import (
    DEFAULT_FPS,
    DEFAULT_TIMEOUT,
    Frame,
    FrameCallback,
    FrameRequests,
    FrameStreams,
    NotDisplayed,
    WidgetClosed,
    check_fps,
    check_timeout,
    check_which,
)
from ._hooks import SignalHook, UsageRecord
from ._modes import (
    DEFAULT_TRANSPORT,
    MEDIA_TRANSPORTS,
    SIGNALING,
    AttachedMode,
    SignalingMode,
    default_signaling,
    resolve,
)
from ._reach import remote_page_help
from ._recording import END_GRACE as RECORDING_END_GRACE
from ._recording import Take, WidgetRecordings
from ._updates import WidgetState

log = logging.getLogger("decart_widget.widget")

STATIC = Path(__file__).parent / "static"
SOURCES = ("camera", "screen", "video", "synthetic")
#: The ``source`` traitlet's value when the input is frames from Python (``source=frames``).
PYTHON_SOURCE = "python"
#: Frames a second sent from Python by default (raw RGB over the comm: 1088 x 624 is 2 MB each).
DEFAULT_SOURCE_FPS = 15.0
#: Media transports: a LiveKit room (Gen-B, what Decart's SDKs use) or WebRTC with SDP over the
#: control socket (Gen-A). docs/signaling.md, "Media transports". Modes may carry one too.
TRANSPORTS = MEDIA_TRANSPORTS
RESOLUTIONS = ("720p", "1080p")
#: Traits the front end may report (the rest are the kernel's to set).
REPORTABLE = frozenset(
    {
        "prompt",
        "enhance",
        "image",
        "device_id",
        "mirror",
        "connection_state",
        "generation_seconds",
        "session_id",
        "last_error",
        "last_error_kind",
        "stats",
        "queue_position",
        "queue_size",
    }
)
#: Traits the view asks the kernel to set in kernel signaling (``set`` messages, js/src/sync.ts).
SETTABLE = frozenset({"prompt", "enhance", "image"})
STATES = ("disconnected", "connecting", "connected", "generating", "reconnecting")
#: Largest video file sent to the front end for ``source="video"`` (it rides the comm).
MAX_VIDEO_BYTES = 9 * 1024 * 1024
PUBLIC_STUN = [{"urls": "stun:stun.l.google.com:19302"}]


def _bundle(name: str) -> Path | str:
    path = STATIC / name
    if path.exists():
        return path
    log.warning("the front-end bundle %s is missing: run `bash scripts/setup.sh`", path)
    return (
        "export default { render({ el }) { el.textContent = "
        + repr(f"decart-widget: the front-end bundle is missing ({path}); reinstall the package.")
        + "; } };"
    )


class RealtimeWidget(anywidget.AnyWidget):
    """Live realtime video in a notebook cell.

    ``RealtimeWidget(prompt="Anime style")`` shows the camera and its transformation; set
    ``w.prompt``, ``w.image`` or ``w.enhance`` at any time. ``connection_state``,
    ``generation_seconds``, ``session_id``, ``last_error`` and ``stats`` are kept up to date by
    the front end.

    ``source`` is ``"camera"``, ``"screen"``, ``"video"`` (with ``video=``), ``"synthetic"``, or
    frames made in Python: an iterable or async iterable of H x W x 3 uint8 RGB arrays, a
    function returning one, or a `decart_widget.RealtimeSession` (its output). Those are sent to
    the page at up to ``source_fps`` a second (default 15, at most 30; at most two on their way,
    the iterator not advanced meanwhile) and published at the model's size; ``w.source`` is then
    ``"python"``. See docs/widget.md, "Python frames as the source".
    """

    _esm = _bundle("widget.js")
    _css = STATIC / "widget.css" if (STATIC / "widget.css").exists() else ""

    model = traitlets.Unicode(DEFAULT_MODEL).tag(sync=True)
    model_spec = traitlets.Dict().tag(sync=True)
    prompt = traitlets.Unicode("").tag(sync=True)
    enhance = traitlets.Bool(True).tag(sync=True)
    image = traitlets.Bytes(None, allow_none=True).tag(sync=True)
    #: ``"python"`` when the input is frames from Python (``RealtimeWidget(source=frames)``)
    source = traitlets.Enum((*SOURCES, PYTHON_SOURCE), "camera").tag(sync=True)
    video = traitlets.Bytes(None, allow_none=True).tag(sync=True)
    device_id = traitlets.Unicode("").tag(sync=True)
    #: getUserMedia video constraints for ``source="camera"`` (``{"facingMode": "user"}``), checked
    #: by `decart_widget.widget._camera.check_camera`
    camera = traitlets.Dict().tag(sync=True)
    mirror = traitlets.Bool(False).tag(sync=True)
    signaling = traitlets.Enum(SIGNALING, "direct").tag(sync=True)
    #: How the video reaches the model and comes back, independent of ``signaling``:
    #: ``"livekit"`` joins the LiveKit room the service names in its handshake (Gen-B, what
    #: Decart's own SDKs use); ``"webrtc"`` makes one peer connection whose SDP rides the control
    #: socket (Gen-A). LiveKit unless ``transport=`` or the signaling mode says otherwise; fixed
    #: when the widget is made. The front end loads each transport's code when a session of it
    #: starts.
    transport = traitlets.Enum(TRANSPORTS, DEFAULT_TRANSPORT, read_only=True).tag(sync=True)
    #: The output resolution asked of the service (``"720p"`` or ``"1080p"``); None: its default.
    resolution = traitlets.Enum(RESOLUTIONS, None, allow_none=True, read_only=True).tag(sync=True)
    realtime_url = traitlets.Unicode("").tag(sync=True)
    ice_servers = traitlets.List(traitlets.Dict()).tag(sync=True)
    #: What a page on another host than the kernel is told when it cannot reach a service beside
    #: the kernel: the cause and the ways out ("" for another service; `reach.remote_page_help`,
    #: js/src/reach.ts).
    remote_page_help = traitlets.Unicode("", read_only=True).tag(sync=True)
    autostart = traitlets.Bool(False).tag(sync=True)
    note = traitlets.Unicode("").tag(sync=True)

    connection_state = traitlets.Unicode("disconnected").tag(sync=True)
    generation_seconds = traitlets.Int(0).tag(sync=True)
    session_id = traitlets.Unicode("").tag(sync=True)
    last_error = traitlets.Unicode("").tag(sync=True)
    last_error_kind = traitlets.Unicode("").tag(sync=True)
    stats = traitlets.Dict().tag(sync=True)
    #: While the service holds the session in its queue: the place (1 is next) and the queue's
    #: length; None when not queued. The view shows "In line: 3 of 7".
    queue_position = traitlets.Int(None, allow_none=True).tag(sync=True)
    queue_size = traitlets.Int(None, allow_none=True).tag(sync=True)

    def __init__(
        self,
        model: str | RealtimeModel = DEFAULT_MODEL,
        prompt: str = "",
        signaling: str | SignalingMode | None = None,
        source: Any = "camera",
        backend: Backend | None = None,
        *,
        image: Any = None,
        enhance: bool = True,
        video: Any = None,
        mirror: bool = False,
        device_id: str = "",
        camera: dict[str, Any] | None = None,
        autostart: bool = False,
        max_session_seconds: int | None = None,
        token_seconds: int | None = None,
        allowed_origins: Sequence[str] | None = None,
        proxy_url: str | None = None,
        proxy_token: str | None = None,
        transport: str | None = None,
        resolution: str | None = None,
        ice_servers: IceServersSource | None = None,
        source_fps: float | None = None,
    ) -> None:
        spec = get_model(model)
        # a function is called again before every browser (re)connect: fresh TURN credentials
        self._ice_source = ice_servers
        given_ice = resolve_ice_servers_now(ice_servers) if ice_servers is not None else None
        self._custom_models: dict[str, RealtimeModel] = {}
        if isinstance(model, RealtimeModel):
            self._custom_models[spec.name] = spec
        # the mode-specific arguments are kept for compatibility: they fill in a mode given by name
        keywords = {
            "max_session_seconds": max_session_seconds,
            "token_seconds": token_seconds,
            "allowed_origins": allowed_origins,
            "proxy_url": proxy_url,
            "proxy_token": proxy_token,
        }
        if signaling is None:  # no choice made: kernel for the automatic emulator, else direct
            signaling = default_signaling(backend, **keywords)
        mode = resolve(signaling, **keywords)
        #: frames from Python (``source=frames``), sent to the page when it starts
        self._feed: FrameFeed | None = None
        if isinstance(source, str) and source not in SOURCES:
            raise InvalidInput(
                f"source must be one of {', '.join(SOURCES)}, or frames (an iterable or async "
                f"iterable of H x W x 3 uint8 arrays); got {source!r}"
            )
        if not isinstance(source, str):
            self._feed = FrameFeed(
                check_source(source),
                self._send_source,
                check_fps(DEFAULT_SOURCE_FPS if source_fps is None else source_fps, "source_fps"),
                failed=self._source_failed,
            )
            source = PYTHON_SOURCE
        elif source_fps is not None:
            raise InvalidInput("source_fps is the rate of frames from Python: give source=frames")
        if transport is not None and transport not in TRANSPORTS:
            raise InvalidInput(
                f"transport must be one of {', '.join(TRANSPORTS)}; got {transport!r}"
            )
        if resolution is not None and resolution not in RESOLUTIONS:
            raise InvalidInput(
                f"resolution must be one of {', '.join(RESOLUTIONS)} or None; got {resolution!r}"
            )
        if transport is not None and mode.transport is not None and transport != mode.transport:
            raise InvalidInput(
                f"transport={transport!r} contradicts signaling={mode!r}: give it in one place"
            )
        transport = transport or mode.transport or DEFAULT_TRANSPORT
        self._signaling_mode = mode
        self._backend = backend if backend is not None else mode.default_backend()
        video_bytes = _video_bytes(video) if video is not None else None
        if source == "video" and video_bytes is None:
            raise InvalidInput('source="video" needs video= (a path, URL or bytes)')
        # read-only traits: set before the comm opens, so the front end's first state has them
        self.set_trait("transport", transport)
        self.set_trait("resolution", resolution)
        self.set_trait(
            "remote_page_help",
            remote_page_help(self._backend, mode, transport, ice_servers is not None),
        )
        super().__init__(
            model=spec.name,
            model_spec=spec.to_dict(),
            prompt=prompt,
            enhance=enhance,
            image=None if image is None else image_bytes(image),
            source=source,
            video=video_bytes,
            device_id=device_id,
            camera=check_camera(camera),
            mirror=mirror,
            signaling=mode.name,
            realtime_url=mode.frontend_url(self._backend),
            ice_servers=given_ice if given_ice is not None else self._default_ice_servers(),
            autostart=autostart,
            note=self._default_note(),
        )
        self._attached: AttachedMode = mode.attach(self._backend, _WidgetPort(self))
        self.observe(self._state_changed, names=["prompt", "image", "enhance"])
        #: whether a view was asked for (displayed): until then no page can answer for frames
        self._displayed = False
        self._frames = FrameRequests(lambda message: self.send(message))
        self._frame_streams = FrameStreams(lambda message: self.send(message))
        self._recordings = WidgetRecordings(
            lambda message: self.send(message), self._show_recording
        )
        self.on_msg(self._on_frontend_message)

    # ---- public API ----------------------------------------------------------------------------

    @property
    def backend(self) -> Backend | None:
        return self._backend

    @property
    def signaling_mode(self) -> SignalingMode:
        """The signaling mode object (`dw.Direct`, `dw.Kernel`, `dw.Proxy`); ``signaling`` is its
        name."""
        return self._signaling_mode

    def start(self) -> None:
        """Start the camera and the session (the same as the view's start button)."""
        self.send({"type": "start"})

    def stop(self) -> None:
        """Stop the session and release the camera."""
        self.send({"type": "stop"})

    def set_image(self, image: Any) -> None:
        """Set the reference image from a path, URL, PIL image, ndarray or bytes; None clears."""
        self.image = None if image is None else image_bytes(image)  # type: ignore[assignment]

    async def snapshot(self, which: str = "output", timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """The current frame of the output (or ``which="input"``) as an H x W x 3 uint8 RGB array.

        At the stream's real size. Waits up to ``timeout`` seconds for a first decoded frame, so it
        works right after ``w.start()`` in the same cell (``frame = await w.snapshot()``). Raises a
        `decart_widget.widget.FrameUnavailable`: `NotDisplayed` (never shown, or no open page
        answered), `ViewHidden` (the page has no view of it any more: its output was cleared),
        `NotStarted` (not started, or stopped while waiting), `FrameTimeout`, `WidgetClosed`.
        If the widget is shown in several pages, the first page to answer wins;
        all views in one page share one session and answer as one.
        """
        side = check_which(which)
        seconds = check_timeout(timeout)
        if self.comm is None:
            raise WidgetClosed("the widget is closed")
        if not self._displayed:
            raise NotDisplayed("display the widget first (put `w` last in a cell, or display(w))")
        return await self._frames.snapshot(side, seconds)

    def on_frame(
        self,
        callback: FrameCallback,
        fps: float = DEFAULT_FPS,
        which: str = "output",
        remove: bool = False,
    ) -> FrameCallback:
        """Call ``callback(frame)`` with frames of the output (or input) at up to ``fps`` a second.

        ``fps`` is at most 30. Frames are numpy arrays as
        `snapshot` gives. The page sends a frame only while fewer than two are unhandled, so when
        the callback is slower than ``fps`` frames are skipped, never queued. The callback runs
        where the comm's messages are handled (the kernel's thread, between cells or while a cell
        awaits); an exception in it is logged. Usable as a decorator; ``remove=True`` ends it.
        Streams run while the widget is started and wait (sending nothing) while it is stopped.
        """
        if remove:
            self._frame_streams.remove(callback)
            return callback
        rate = check_fps(fps)
        side = check_which(which)
        if self.comm is None:
            raise WidgetClosed("the widget is closed")
        self._frame_streams.add(callback, rate, side)
        return callback

    def frames(self, fps: float = DEFAULT_FPS, which: str = "output") -> AsyncIterator[Frame]:
        """``async for frame in w.frames(fps=5): ...``: frames as `on_frame` delivers them.

        Leaving the loop ends the stream. The page runs at most two frames ahead of the loop, so
        a slow loop body skips frames instead of queueing them.
        """
        rate = check_fps(fps)
        side = check_which(which)
        if self.comm is None:
            raise WidgetClosed("the widget is closed")
        return self._frame_streams.iterate(rate, side)

    async def record(
        self,
        seconds: float = 5.0,
        path: str | Path = "recording.webm",
        which: str = "output",
        fps: float | None = None,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Path:
        """Record ``seconds`` of the output (or ``which="input"``, or ``"both"`` side by side) into
        ``path`` in the kernel's working directory; returns its absolute path.

        The page records (the browser's MediaRecorder) at ``fps`` (default: the model's rate) and
        streams the file to the kernel as it is made. ``.webm`` works in every browser; ``.mp4``
        and ``.mkv`` where the browser records them. Waits up to ``timeout`` seconds for the
        first frames. A reconnect shows as black frames; the file stays valid. Raises
        `decart_widget.RecordingTooLarge` at ``max_bytes`` (the file holds what came before),
        `decart_widget.AlreadyRecording`, a `decart_widget.RecordingError` when the recording
        stops early, and `NotDisplayed`, `NotStarted`, `ViewHidden` or `WidgetClosed` (as
        `snapshot`) when there is nothing to record.
        """
        take = self._begin_recording(path, which, fps, check_seconds(seconds), max_bytes, timeout)
        try:
            await self._recordings.started(take, check_timeout(timeout))
            return await self._recordings.ended(take, seconds + RECORDING_END_GRACE)
        finally:
            self._recordings.forget(take)

    def start_recording(
        self,
        path: str | Path = "recording.webm",
        which: str = "output",
        fps: float | None = None,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Start an open-ended recording (as `record`); ``await w.stop_recording()`` ends it and
        returns the file's path, or raises why the recording could not start or stopped early
        (the view's header shows it meanwhile). It also ends when the widget stops."""
        self._begin_recording(path, which, fps, None, max_bytes, timeout)

    async def stop_recording(self) -> Path:
        """End the recording `start_recording` began; the path of its file. Raises
        `decart_widget.NotRecording` when none was started."""
        return await self._recordings.stop()

    def _begin_recording(
        self,
        path: str | Path,
        which: str,
        fps: float | None,
        seconds: float | None,
        max_bytes: int | None,
        timeout: float,
    ) -> Take:
        target = check_record_path(path)
        side = check_record_which(which)
        rate = check_record_fps(fps if fps is not None else self.model_spec.get("fps", 30))
        limit = check_max_bytes(max_bytes)
        wait = check_timeout(timeout)
        if self.comm is None:
            raise WidgetClosed("the widget is closed")
        if not self._displayed:
            raise NotDisplayed("display the widget first (put `w` last in a cell, or display(w))")
        return self._recordings.begin(target, side, rate, seconds, limit, wait)

    def _show_recording(self, text: str | None) -> None:
        """A recording's state in the view's header (None: back to the widget's own note)."""
        base = self._default_note()
        self.note = base if text is None else f"{base} · {text}" if base else text

    def on_signal(self, callback: SignalHook, remove: bool = False) -> SignalHook:
        """Kernel signaling (``signaling=dw.Kernel()``): call ``callback(frame, direction)`` for
        every relayed frame.

        ``direction`` is ``"to_service"`` or ``"to_browser"``. Return None to pass the frame, a
        dict to replace it, False to drop it, or `decart_widget.widget.Reject` ("reason") to refuse
        a prompt or image (the browser gets a failed ack). Runs on the relay's thread. Usable as
        a decorator; ``remove=True`` unregisters it.
        """
        if remove:
            self._attached.remove_hook(callback)
        else:
            self._attached.add_hook(callback)
        return callback

    @property
    def usage(self) -> list[UsageRecord]:
        """Kernel signaling: the service sessions relayed so far (id, model, seconds, end)."""
        return self._attached.usage

    def close(self) -> None:
        """Close the widget; in kernel mode the service session ends with it."""
        attached = getattr(self, "_attached", None)  # None if __init__ failed before attaching
        if attached is not None:
            attached.close()
        frames = getattr(self, "_frames", None)
        if frames is not None:
            frames.close()
        recordings = getattr(self, "_recordings", None)
        if recordings is not None:
            recordings.close()
        streams = getattr(self, "_frame_streams", None)
        if streams is not None:
            streams.close()
        feed = getattr(self, "_feed", None)
        if feed is not None:
            feed.close()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        self._displayed = True
        return super()._repr_mimebundle_(**kwargs)

    @property
    def error(self) -> DecartError | None:
        """`last_error` as a typed exception (None when there is none)."""
        from ..protocol._errors import from_kind

        return from_kind(self.last_error_kind, self.last_error) if self.last_error else None

    def __repr__(self) -> str:
        return (
            f"RealtimeWidget(model={self.model!r}, prompt={self.prompt!r}, "
            f"signaling={self.signaling!r}, transport={self.transport!r}, source={self.source!r}, "
            f"connection_state={self.connection_state!r})"
        )

    # ---- validation ----------------------------------------------------------------------------

    @traitlets.validate("model")
    def _check_model(self, proposal: dict[str, Any]) -> str:
        name = proposal["value"]
        with _as_trait_error():
            spec = self._custom_models.get(name) or get_model(name)
        self.model_spec = spec.to_dict()
        return spec.name

    @traitlets.validate("image")
    def _check_image(self, proposal: dict[str, Any]) -> bytes | None:
        value = proposal["value"]
        with _as_trait_error():
            return None if value is None else check_image_bytes(bytes(value), MAX_IMAGE_BYTES)

    @traitlets.validate("camera")
    def _check_camera(self, proposal: dict[str, Any]) -> dict[str, Any]:
        with _as_trait_error():
            return check_camera(proposal["value"])

    @traitlets.validate("source")
    def _check_source(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"])
        if value == PYTHON_SOURCE and getattr(self, "_feed", None) is None:
            raise InvalidTrait(
                "source='python' is for frames given as RealtimeWidget(source=frames)"
            )
        return value

    @traitlets.validate("prompt")
    def _check_prompt(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"]
        if len(value) > 10_000:
            raise InvalidTrait(f"prompt is {len(value)} characters; keep it under 10,000")
        return str(value)

    # ---- frames from Python --------------------------------------------------------------------

    def _send_source(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        if self.comm is not None:
            self.send(content, buffers)

    def _source_failed(self, message: str) -> None:
        """The Python frames failed (raised, or yielded a non-frame): say so and stop."""
        with self.hold_trait_notifications():
            self.last_error = message
            self.last_error_kind = "invalid_input"
        if self.comm is not None:
            self.stop()

    # ---- front-end messages --------------------------------------------------------------------

    def _on_frontend_message(self, _widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind in ("signal_open", "signal", "signal_close"):
            if kind == "signal_open":  # kernel signaling's (re)connect, as a token request
                self._refresh_ice_servers()
            self._attached.signal_message(kind, content, buffers)
        elif kind == "token_request":
            self._refresh_ice_servers()
            self.send({**self._attached.answer_token_request(), "id": content.get("id")})
        elif kind == "asset_request":
            for message, buffers in asset_messages(STATIC, content.get("name")):
                self.send(message, buffers)
        elif isinstance(kind, str) and kind.startswith("record_"):
            self._recordings.message(content, buffers)
        elif kind == "frame" and "stream" in content:
            self._frame_streams.frame(content, buffers)
        elif kind in ("frame", "frame_error"):
            self._frames.answer(content, buffers)
        elif kind in ("source_open", "source_ack", "source_close"):
            if self._feed is not None:
                self._feed.message(content)
        elif kind == "report":
            self._apply_report(content, buffers)
        elif kind == "set":
            self._apply_set(content, buffers)
        elif kind == "ack":
            if content.get("success"):
                log.info("%s accepted: %.80s", content.get("request"), content.get("prompt") or "")
            else:
                log.warning("%s rejected: %s", content.get("request"), content.get("error"))
        else:
            log.debug("ignoring front-end message %r", kind)

    def _apply_report(self, content: dict[str, Any], buffers: Any) -> None:
        """Front-end changes sent by custom message (see js/src/sync.ts for why)."""
        state = _message_state(content, buffers, REPORTABLE)
        if not state:
            return
        try:
            self.set_state(state)  # as a normal front-end update: validated, not echoed back
        except Exception as exc:  # a bad value from the page must not break the comm handler
            log.warning("ignoring a front-end report: %s", exc)

    def _apply_set(self, content: dict[str, Any], buffers: Any) -> None:
        """Kernel signaling: the view asks the kernel to set prompt/enhance/image.

        Set as the kernel's own change: validated, relayed to the service at once (the traitlet
        observer), and synced to every view as a normal update. One comm message from the page
        where a saved and reported change takes two, each with its echo (js/src/sync.ts).
        """
        state = _message_state(content, buffers, SETTABLE)
        if not state:
            return
        try:
            # hold_sync: the observers (the relay) run before the update to the views is sent
            with self.hold_sync(), self.hold_trait_notifications():
                for name, value in state.items():
                    setattr(self, name, value)
        except traitlets.TraitError as exc:  # refused: nothing changed; say why in the view
            log.warning("refused a value from the view: %s", exc)
            with self.hold_trait_notifications():
                self.last_error = str(exc)
                self.last_error_kind = "invalid_input"

    def _state_changed(self, _change: Any) -> None:
        self._attached.state_changed()

    # ---- defaults ------------------------------------------------------------------------------

    def _refresh_ice_servers(self) -> None:
        """Call an ``ice_servers`` function again; the trait reaches the page before the reply
        to its token request, so the peer made after it uses these servers."""
        if not callable(self._ice_source):
            return
        try:
            self.ice_servers = resolve_ice_servers_now(self._ice_source)
        except Exception as exc:  # the user's function: keep the last list, say why
            log.warning("ice_servers function failed: %s", exc)

    def _default_ice_servers(self) -> list[dict[str, Any]]:
        if self._backend is None or is_emulator(self._backend):
            return []
        servers = getattr(self._backend, "ice_servers", None)
        if servers is not None:
            return list(servers)
        return (
            PUBLIC_STUN if isinstance(self._backend, Decart) and _is_public(self._backend) else []
        )

    def _default_note(self) -> str:
        if self._backend is not None and is_emulator(self._backend):
            return "Local emulator (no DECART_API_KEY set): the effects are simulated."
        if self._backend is not None and not _is_public(self._backend):
            return f"Using the service at {self._backend.realtime_url}"
        return ""


class _WidgetPort:
    """The signaling mode's view of its widget (`modes.WidgetPort`; in kernel mode called on the
    relay's thread); holds it weakly, so a dropped widget is not kept alive by its relay."""

    def __init__(self, widget: RealtimeWidget) -> None:
        self._widget: Callable[[], RealtimeWidget | None] = weakref.ref(widget)

    @property
    def model(self) -> str:
        widget = self._widget()
        return widget.model if widget is not None else DEFAULT_MODEL

    @property
    def resolution(self) -> str | None:
        widget = self._widget()
        return widget.resolution if widget is not None else None

    @property
    def ice_servers(self) -> list[dict[str, Any]] | None:
        widget = self._widget()
        if widget is None or widget._ice_source is None:
            return None
        return list(widget.ice_servers)

    def desired(self) -> WidgetState:
        widget = self._widget()
        if widget is None:
            return WidgetState()
        return WidgetState(widget.prompt or None, widget.image, bool(widget.enhance))

    def send_to_browser(self, content: dict[str, Any]) -> None:
        widget = self._widget()
        if widget is not None and widget.comm is not None:
            widget.send(content)

    def revert(self, settings: WidgetState) -> None:
        widget = self._widget()
        if widget is None:
            return
        with widget.hold_trait_notifications():
            if (widget.prompt or None) != settings.prompt:
                widget.prompt = settings.prompt or ""
            if widget.image != settings.image:
                widget.image = settings.image  # type: ignore[assignment]
            if widget.enhance != settings.enhance:
                widget.enhance = settings.enhance

    def show_error(self, kind: str, message: str) -> None:
        widget = self._widget()
        if widget is not None:
            with widget.hold_trait_notifications():
                widget.last_error = message
                widget.last_error_kind = kind


def _message_state(
    content: dict[str, Any], buffers: Any, allowed: frozenset[str]
) -> dict[str, Any]:
    """The allowed traits of a ``report`` or ``set`` message; binary values ride as buffers."""
    raw = content.get("state")
    state = {k: v for k, v in raw.items() if k in allowed} if isinstance(raw, dict) else {}
    names = content.get("buffer_keys") or []
    for name, buffer in zip(names, buffers or [], strict=False):
        if name in allowed:
            state[name] = bytes(buffer)
    return state


class InvalidTrait(InvalidInput, traitlets.TraitError):
    """A refused traitlet value: an `InvalidInput` that traitlets also rolls back as its own."""


@contextlib.contextmanager
def _as_trait_error() -> Iterator[None]:
    try:
        yield
    except InvalidInput as exc:
        raise InvalidTrait(str(exc)) from None


def _is_public(backend: Backend) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(backend.realtime_url).hostname or ""
    return host not in ("127.0.0.1", "localhost", "::1")


def _video_bytes(video: Any) -> bytes:
    """A video for ``source="video"``: bytes, a path or an http(s) URL."""
    if isinstance(video, (bytes, bytearray, memoryview)):
        data = bytes(video)
    elif isinstance(video, str) and video.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(video, timeout=30, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise InvalidInput(f"could not download video {video}: {exc}") from None
        data = response.content
    elif isinstance(video, (str, Path)):
        path = Path(video)
        if not path.is_file():
            raise InvalidInput(f"video file not found: {path}")
        data = path.read_bytes()
    else:
        raise InvalidInput(f"video must be bytes, a path or a URL; got {type(video).__name__}")
    if len(data) > MAX_VIDEO_BYTES:
        raise InvalidInput(
            f"video is {len(data) / 1e6:.1f} MB; widgets carry at most "
            f"{MAX_VIDEO_BYTES / 1e6:.0f} MB (trim or re-encode it)"
        )
    return data
