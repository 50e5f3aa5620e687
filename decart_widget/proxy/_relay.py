"""One client <-> upstream pair: buffering, forwarding unchanged, metering, closing.

The handler's task reads the client; a second task opens the upstream connection (with the
proxy's key, the client's ``model`` URL-encoded, ``resolution`` and Gen-B's
``livekit_early_room_info=true`` if given, and nothing else),
flushes the frames the client sent meanwhile, in order, and then reads the upstream. Frames go
through unchanged in both directions; the relay only looks at them:

* client frames must be JSON objects with a string ``type`` (else close 4008) and within the
  frame and image limits (else 4009); ``prompt``/``set_image`` count against the prompt rate
  (else 4029) and are logged (prompts cut to 80 characters; a prompt's line is written when
  its ``prompt_ack`` arrives, matched by text, with the ack's ``success``/``error`` and
  ``ack_ms``: one line a prompt, not two; prompts never acked are logged at the session's end);
* ``generation_tick`` and ``generation_ended`` are written to the ledger, durably, **before** they
  are forwarded; the user's quota is checked after each (close 4002 when exhausted);
* ``session_id`` (Gen-A) or ``livekit_room_info``'s ``session_id`` (Gen-B) renames the session in
  the logs and is stored in the ledger;
* an authentication ``error`` frame (or close 4001/4003) from the service is about the proxy's
  own key, never the user's: it is not forwarded, the client gets 1011 "the platform is
  misconfigured" (`codes.KEY_REFUSED_REASON`) and the log an error-level ``upstream_key_refused``.

Either side closing closes the other (codes mapped by `decart_widget.proxy.codes`); the end is
recorded once, with its reason, in the ledger, the metrics and the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WSMsgType, web

from ..protocol._constants import CLOSE_TRY_AGAIN_LATER, decoded_size
from ..protocol._errors import AuthenticationError, ProtocolError, classify
from ..protocol._urls import build_stream_url
from ..protocol.messages import END_REASONS, client_message, decode_object, load_json
from . import codes
from ._config import ProxyConfig
from ._frames import (
    UpstreamSocket,
    congested,
    fast_queue,
    write_text_now,
)
from ._ledger import Ledger, LedgerError
from ._limits import MAX_IMAGE_BYTES, BufferFull, PendingBuffer, TokenBucket
from ._logs import SessionLogger, cut_prompt
from ._metrics import Metrics

if TYPE_CHECKING:
    from aiohttp.http_websocket import WSMessageTextBytes

log = logging.getLogger("decart_widget.proxy.session")

TO_UPSTREAM = "client_to_upstream"
TO_CLIENT = "upstream_to_client"
#: How often a session re-reads its user's usage from the ledger (other sessions' seconds).
QUOTA_REFRESH_SECONDS = 5.0
USER_AGENT = "decart-widget-proxy"
#: Prompt texts awaiting their ack at most; beyond, the oldest is logged without one.
MAX_UNACKED_PROMPTS = 32
#: A tick the ledger has not committed within this many seconds ends the session (1011).
LEDGER_TIMEOUT = 10.0
#: Upstream frames that are written to the ledger before they are forwarded.
METERED = ("generation_tick", "generation_ended")


@dataclass
class RelayContext:
    """What every relay shares: settings, the ledger, counters, the upstream HTTP session."""

    config: ProxyConfig
    ledger: Ledger
    metrics: Metrics
    http: aiohttp.ClientSession


@dataclass
class Ending:
    reason: str  # the end reason in the ledger and the metrics
    client_code: int
    client_reason: str
    upstream_code: int


def _image_bytes(image_data: object) -> int:
    """The decoded size of raw base64 (no decoding needed)."""
    return decoded_size(image_data) if isinstance(image_data, str) else 0


class Relay:
    def __init__(
        self,
        ctx: RelayContext,
        client: web.WebSocketResponse,
        *,
        session_id: str,
        user: str,
        model: str,
        resolution: str | None,
        quota: float | None,
        quota_since: float | None,
        client_address: str | None = None,
        early_room_info: bool = False,
    ) -> None:
        self.ctx = ctx
        self.client = client
        self.id = session_id
        self.user = user
        self.model = model
        self.resolution = resolution
        self.quota = quota
        self.quota_since = quota_since
        self.client_address = client_address
        self.early_room_info = early_room_info
        self.upstream: aiohttp.ClientWebSocketResponse[bool] | None = None
        self.upstream_session_id: str | None = None
        self.seconds = 0.0
        self.started = time.monotonic()
        self.frames = {TO_UPSTREAM: 0, TO_CLIENT: 0}
        self.ending: Ending | None = None
        self.log = SessionLogger(log, session_id, user, model)
        limits = ctx.config.limits
        self._pending = PendingBuffer(limits.max_pending_frames, limits.max_pending_bytes)
        self._bucket = (
            TokenBucket(limits.prompt_rate, limits.prompt_burst, time.monotonic())
            if limits.prompt_rate
            else None
        )
        self._upstream_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        #: A shutdown started from synchronous code (`_end_soon`) is on its way.
        self._ending_soon = False
        self._generation_ended: str | None = None
        self._quota_base: float | None = None
        self._quota_checked = 0.0
        #: Prompts forwarded and not yet acknowledged, by text: (when, enhance_prompt) each.
        self._unacked: dict[str, list[tuple[float, object]]] = {}

    # ---- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the session until both sides are closed."""
        self.log.event(
            "session_open",
            resolution=self.resolution,
            client=self.client_address,
            instance=self.ctx.config.instance,
        )
        self._upstream_task = asyncio.create_task(self._upstream_side(), name=f"upstream-{self.id}")
        try:
            await self._client_side()
        except ConnectionError as exc:  # e.g. a pong written to a client that just vanished
            self.log.event("client_lost", error=str(exc))
            await self.shutdown("client_lost", codes.NORMAL, "", codes.GOING_AWAY)
        except Exception:
            log.exception("client side of %s failed", self.id)
            await self.shutdown(
                "internal_error", codes.UPSTREAM_ERROR, "internal proxy error", codes.GOING_AWAY
            )
        finally:
            if self.ending is None:  # cancelled: the server is going away
                await self.shutdown(
                    "shutdown", codes.GOING_AWAY, "proxy shutting down", codes.GOING_AWAY
                )
            task = self._upstream_task
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._closed.wait()

    async def shutdown(
        self, reason: str, client_code: int, client_reason: str, upstream_code: int
    ) -> None:
        """End the session (the first call wins): close both sides, record the end."""
        if self.ending is not None:
            await self._closed.wait()
            return
        self.ending = Ending(reason, client_code, codes.cut_reason(client_reason), upstream_code)
        try:
            await self._close_sockets(self.ending)
        finally:
            await self._record_end(self.ending)
            self._closed.set()

    async def _close_sockets(self, ending: Ending) -> None:
        timeout = self.ctx.config.close_timeout + 1.0
        closes = []
        if not self.client.closed:
            closes.append(
                self.client.close(
                    code=ending.client_code, message=ending.client_reason.encode("utf-8")
                )
            )
        upstream = self.upstream
        if upstream is not None and not upstream.closed:
            closes.append(upstream.close(code=ending.upstream_code))
        task = self._upstream_task
        if (
            upstream is None
            and task is not None
            and not task.done()
            and task is not asyncio.current_task()
        ):
            task.cancel()  # still connecting
        if not closes:
            return
        tasks = [asyncio.ensure_future(close) for close in closes]
        try:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
        except asyncio.CancelledError:
            await _cancelled(tasks)
            self._abort_sockets()
            raise
        if pending:
            self.log.event("close_timeout", logging.WARNING)
            await _cancelled(pending)
            self._abort_sockets()
        for finished in done:
            error = None if finished.cancelled() else finished.exception()
            if error is not None and not isinstance(error, ConnectionError):
                self.log.event("close_failed", logging.DEBUG, error=repr(error))

    def _abort_sockets(self) -> None:
        """Drop both connections at once, unsent bytes and all: a close that did not finish
        in time waits for a peer that does not read (a transport's own ``close`` would wait
        for its buffer to drain, holding the session and its descriptors)."""
        for ws in (self.client, self.upstream):
            writer = ws._writer if ws is not None else None
            transport = writer.transport if writer is not None else None
            if transport is not None:
                transport.abort()

    async def _record_end(self, ending: Ending) -> None:
        for text, sent in self._unacked.items():  # prompts the session ended before an ack of
            self._log_prompt(text, sent, None)
        self._unacked.clear()
        metrics = self.ctx.metrics
        metrics.ends[ending.reason] += 1
        try:
            await asyncio.wait_for(
                self.ctx.ledger.end_session(
                    self.id, ending.reason, now=time.time(), seconds=self.seconds
                ),
                LEDGER_TIMEOUT,
            )
        except (LedgerError, asyncio.TimeoutError) as exc:
            # The lease runs out and another proxy's reap closes the row ("lost").
            metrics.ledger_errors += 1
            self.log.event(
                "ledger_error", logging.ERROR, op="end_session", error=str(exc) or "timeout"
            )
        self.log.event(
            "session_closed",
            reason=ending.reason,
            client_code=ending.client_code,
            client_reason=ending.client_reason,
            upstream_code=ending.upstream_code if self.upstream is not None else None,
            generation_ended=self._generation_ended,
            seconds=self.seconds,
            duration=round(time.monotonic() - self.started, 3),
            frames_in=self.frames[TO_UPSTREAM],
            frames_out=self.frames[TO_CLIENT],
        )

    # ---- the client side ----------------------------------------------------------------------

    async def _client_side(self) -> None:
        client = self.client
        queue = fast_queue(client)
        if queue is not None:
            queue.hook = self._on_client_text
        try:
            while self.ending is None:
                if queue is not None:
                    queue.held = False
                msg = await client.receive()
                if queue is not None:
                    queue.held = True
                await self._client_message(msg)
        finally:
            if queue is not None:
                queue.hook = None

    async def _client_message(self, msg: aiohttp.WSMessage) -> None:
        if msg.type is WSMsgType.TEXT:
            await self._from_client(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await self._refuse(
                "malformed_frame", codes.MALFORMED_FRAME, "binary frames are not supported"
            )
        elif msg.type is WSMsgType.CLOSE:
            code = msg.data if isinstance(msg.data, int) else None
            # a client that leaves after the service ended the generation leaves because of it
            reason = (
                "client_closed"
                if self._generation_ended is None
                else _end_reason(None, self._generation_ended)
            )
            await self.shutdown(reason, codes.NORMAL, "", codes.from_client(code))
        elif msg.type is WSMsgType.ERROR:
            error = msg.data
            if isinstance(error, aiohttp.WebSocketError) and (
                error.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            ):
                limit = self.ctx.config.limits.max_frame_bytes
                self.log.event("frame_too_big", logging.WARNING, limit=limit)
                await self.shutdown(
                    "frame_too_big",
                    codes.FRAME_TOO_BIG,
                    f"frame too big (limit {limit} bytes)",
                    codes.NORMAL,
                )
            else:
                self.log.event("client_error", logging.WARNING, error=str(error))
                await self.shutdown(
                    "client_error", codes.MALFORMED_FRAME, "protocol error", codes.GOING_AWAY
                )
        elif self.ending is None:  # CLOSING / CLOSED: the connection dropped
            self.log.event("client_lost")
            await self.shutdown("client_lost", codes.NORMAL, "", codes.GOING_AWAY)

    async def _refuse(self, reason: str, code: int, text: str) -> None:
        self.log.event(reason, logging.WARNING, detail=text)
        await self.shutdown(reason, code, text, codes.NORMAL)

    def _on_client_text(self, text: str) -> bool:
        """A client's text frame, inside the socket's read (see `decart_widget.proxy._frames`):
        checked and forwarded (or refused) now; False leaves it to the client task."""
        if self.ending is not None or self._ending_soon:
            return True  # the session is ending: nothing more goes upstream
        upstream = self.upstream
        if upstream is not None and congested(upstream):
            return False  # the task's send_str waits for the upstream to drain
        try:
            refusal = self._check_client_frame(text)
            if refusal is None:
                if upstream is None:
                    refusal = self._hold(text)
                else:
                    self._send_upstream_now(upstream, text)
        except Exception:
            log.exception("client side of %s failed", self.id)
            refusal = ("internal_error", codes.UPSTREAM_ERROR, "internal proxy error")
        if refusal is not None:
            self._end_soon(self._refuse(*refusal))
        return True

    async def _from_client(self, text: str) -> None:
        if self.ending is not None or self._ending_soon:
            return
        refusal = self._check_client_frame(text)
        if refusal is None and self.upstream is None:
            refusal = self._hold(text)
        elif refusal is None:
            await self._to_upstream(text)
            return
        if refusal is not None:
            await self._refuse(*refusal)

    def _check_client_frame(self, text: str) -> tuple[str, int, str] | None:
        """Check, count and log a client's frame; the refusal (reason, code, text) if any."""
        try:
            obj = decode_object(text)
            kind = obj["type"]
            # A prompt, the frequent frame, checked here as `client_message` checks it, without
            # making the message object; any other frame through `client_message`.
            if not (
                kind == "prompt"
                and type(obj.get("prompt")) is str
                and type(obj.get("enhance_prompt", True)) is bool
            ):
                kind = client_message(obj).type
        except ProtocolError as exc:
            return "malformed_frame", codes.MALFORMED_FRAME, f"malformed frame: {exc}"
        if kind == "prompt" or kind == "set_image":
            if self._bucket is not None and not self._bucket.take(time.monotonic()):
                limits = self.ctx.config.limits
                return (
                    "rate_limited",
                    codes.RATE_LIMITED,
                    f"Too many prompts: at most {limits.prompt_rate:g} a second "
                    f"(bursts of {limits.prompt_burst})",
                )
            if kind == "prompt":
                self.ctx.metrics.prompts += 1
                self._prompt_sent(obj.get("prompt"), obj.get("enhance_prompt"))
            else:
                size = _image_bytes(obj.get("image_data"))
                if size > MAX_IMAGE_BYTES:
                    return (
                        "frame_too_big",
                        codes.FRAME_TOO_BIG,
                        f"image too large: {size} bytes (limit {MAX_IMAGE_BYTES})",
                    )
                self.ctx.metrics.images += 1
                prompt = obj.get("prompt")
                self.log.event(
                    "set_image",
                    image_bytes=size if obj.get("image_data") is not None else None,
                    prompt=cut_prompt(prompt if isinstance(prompt, str) else None),
                    enhance=obj.get("enhance_prompt"),
                )
        elif kind == "offer":
            self.log.event("offer", logging.DEBUG)
        return None

    def _hold(self, text: str) -> tuple[str, int, str] | None:
        """Buffer a frame until the upstream connection is open; the refusal when full."""
        try:
            self._pending.push(text)
        except BufferFull as exc:
            return "buffer_overflow", codes.FRAME_TOO_BIG, str(exc)
        return None

    def _end_soon(self, ending: Coroutine[Any, Any, None]) -> None:
        """Run ``ending`` (a `shutdown`) from synchronous code; frames are dropped meanwhile."""
        self._ending_soon = True
        self._spawn(ending)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _send_upstream_now(
        self, upstream: aiohttp.ClientWebSocketResponse[bool], text: str
    ) -> None:
        try:
            write_text_now(upstream, text)
        except (ConnectionError, RuntimeError) as exc:
            # The upstream side notices the loss itself and ends the session.
            self.log.event("upstream_send_failed", logging.DEBUG, error=str(exc))
            return
        self.frames[TO_UPSTREAM] += 1
        self.ctx.metrics.forwarded(TO_UPSTREAM, len(text))

    async def _to_upstream(self, text: str) -> None:
        upstream = self.upstream
        assert upstream is not None
        try:
            await upstream.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            # The upstream side notices the loss itself and ends the session.
            self.log.event("upstream_send_failed", logging.DEBUG, error=str(exc))
            return
        self.frames[TO_UPSTREAM] += 1
        self.ctx.metrics.forwarded(TO_UPSTREAM, len(text))

    # ---- the upstream side --------------------------------------------------------------------

    async def _upstream_side(self) -> None:
        try:
            upstream = await self._connect()
        except asyncio.CancelledError:
            return
        if upstream is None:
            return
        try:
            # Flush what the client sent meanwhile, in order; `upstream` is published only when
            # the buffer is empty, with no await in between, so no frame can overtake another.
            while self._pending and self.ending is None:
                frame = self._pending.pop()
                await upstream.send_str(frame)
                self.frames[TO_UPSTREAM] += 1
                self.ctx.metrics.forwarded(TO_UPSTREAM, len(frame))
            if self.ending is not None:
                await upstream.close(code=self.ending.upstream_code)
                return
            self.upstream = upstream
            await self._upstream_loop(upstream)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(upstream.close(code=codes.GOING_AWAY), 1.0)
            raise
        except (ConnectionError, aiohttp.ClientError) as exc:
            await self.shutdown(
                "upstream_lost",
                codes.UPSTREAM_ERROR,
                f"upstream connection lost: {exc}",
                codes.GOING_AWAY,
            )
        except Exception:
            log.exception("upstream side of %s failed", self.id)
            await self.shutdown(
                "internal_error", codes.UPSTREAM_ERROR, "internal proxy error", codes.GOING_AWAY
            )

    async def _connect(self) -> aiohttp.ClientWebSocketResponse[bool] | None:
        config = self.ctx.config
        url = build_stream_url(
            config.upstream_url, config.api_key, self.model, resolution=self.resolution
        )
        if self.early_room_info:  # Decart's Python SDK: room info before its initial state
            url += "&livekit_early_room_info=true"
        started = time.monotonic()
        try:
            upstream = await asyncio.wait_for(
                self.ctx.http.ws_connect(
                    url,
                    autoping=True,
                    compress=0,
                    max_msg_size=config.limits.max_frame_bytes,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=config.close_timeout),
                    headers={"User-Agent": USER_AGENT},
                ),
                config.upstream_connect_timeout,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in codes.UPSTREAM_KEY_REFUSED_STATUS:
                await self._key_refused(f"HTTP {exc.status}")
                return None
            self.log.event("upstream_refused", logging.WARNING, status=exc.status)
            if exc.status == 429:
                code, text = codes.CONCURRENCY_LIMIT, "Concurrent session limit reached (upstream)."
            else:
                code, text = codes.UPSTREAM_ERROR, f"upstream unavailable (HTTP {exc.status})"
            await self.shutdown("upstream_unreachable", code, text, codes.NORMAL)
            return None
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            detail = "timed out" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
            self.log.event("upstream_unreachable", logging.WARNING, error=detail)
            await self.shutdown(
                "upstream_unreachable",
                codes.UPSTREAM_ERROR,
                f"upstream unavailable: {detail}",
                codes.NORMAL,
            )
            return None
        if isinstance(upstream, UpstreamSocket):
            upstream.fix_payload()
        elapsed = time.monotonic() - started
        self.ctx.metrics.upstream_connects += 1
        self.ctx.metrics.upstream_connect_seconds += elapsed
        self.log.event("upstream_open", connect_ms=round(elapsed * 1000, 1))
        return upstream

    async def _upstream_loop(self, upstream: aiohttp.ClientWebSocketResponse[bool]) -> None:
        queue = fast_queue(upstream)
        if queue is not None:
            queue.hook = self._on_upstream_text
        try:
            while self.ending is None:
                if queue is not None:
                    queue.held = False
                msg = await upstream.receive()
                if queue is not None:
                    queue.held = True
                await self._upstream_message(msg)
        finally:
            if queue is not None:
                queue.hook = None

    async def _upstream_message(self, msg: aiohttp.WSMessage | WSMessageTextBytes) -> None:
        if msg.type is WSMsgType.TEXT:
            await self._from_upstream(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await self._to_client_bytes(msg.data)
        elif msg.type is WSMsgType.CLOSE:
            code = msg.data if isinstance(msg.data, int) else None
            reason = msg.extra if isinstance(msg.extra, str) else ""
            if code in codes.UPSTREAM_KEY_REFUSED:
                await self._key_refused(f"close {code} {reason}".strip())
                return
            client_code, client_reason = codes.from_upstream(code, reason)
            end = _end_reason(code, self._generation_ended)
            self.log.event("upstream_closed", code=code, reason=reason)
            await self.shutdown(end, client_code, client_reason, codes.NORMAL)
        elif msg.type is WSMsgType.ERROR:
            self.log.event("upstream_error", logging.WARNING, error=str(msg.data))
            await self.shutdown(
                "upstream_error",
                codes.UPSTREAM_ERROR,
                "upstream protocol error",
                codes.NORMAL,
            )
        elif self.ending is None:  # CLOSED / CLOSING without a close frame: lost
            self.log.event("upstream_lost", logging.WARNING)
            await self.shutdown(
                "upstream_lost",
                codes.UPSTREAM_ERROR,
                "upstream connection lost",
                codes.NORMAL,
            )

    def _on_upstream_text(self, text: str) -> bool:
        """An upstream text frame, inside the socket's read: inspected and forwarded now, except
        the ones the ledger must see first (False: the upstream task's path)."""
        if self.ending is not None or self._ending_soon:
            return True
        if congested(self.client):
            return False  # the task's send_str waits for the client to drain
        obj, kind = _decode(text)
        if kind in METERED:
            return False
        try:
            refused = self._inspect_upstream(obj, kind, text)
            if refused is not None:
                self._end_soon(self._key_refused(refused))
            else:
                self._send_client_now(text)
        except Exception:
            log.exception("upstream side of %s failed", self.id)
            self._end_soon(
                self.shutdown(
                    "internal_error",
                    codes.UPSTREAM_ERROR,
                    "internal proxy error",
                    codes.GOING_AWAY,
                )
            )
        return True

    async def _from_upstream(self, text: str) -> None:
        if self._ending_soon:
            return
        obj, kind = _decode(text)
        if kind == "generation_tick":
            if not await self._meter(obj.get("seconds")):
                return
        elif kind == "generation_ended":
            reason = obj.get("reason")
            self._generation_ended = reason if isinstance(reason, str) else "error"
            self.log.event(
                "generation_ended", seconds=obj.get("seconds"), end_reason=self._generation_ended
            )
            if not await self._meter(obj.get("seconds")):
                return
        else:
            refused = self._inspect_upstream(obj, kind, text)
            if refused is not None:
                await self._key_refused(refused)
                return
        await self._to_client(text)
        if kind == "generation_tick" and self.quota is not None:
            await self._check_quota()

    def _inspect_upstream(self, obj: Any, kind: object, text: str) -> str | None:
        """Log (and note) an upstream frame other than a metered one; the detail of an
        authentication error about the proxy's own key, which must not be forwarded."""
        if kind in ("session_id", "livekit_room_info"):
            sid = obj.get("session_id")
            if isinstance(sid, str) and sid and sid != self.upstream_session_id:
                self.upstream_session_id = sid
                self.log.session = sid
                self.log.event(kind)
                self._spawn(self._store_upstream_id(sid))
        elif kind == "prompt_ack":
            self._prompt_acked(obj)
        elif kind == "set_image_ack":
            self.log.event("set_image_ack", success=obj.get("success"), error=obj.get("error"))
        elif kind == "generation_started":
            self.log.event("generation_started")
        elif kind == "error":
            error = obj.get("error")
            if isinstance(error, str) and isinstance(classify(error), AuthenticationError):
                # The service's words for a bad key would make the client blame its user.
                return error
            self.log.event("upstream_error_message", logging.WARNING, error=error)
        elif kind is None:
            self.log.event("upstream_malformed_frame", logging.WARNING, size=len(text))
        return None

    # ---- a prompt and its ack: one log line --------------------------------------------------

    def _prompt_sent(self, prompt: object, enhance: object) -> None:
        """Hold the prompt's log line until its ack (matched by text, as clients match them)."""
        text = prompt if isinstance(prompt, str) else ""
        if len(self._unacked) >= MAX_UNACKED_PROMPTS:  # an upstream that never acks
            oldest = next(iter(self._unacked))
            self._log_prompt(oldest, self._unacked.pop(oldest), None)
        self._unacked.setdefault(text, []).append((time.monotonic(), enhance))

    def _prompt_acked(self, ack: dict[str, Any]) -> None:
        prompt = ack.get("prompt")
        text = prompt if isinstance(prompt, str) else None
        waiting = self._unacked.get(text) if text is not None else None
        if text is None or not waiting:  # an ack for no prompt of this session's client
            self.log.event(
                "prompt_ack",
                prompt=cut_prompt(text),
                success=ack.get("success"),
                error=ack.get("error"),
            )
            return
        first = waiting.pop(0)
        if not waiting:
            del self._unacked[text]
        self._log_prompt(text, [first], ack)

    def _log_prompt(
        self, text: str, sent: list[tuple[float, object]], ack: dict[str, Any] | None
    ) -> None:
        now = time.monotonic()
        for started, enhance in sent:
            self.log.event(
                "prompt",
                prompt=cut_prompt(text),
                enhance=enhance,
                success=None if ack is None else ack.get("success"),
                error=None if ack is None else ack.get("error"),
                ack_ms=None if ack is None else round((now - started) * 1000, 1),
            )

    async def _key_refused(self, detail: str) -> None:
        """The service refused the proxy's own key: a platform problem, never the user's."""
        self.log.event(
            "upstream_key_refused",
            logging.ERROR,
            detail=detail,
            hint="the service refused the proxy's API key (--api-key / DECART_API_KEY): "
            "every session fails until it is fixed",
        )
        await self.shutdown(
            "upstream_key_refused", codes.UPSTREAM_ERROR, codes.KEY_REFUSED_REASON, codes.NORMAL
        )

    async def _meter(self, seconds: object) -> bool:
        """Record a cumulative tick before it is forwarded; False if the ledger failed."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            return True
        value = float(seconds)
        if not value > self.seconds:  # also false for NaN
            return True
        metrics = self.ctx.metrics
        started = time.monotonic()
        try:
            await asyncio.wait_for(
                self.ctx.ledger.record_tick(self.id, value, now=time.time()), LEDGER_TIMEOUT
            )
        except (LedgerError, asyncio.TimeoutError) as exc:
            metrics.ledger_errors += 1
            self.log.event(
                "ledger_error", logging.ERROR, op="record_tick", error=str(exc) or "timeout"
            )
            await self.shutdown(
                "ledger_error", codes.UPSTREAM_ERROR, "usage ledger unavailable", codes.NORMAL
            )
            return False
        metrics.ledger_writes += 1
        metrics.ledger_write_seconds += time.monotonic() - started
        metrics.generation_seconds += value - self.seconds
        self.seconds = value
        return True

    async def _check_quota(self) -> None:
        assert self.quota is not None
        now = time.monotonic()
        if self._quota_base is None or now - self._quota_checked >= QUOTA_REFRESH_SECONDS:
            try:
                self._quota_base = await self.ctx.ledger.usage(
                    self.user, since=self.quota_since, exclude=self.id
                )
            except LedgerError as exc:
                self.ctx.metrics.ledger_errors += 1
                self.log.event("ledger_error", logging.ERROR, op="usage", error=str(exc))
                return
            self._quota_checked = now
        used = self._quota_base + self.seconds
        if used >= self.quota:
            self.log.event("quota_exhausted", used=used, quota=self.quota)
            await self.shutdown(
                "quota_exhausted",
                codes.QUOTA_EXHAUSTED,
                f"Usage quota exhausted (insufficient_credits): {used:g} of {self.quota:g} s used",
                codes.NORMAL,
            )

    async def _store_upstream_id(self, sid: str) -> None:
        try:
            await self.ctx.ledger.set_upstream_session(self.id, sid)
        except LedgerError as exc:
            self.ctx.metrics.ledger_errors += 1
            self.log.event("ledger_error", logging.ERROR, op="set_upstream_session", error=str(exc))

    def _send_client_now(self, text: str) -> None:
        try:
            write_text_now(self.client, text)
        except (ConnectionError, RuntimeError):
            return  # the client side notices and ends the session
        self.frames[TO_CLIENT] += 1
        self.ctx.metrics.forwarded(TO_CLIENT, len(text))

    async def _to_client(self, text: str) -> None:
        try:
            await self.client.send_str(text)
        except (ConnectionError, RuntimeError):
            return  # the client side notices and ends the session
        self.frames[TO_CLIENT] += 1
        self.ctx.metrics.forwarded(TO_CLIENT, len(text))

    async def _to_client_bytes(self, data: bytes) -> None:
        try:
            await self.client.send_bytes(data)
        except (ConnectionError, RuntimeError):
            return
        self.frames[TO_CLIENT] += 1
        self.ctx.metrics.forwarded(TO_CLIENT, len(data))


async def _cancelled(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they end, their outcomes retrieved (asyncio reports an
    exception nobody retrieved at level error)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled():
            task.exception()


def _decode(text: str) -> tuple[Any, object]:
    """An upstream frame's JSON and its ``type`` (None when it is not a JSON object)."""
    try:
        obj: Any = load_json(text)
    except ValueError:
        obj = None
    return obj, obj.get("type") if isinstance(obj, dict) else None


def _end_reason(code: int | None, generation_ended: str | None) -> str:
    """The ledger's end reason when the upstream closed with ``code``."""
    if generation_ended is not None:  # the service said why: keep it
        reason = generation_ended if generation_ended in END_REASONS else "error"
        return f"generation_ended_{reason}"
    if code == CLOSE_TRY_AGAIN_LATER:
        return "concurrency_limit"
    if code == 1001:
        return "upstream_going_away"
    if code == 1011:
        return "upstream_error"
    return "upstream_closed"
