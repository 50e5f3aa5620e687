"""Opening the realtime service's WebSocket from Python: one set of settings and failure reasons.

The headless client (`decart_widget.client._session`) and the kernel relay
(`decart_widget.widget._kernel_relay`) both open the service's ``/v1/stream`` socket with the
permanent key; they share how they open it (`open_upstream`: frame limit, timeouts, keepalive,
no compression), how a refused or failed open is put into words the session cores classify
(`connect_failure`), and how a failed ack the kernel settles itself becomes a typed error
(`ack_error`). The signaling proxy reaches the same upstream with aiohttp
(`decart_widget.proxy._relay`), deliberately: its upstream leg carries every frame of every
session, and websockets' pure-Python frame handling measured 1.2-1.5x aiohttp's CPU per prompt
round trip on that leg (200 connections on loopback, 4 interleaved rounds; docs/proxy.md,
Performance), against issue 14's goal of a proxy no costlier than Decart's reference.
"""

from __future__ import annotations

from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from .protocol._constants import MAX_FRAME_BYTES, WEBSOCKET_OPEN_TIMEOUT, WEBSOCKET_PING_INTERVAL
from .protocol._errors import AckTimeout, DecartError, ModerationError, classify
from .protocol._urls import redact


async def open_upstream(url: str, *, user_agent: str | None = None) -> ClientConnection:
    """Open ``url`` (a ``/v1/stream`` URL with its key) with the project's settings.

    The frame limit and the timeouts are the protocol's (`decart_widget.protocol._constants`).
    Compression is off: the big frames are base64 images, which deflate barely shrinks and
    which would cost CPU on both sides. Raises what `websockets.connect` raises; turn that
    into a reason with `connect_failure`.
    """
    extra: dict[str, Any] = {} if user_agent is None else {"user_agent_header": user_agent}
    return await websockets.connect(
        url,
        max_size=MAX_FRAME_BYTES,
        open_timeout=WEBSOCKET_OPEN_TIMEOUT,
        ping_interval=WEBSOCKET_PING_INTERVAL,
        compression=None,
        **extra,
    )


def connect_failure(exc: BaseException) -> str:
    """Why the socket did not open, as a close reason the session cores classify.

    An HTTP refusal keeps its status and body (``HTTP 401: ...`` is permanent, others are
    retried); anything else names the exception. The text is redacted: it never carries a key.
    """
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        body = getattr(response, "body", b"") or b""
        text = body.decode("utf-8", "replace").strip()[:200]
        return redact(f"HTTP {status}{': ' + text if text else ''}")
    return redact(f"{type(exc).__name__}: {exc}")


def ack_error(text: str | None, timed_out: bool = False) -> DecartError:
    """The typed error of a failed or missing ack: `AckTimeout`, the classified text, or
    `ModerationError` (what a refusal without a recognisable text means)."""
    if timed_out:
        return AckTimeout(text or "no ack")
    if not text:
        return ModerationError("rejected by the service")
    error = classify(text)
    return ModerationError(text) if type(error) is DecartError else error


__all__ = [
    "ack_error",
    "connect_failure",
    "open_upstream",
]
