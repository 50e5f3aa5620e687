"""Limits that protect the proxy and the account behind it.

* frame size: one frame may carry a 10 MB image as base64 (docs/protocol.md), and no more;
* the buffer of client frames held while the upstream connection opens;
* the prompt rate of one session (a token bucket: ``rate`` a second, bursts of ``burst``);
* concurrent sessions per user (enforced through the ledger, so it holds across instances).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..protocol._constants import MAX_IMAGE_BYTES as MAX_IMAGE_BYTES
from ..protocol._constants import base64_length

#: base64 of the largest image, plus room for the JSON around it and a long prompt.
MAX_FRAME_BYTES = base64_length(MAX_IMAGE_BYTES) + 64 * 1024


@dataclass(frozen=True)
class Limits:
    """Every limit in one place; ``None`` switches a limit off."""

    #: Largest WebSocket message accepted from either side, in bytes.
    max_frame_bytes: int = MAX_FRAME_BYTES
    #: Client frames held while the upstream connection opens.
    max_pending_frames: int = 64
    max_pending_bytes: int = 2 * MAX_FRAME_BYTES
    #: Prompts (``prompt`` and ``set_image``) a second per session, sustained, and burst size.
    prompt_rate: float | None = 2.0
    prompt_burst: int = 10
    #: Concurrent sessions per user (across every proxy sharing the ledger).
    max_sessions_per_user: int | None = 5
    #: Generation seconds per user and period; ``None``: no quota unless set in the ledger.
    quota_seconds: float | None = None
    #: ``total``, ``day`` or ``month`` (UTC calendar periods).
    quota_period: str = "total"

    def __post_init__(self) -> None:
        if self.max_frame_bytes < 1024:
            raise ValueError("max_frame_bytes must be at least 1024")
        if self.max_pending_frames < 1 or self.max_pending_bytes < 1:
            raise ValueError("the pending buffer limits must be positive")
        if self.prompt_rate is not None and not self.prompt_rate > 0:
            raise ValueError("prompt_rate must be positive (or None for no limit)")
        if self.prompt_burst < 1:
            raise ValueError("prompt_burst must be at least 1")
        if self.max_sessions_per_user is not None and self.max_sessions_per_user < 1:
            raise ValueError("max_sessions_per_user must be at least 1 (or None for no limit)")
        if self.quota_seconds is not None and self.quota_seconds < 0:
            raise ValueError("quota_seconds must not be negative")
        if self.quota_period not in ("total", "day", "month"):
            raise ValueError("quota_period must be 'total', 'day' or 'month'")


class TokenBucket:
    """``rate`` events a second on average, bursts of up to ``burst``; time is passed in."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class BufferFull(Exception):
    """The pending buffer's frame or byte bound was reached."""


@dataclass
class PendingBuffer:
    """Client frames held, in order, until the upstream connection is open."""

    max_frames: int
    max_bytes: int
    frames: deque[str] = field(default_factory=deque)
    size: int = 0

    def push(self, frame: str) -> None:
        if len(self.frames) + 1 > self.max_frames or self.size + len(frame) > self.max_bytes:
            raise BufferFull(
                f"too much sent before the upstream connection opened "
                f"(at most {self.max_frames} frames, {self.max_bytes} bytes)"
            )
        self.frames.append(frame)
        self.size += len(frame)

    def pop(self) -> str:
        frame = self.frames.popleft()
        self.size -= len(frame)
        return frame

    def __len__(self) -> int:
        return len(self.frames)
