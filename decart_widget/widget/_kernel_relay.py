"""Kernel signaling: the widget comm <-> the realtime service's WebSocket, with the permanent key.

``RealtimeWidget(signaling="kernel")``: the browser holds no credential. Its session core talks to
a `KernelTransport` (js/src/kernel_transport.ts) whose frames ride the widget comm:

=================  ===================================================================
front -> kernel    ``{"type":"signal_open","id":n,"model":...}``,
                   ``{"type":"signal","id":n,"frame":{...}}`` (a ``set_image``'s image as a
                   binary buffer, ``image_data`` left out), ``{"type":"signal_close","id":n,...}``
kernel -> front    ``{"type":"signal_opened","id":n}``, ``{"type":"signal","id":n,"frame":{...}}``,
                   ``{"type":"signal_closed","id":n,"code":int|null,"reason":str}``
=================  ===================================================================

Every widget's relay runs on one process-wide daemon thread with an asyncio loop (`RELAY_THREAD`,
a `decart_widget._loop_thread.LoopThread`), so it keeps working while a cell is busy; the
upstream socket is opened as the headless client opens it (`decart_widget._upstream`). Comm
messages from the browser wait while a cell runs, so the kernel itself is the sender of
prompt/image/enhance *updates* (`KernelUpdates`): the browser only sends its handshake (the
initial state after each (re)connect) and the WebRTC offer and candidates. Codes and reasons
pass through unchanged (1013 stays 1013). Reconnecting is the front end's job: each
``signal_open`` opens a new upstream connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection

from .._backends import Backend, browser_url
from .._loop_thread import LoopThread
from .._upstream import ack_error, connect_failure, open_upstream
from ..protocol._constants import MAX_IMAGE_BYTES
from ..protocol._errors import ModerationError
from ..protocol._urls import build_stream_url, redact
from ._emulator_ice import relay_key
from ._hooks import (
    TO_BROWSER,
    TO_SERVICE,
    Direction,
    SignalHook,
    UsageRecord,
    log_frame,
    now_wall,
    run_hooks,
)
from ._updates import KernelUpdates, Pending, Revert, SendUpdate, Settled, UpdateAction, WidgetState

# the name users configure (docs/signaling.md), kept from when this module was ``relay.py``
log = logging.getLogger("decart_widget.widget.relay")

USER_AGENT = "decart-widget-kernel-relay"
#: How long `KernelRelay.shutdown` waits for the upstream close.
SHUTDOWN_WAIT = 2.0


# ---- the process-wide loop thread ----------------------------------------------------------------

#: Every widget's relay runs here; started on first use, never stopped (a daemon thread).
RELAY_THREAD = LoopThread("decart-widget-relay")


async def _nothing_to_start() -> None:
    return None


def relay_loop() -> asyncio.AbstractEventLoop:
    """The relay's event loop, running on `RELAY_THREAD` (started on first use)."""
    RELAY_THREAD.start(_nothing_to_start)
    loop = RELAY_THREAD.loop
    if loop is None:  # only if it was stopped meanwhile, which nothing does
        raise RuntimeError("the kernel relay's loop thread is not running")
    return loop


# ---- the widget side -----------------------------------------------------------------------------


class RelayHost(Protocol):
    """What the relay needs from its widget (called on the relay thread)."""

    @property
    def ice_servers(self) -> list[dict[str, Any]] | None: ...
    def send_to_browser(self, content: dict[str, Any]) -> None: ...
    def revert(self, settings: WidgetState) -> None: ...
    def show_error(self, kind: str, message: str) -> None: ...


@dataclass(eq=False)
class _Connection:
    id: int
    model: str
    resolution: str | None = None
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    socket: ClientConnection | None = None
    closed_by_us: bool = False
    record: int = -1
    session: str = ""
    end_reason: str | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


def _image_error(size: int) -> str:
    return (
        f"The image is {size / 1024 / 1024:.1f} MB; the limit is "
        f"{MAX_IMAGE_BYTES / 1024 / 1024:.0f} MB. Use a smaller image."
    )


