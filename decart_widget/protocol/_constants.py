"""The protocol's numbers and words, read from ``constants.json`` (docs/protocol.md).

One data file holds the limits, timeouts, backoff, close codes, error kinds and markers and end
reasons; this module gives them typed names for Python, and the front end's build bundles the same
file (js/src/constants.ts). Change a value there, and both sides change.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any, Final

_DATA: Final[dict[str, Any]] = json.loads(
    files(__package__).joinpath("constants.json").read_text("utf-8")
)


def _markers(name: str) -> tuple[str, ...]:
    return tuple(_DATA["error_markers"][name])


#: Decart's documented limit for a reference image, decoded.
MAX_IMAGE_BYTES: Final[int] = _DATA["limits"]["max_image_bytes"]
#: The largest WebSocket frame a client takes (a 10 MiB image as base64 is ~13.4 MiB).
MAX_FRAME_BYTES: Final[int] = _DATA["limits"]["max_frame_bytes"]

#: Seconds to wait for a ``prompt_ack`` / ``set_image_ack`` / the initial state's ack.
PROMPT_ACK_TIMEOUT: Final[float] = float(_DATA["timeouts"]["prompt_ack"])
IMAGE_ACK_TIMEOUT: Final[float] = float(_DATA["timeouts"]["image_ack"])
INITIAL_ACK_TIMEOUT: Final[float] = float(_DATA["timeouts"]["initial_ack"])
#: Gen-B: seconds from the ``livekit_join`` to the ``livekit_room_info`` (paused while queued).
ROOM_INFO_TIMEOUT: Final[float] = float(_DATA["timeouts"]["room_info"])
#: Seconds a (re)connect may take, from the socket to a connected peer.
CONNECT_TIMEOUT: Final[float] = float(_DATA["timeouts"]["connect"])
#: Per attempt: seconds for the signaling connection to open, and for the media (ICE, or the
#: room) to connect once started; each well under `CONNECT_TIMEOUT` (docs/where-it-works.md).
SIGNALING_OPEN_TIMEOUT: Final[float] = float(_DATA["timeouts"]["signaling_open"])
MEDIA_CONNECT_TIMEOUT: Final[float] = float(_DATA["timeouts"]["media_connect"])
#: The WebSocket opening handshake's timeout and the keep-alive ping interval (seconds).
WEBSOCKET_OPEN_TIMEOUT: Final[float] = float(_DATA["timeouts"]["websocket_open"])
WEBSOCKET_PING_INTERVAL: Final[float] = float(_DATA["timeouts"]["websocket_ping"])
#: Seconds before each reconnect attempt; their number is the number of retries.
BACKOFF: Final[tuple[float, ...]] = tuple(float(d) for d in _DATA["backoff"])
#: The media transports: ``webrtc`` (Gen-A, SDP over the socket) and ``livekit`` (Gen-B, a room).
MEDIA_TRANSPORTS: Final[tuple[str, ...]] = tuple(_DATA["media_transports"])

CLOSE_NORMAL: Final[int] = _DATA["close_codes"]["normal"]
#: WebSocket close code of "Concurrent session limit reached."
CLOSE_TRY_AGAIN_LATER: Final[int] = _DATA["close_codes"]["try_again_later"]
#: The same, as a signaling proxy relays it (application codes must be >= 3000).
CLOSE_PROXY_CONCURRENCY: Final[int] = _DATA["close_codes"]["proxy_concurrency"]

#: Every `DecartError.kind` the protocol layer knows.
ERROR_KIND_NAMES: Final[tuple[str, ...]] = tuple(_DATA["error_kinds"])
#: Lower-case fragments of server error texts, by what they mean.
PERMANENT_MARKERS: Final = _markers("permanent")
MODEL_MARKERS: Final = _markers("model")
CREDIT_MARKERS: Final = _markers("credits")
CONCURRENCY_MARKERS: Final = _markers("concurrency")
MODERATION_MARKERS: Final = _markers("moderation")
ORIGIN_MARKERS: Final = _markers("origin")

#: The ``reason`` values of ``generation_ended``.
END_REASONS: Final[tuple[str, ...]] = tuple(_DATA["end_reasons"])


def decoded_size(base64_text: str | bytes) -> int:
    """The byte count a base64 text decodes to (no decoding; a ``data:`` prefix must be gone)."""
    length = len(base64_text)
    tail = base64_text[-2:]
    padding = tail.count("=") if isinstance(tail, str) else tail.count(b"=")
    return max(0, length * 3 // 4 - padding)


def base64_length(size: int) -> int:
    """The length of the base64 text of ``size`` bytes (padded)."""
    return 4 * -(-size // 3)


__all__ = [
    "BACKOFF",
    "CLOSE_NORMAL",
    "CLOSE_PROXY_CONCURRENCY",
    "CLOSE_TRY_AGAIN_LATER",
    "CONCURRENCY_MARKERS",
    "CONNECT_TIMEOUT",
    "CREDIT_MARKERS",
    "END_REASONS",
    "ERROR_KIND_NAMES",
    "IMAGE_ACK_TIMEOUT",
    "INITIAL_ACK_TIMEOUT",
    "MAX_FRAME_BYTES",
    "MAX_IMAGE_BYTES",
    "MEDIA_CONNECT_TIMEOUT",
    "MEDIA_TRANSPORTS",
    "MODEL_MARKERS",
    "MODERATION_MARKERS",
    "ORIGIN_MARKERS",
    "PERMANENT_MARKERS",
    "PROMPT_ACK_TIMEOUT",
    "ROOM_INFO_TIMEOUT",
    "SIGNALING_OPEN_TIMEOUT",
    "WEBSOCKET_OPEN_TIMEOUT",
    "WEBSOCKET_PING_INTERVAL",
    "base64_length",
    "decoded_size",
]