def as_the_browser_sees_it(frame: dict[str, Any], backend: Backend) -> dict[str, Any]:
    """A service frame with the LiveKit room's address the browser must dial.

    The relay reaches an emulator beside the kernel on the kernel's loopback, and the emulator
    names its room server at the host it was dialled on: the kernel's loopback, which a page on
    another host cannot reach. For a backend that gives the browser another address
    (`decart_widget._backends.browser_url`: the wildcard of an emulator on every interface, which
    the page fills with its own host) that address replaces it. Every other frame is unchanged.
    """
    url = frame.get("livekit_url")
    if frame.get("type") != "livekit_room_info" or not isinstance(url, str):
        return frame
    kernel_side, browser_side = urlsplit(backend.realtime_url), urlsplit(browser_url(backend))
    room = urlsplit(url)
    if room.netloc != kernel_side.netloc or browser_side.netloc == kernel_side.netloc:
        return frame
    return {**frame, "livekit_url": urlunsplit(room._replace(netloc=browser_side.netloc))}


class KernelRelay:
    """One widget's kernel signaling. Thread-safe entry points; the work runs on `relay_loop`."""

    def __init__(self, backend: Backend, host: RelayHost, desired: WidgetState) -> None:
        self._backend = backend
        self._host = host
        self._loop = relay_loop()
        self._updates = KernelUpdates(desired=desired)
        self._current: _Connection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.hooks: list[SignalHook] = []
        self._usage: list[UsageRecord] = []
        self._usage_lock = threading.Lock()
        self._shut = False

    # ---- thread-safe entry points ----------------------------------------------------------------

    @property
    def usage(self) -> list[UsageRecord]:
        with self._usage_lock:
            return list(self._usage)

    def open(self, conn_id: int, model: str, resolution: str | None = None) -> None:
        self._call(self._open, conn_id, model, resolution)

    def frame(self, conn_id: int, frame: dict[str, Any], buffers: list[bytes]) -> None:
        self._call(self._from_browser, conn_id, frame, buffers)

    def close_connection(self, conn_id: int, code: int | None, reason: str) -> None:
        self._call(self._close_from_browser, conn_id, code, reason)

    def set_desired(self, settings: WidgetState) -> None:
        self._call(self._set_desired, settings)

    def shutdown(self, wait: float = SHUTDOWN_WAIT) -> None:
        """Close the upstream connection (the widget is closing); waits up to ``wait`` s."""
        if self._shut:
            return
        self._shut = True
        future: Future[None] = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        if not RELAY_THREAD.is_current():
            with contextlib.suppress(Exception):
                future.result(wait)

    def _call(self, function: Callable[..., Any], *args: Any) -> None:
        if self._shut:
            return

        def guarded() -> None:
            try:
                function(*args)
            except Exception:
                log.exception("kernel relay: %s failed", getattr(function, "__name__", function))

        self._loop.call_soon_threadsafe(guarded)

    # ---- browser -> service (relay thread) -------------------------------------------------------

    def _open(self, conn_id: int, model: str, resolution: str | None) -> None:
        if self._current is not None:
            self._end(self._current, 1000, "replaced by a new connection", "closed")
        conn = _Connection(conn_id, model, resolution)
        self._current = conn
        self._updates.opened()
        with self._usage_lock:
            self._usage.append(UsageRecord("", model, 0, None, now_wall()))
            conn.record = len(self._usage) - 1
        conn.session = f"conn {conn_id}"
        self._spawn(conn, self._run(conn))

    def _from_browser(self, conn_id: int, frame: dict[str, Any], buffers: list[bytes]) -> None:
        conn = self._current
        if conn is None or conn.id != conn_id:
            return
        if frame.get("type") == "set_image" and "image_data" not in frame:
            image = bytes(buffers[0]) if buffers else None
            if image is not None and len(image) > MAX_IMAGE_BYTES:
                # refused here, never sent; settled like a failed ack (it may be the handshake)
                error = _image_error(len(image))
                entry = self._updates.browser_frame({**frame, "image_data": None})
                self._reply_failed_ack(conn, frame, error)
                if entry is not None:
                    self._carry_out(conn, self._updates.reject(self._now(), entry, error))
                return
            frame = {
                **frame,
                "image_data": None if image is None else base64.b64encode(image).decode("ascii"),
            }
        entry = self._updates.browser_frame(frame)
        self._to_service(conn, frame, entry, "browser")

    def _to_service(
        self, conn: _Connection, frame: dict[str, Any], entry: Pending | None, origin: str
    ) -> None:
        verdict = run_hooks(self.hooks, frame, TO_SERVICE)
        if verdict.frame is None:
            if verdict.rejected is not None and entry is not None:
                log.info(
                    "[%s] %s rejected by a hook: %s",
                    conn.session,
                    frame.get("type"),
                    verdict.rejected,
                )
                self._deliver_ack(conn, _failed_ack(frame, verdict.rejected), entry)
                self._carry_out(conn, self._updates.reject(self._now(), entry, verdict.rejected))
            else:
                log.info("[%s] %s dropped by a hook", conn.session, frame.get("type"))
                if entry is not None:
                    self._updates.withdraw(entry)
            return
        sent = verdict.frame
        if entry is not None and sent is not frame and isinstance(sent.get("prompt"), str):
            entry.prompt = sent["prompt"]  # the ack comes back with the text the service got
        log_frame(sent, TO_SERVICE, origin, conn.session)
        conn.queue.put_nowait(json.dumps(sent, separators=(",", ":")))

    def _reply_failed_ack(self, conn: _Connection, frame: dict[str, Any], error: str) -> None:
        self._send(conn, {"type": "signal", "id": conn.id, "frame": _failed_ack(frame, error)})

    def _close_from_browser(self, conn_id: int, code: int | None, reason: str) -> None:
        conn = self._current
        if conn is not None and conn.id == conn_id:
            self._end(conn, code or 1000, reason, "closed")

    def _set_desired(self, settings: WidgetState) -> None:
        conn = self._current
        actions = self._updates.set_desired(self._now(), settings)
        if conn is not None:
            self._carry_out(conn, actions)

    async def _shutdown(self) -> None:
        conn = self._current
        if conn is not None:
            self._end(conn, 1000, "widget closed", "closed")
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()

    # ---- the upstream connection (relay thread) --------------------------------------------------

    async def _run(self, conn: _Connection) -> None:
        try:
            key = await relay_key(self._backend, conn.model, self._host.ice_servers)
            url = build_stream_url(
                self._backend.realtime_url, key, conn.model, resolution=conn.resolution
            )
            log.info("[%s] opening %s", conn.session, redact(url))
            socket = await open_upstream(url, user_agent=USER_AGENT)
        except Exception as exc:
            reason = connect_failure(exc)
            log.warning("[%s] could not connect: %s", conn.session, reason)
            if conn is self._current:
                self._send(
                    conn, {"type": "signal_closed", "id": conn.id, "code": None, "reason": reason}
                )
                self._end(conn, None, reason, "refused")
            return
        if conn is not self._current or conn.closed_by_us:
            await socket.close()
            return
        conn.socket = socket
        self._send(conn, {"type": "signal_opened", "id": conn.id})
        self._spawn(conn, self._write(conn, socket))
        try:
            async for text in socket:
                if isinstance(text, str):
                    self._from_service(conn, text)
        except websockets.ConnectionClosed:
            pass
        except Exception:
            log.exception("[%s] reading the service failed", conn.session)
        code, reason = socket.close_code, socket.close_reason or ""
        if conn is self._current and not conn.closed_by_us:
            log.info("[%s] the service closed the connection (%s) %s", conn.session, code, reason)
            self._send(
                conn, {"type": "signal_closed", "id": conn.id, "code": code, "reason": reason}
            )
            self._end(conn, None, reason, "closed" if code == 1000 else "lost")

    async def _write(self, conn: _Connection, socket: ClientConnection) -> None:
        while True:
            text = await conn.queue.get()
            if text is None:
                return
            try:
                await socket.send(text)
            except websockets.ConnectionClosed:
                return

    def _from_service(self, conn: _Connection, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            frame = None
        if not isinstance(frame, dict):
            self._send(conn, {"type": "signal", "id": conn.id, "frame": text})
            return
        self._account(conn, frame)
        entry: Pending | None = None
        actions: list[UpdateAction] = []
        if frame.get("type") in ("prompt_ack", "set_image_ack"):
            actions = self._updates.ack(self._now(), frame)
            entry = next((a.pending for a in actions if isinstance(a, Settled)), None)
        self._deliver(conn, frame, entry)
        self._carry_out(conn, actions)

    def _deliver_ack(self, conn: _Connection, ack: dict[str, Any], entry: Pending) -> None:
        self._deliver(conn, ack, entry, hooks=False)

    def _deliver(
        self, conn: _Connection, frame: dict[str, Any], entry: Pending | None, hooks: bool = True
    ) -> None:
        """Show a service frame to the hooks and pass it to the browser."""
        if (
            entry is not None
            and frame.get("type") == "prompt_ack"
            and entry.frame.get("prompt") != frame.get("prompt")
        ):
            # a hook changed the prompt on its way: the browser's core knows the widget's text
            frame = {**frame, "prompt": entry.frame.get("prompt")}
        if hooks:
            verdict = run_hooks(self.hooks, frame, TO_BROWSER)
            if verdict.frame is None:
                return
            frame = verdict.frame
        frame = as_the_browser_sees_it(frame, self._backend)
        log_frame(frame, TO_BROWSER, "service", conn.session)
        self._send(conn, {"type": "signal", "id": conn.id, "frame": frame})

    def _carry_out(self, conn: _Connection, actions: list[UpdateAction]) -> None:
        for action in actions:
            if isinstance(action, SendUpdate):
                if conn is self._current and conn.socket is not None:
                    self._to_service(conn, action.frame, action.pending, "kernel")
                else:
                    self._updates.withdraw(action.pending)
            elif isinstance(action, Settled):
                if not action.success and action.pending.origin == "kernel":
                    error = (
                        ModerationError(action.error or "rejected")
                        if action.by_hook
                        else ack_error(action.error, action.timed_out)
                    )
                    self._host.show_error(error.kind, str(error))
            elif isinstance(action, Revert):
                self._host.revert(action.settings)
        self._schedule_timer()

    def _schedule_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._updates.next_deadline()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        conn = self._current
        actions = self._updates.on_timer(self._now())
        if conn is not None:
            self._carry_out(conn, actions)

    # ---- usage and ending ------------------------------------------------------------------------

    def _account(self, conn: _Connection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "session_id" and isinstance(frame.get("session_id"), str):
            conn.session = frame["session_id"]
            self._update_record(conn, id=frame["session_id"])
        elif kind == "generation_tick" and isinstance(frame.get("seconds"), (int, float)):
            self._update_record(conn, seconds=int(frame["seconds"]))
        elif kind == "generation_ended":
            seconds = frame.get("seconds")
            reason = frame.get("reason")
            conn.end_reason = reason if isinstance(reason, str) else "error"
            if isinstance(seconds, (int, float)):
                self._update_record(conn, seconds=int(seconds))

    def _update_record(self, conn: _Connection, **changes: Any) -> None:
        with self._usage_lock:
            if 0 <= conn.record < len(self._usage):
                self._usage[conn.record] = replace(self._usage[conn.record], **changes)

    def _end(self, conn: _Connection, code: int | None, reason: str, why: str) -> None:
        """Close this connection (if ours to close) and record its end, once."""
        if conn is self._current:
            self._current = None
            self._updates.closed()
        if not conn.closed_by_us:
            conn.closed_by_us = True
            conn.queue.put_nowait(None)
            socket = conn.socket
            if socket is not None:
                self._spawn(conn, _close(socket, code or 1000, reason))
            else:
                for task in conn.tasks:
                    task.cancel()
        if self._record_live(conn):
            self._update_record(conn, end_reason=conn.end_reason or why, ended_at=now_wall())
        log.info("[%s] ended: %s", conn.session, conn.end_reason or why)

    def _record_live(self, conn: _Connection) -> bool:
        with self._usage_lock:
            return 0 <= conn.record < len(self._usage) and self._usage[conn.record].live

    # ---- plumbing --------------------------------------------------------------------------------

    def _send(self, conn: _Connection, content: dict[str, Any]) -> None:
        try:
            self._host.send_to_browser(content)
        except Exception:
            log.exception("[%s] sending to the browser failed", conn.session)

    def _spawn(self, conn: _Connection, coro: Any) -> None:
        task = self._loop.create_task(coro)
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    def _now(self) -> float:
        return self._loop.time()


async def _close(socket: ClientConnection, code: int, reason: str) -> None:
    if code != 1000 and not 3000 <= code <= 4999:
        code = 1000
    with contextlib.suppress(Exception):
        await asyncio.wait_for(socket.close(code, reason[:120]), 5)


def _failed_ack(frame: dict[str, Any], error: str) -> dict[str, Any]:
    if frame.get("type") == "prompt":
        return {
            "type": "prompt_ack",
            "prompt": frame.get("prompt"),
            "success": False,
            "error": error,
        }
    return {"type": "set_image_ack", "success": False, "error": error}


__all__ = ["RELAY_THREAD", "Direction", "KernelRelay", "RelayHost", "relay_loop"]
