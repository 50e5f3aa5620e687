"""Kernel signaling hooks, default logging and the usage ledger.

``w.on_signal(callback)`` registers ``callback(frame, direction)``, called for every protocol frame
the kernel relays, on the relay's thread. ``direction`` is ``"to_service"`` (browser or kernel ->
realtime service) or ``"to_browser"``. ``frame`` is the protocol message as a dict (a
``set_image``'s ``image_data`` is raw base64). The callback returns:

* ``None`` -- pass the frame on unchanged;
* a dict -- pass this frame instead;
* ``False`` or `DROP` -- drop it;
* `Reject("reason")` (returned or raised) -- for a ``prompt`` / ``set_image`` going to the service:
  it never goes upstream and the browser gets a failed ack with that reason (``w.prompt`` reverts,
  ``w.last_error`` says why). For any other frame it is a drop.

Callbacks run in order; a frame dropped or rejected by one is not shown to the next. A callback
that raises anything else is logged and skipped (the frame passes unchanged).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..protocol._constants import decoded_size
from ..protocol._urls import redact

log = logging.getLogger("decart_widget.widget.relay")

Direction = Literal["to_service", "to_browser"]
TO_SERVICE: Final = "to_service"
TO_BROWSER: Final = "to_browser"
PROMPT_LOG_CHARS = 80


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


#: Return this (or False) from a hook to drop the frame.
DROP: Final = _Drop()


class Reject(Exception):
    """Refuse a prompt or image: the browser gets a failed ack with ``reason``."""

    def __init__(self, reason: str = "Rejected by the kernel") -> None:
        super().__init__(reason)
        self.reason = reason


SignalHook = Callable[[dict[str, Any], str], Any]


@dataclass(frozen=True)
class Verdict:
    """What the hooks decided: pass ``frame`` (maybe modified), drop it, or reject it."""

    frame: dict[str, Any] | None
    rejected: str | None = None


def run_hooks(hooks: list[SignalHook], frame: dict[str, Any], direction: Direction) -> Verdict:
    for hook in list(hooks):
        try:
            result = hook(frame, direction)
        except Reject as exc:
            result = exc
        except Exception:
            log.exception("a signal hook failed (frame passed unchanged): %r", hook)
            continue
        if isinstance(result, Reject):
            return Verdict(None, result.reason or "Rejected by the kernel")
        if result is False or result is DROP:
            return Verdict(None)
        if isinstance(result, dict):
            frame = result
        elif result is not None and result is not True:
            log.warning("a signal hook returned %r; expected None, a dict, False or Reject", result)
    return Verdict(frame)


@dataclass(frozen=True)
class UsageRecord:
    """One service session relayed by the kernel."""

    #: the service's session id ("" until it is known)
    id: str
    model: str
    #: generation seconds (cumulative, from ``generation_tick`` / ``generation_ended``)
    seconds: int
    #: None while live; then ``generation_ended``'s reason (``disconnect``, ``timeout``,
    #: ``insufficient_credits``, ...) or ``closed`` (the widget closed it), ``lost`` (the
    #: connection dropped), ``refused`` (it never opened), ``error``
    end_reason: str | None
    started_at: float
    ended_at: float | None = None

    @property
    def live(self) -> bool:
        return self.end_reason is None


def now_wall() -> float:
    return time.time()


# ---- default logging (as Decart's reference proxy: no ticks, nothing secret) -------------------


def cut_prompt(text: Any) -> str:
    if not isinstance(text, str):
        return repr(text)
    return repr(text if len(text) <= PROMPT_LOG_CHARS else text[:PROMPT_LOG_CHARS] + "…")


def base64_size(data: str) -> int:
    """Decoded size of raw base64 (no decoding)."""
    return decoded_size(data.split(",", 1)[-1] if data.startswith("data:") else data)


def log_frame(frame: dict[str, Any], direction: Direction, origin: str, session: str) -> None:
    kind = frame.get("type")
    if direction == TO_SERVICE:
        if kind == "prompt":
            log.info("[%s] prompt (%s): %s", session, origin, cut_prompt(frame.get("prompt")))
        elif kind == "set_image":
            data = frame.get("image_data")
            what = f"{base64_size(data) / 1e6:.2f} MB" if isinstance(data, str) else "cleared"
            log.info(
                "[%s] image (%s): %s, prompt %s",
                session,
                origin,
                what,
                cut_prompt(frame.get("prompt")),
            )
        return
    if kind in ("prompt_ack", "set_image_ack"):
        if frame.get("success"):
            log.debug("[%s] %s ok", session, kind)
        else:
            log.warning("[%s] %s failed: %s", session, kind, redact(str(frame.get("error"))))
    elif kind == "generation_started":
        log.info("[%s] generation started", session)
    elif kind == "generation_ended":
        log.info(
            "[%s] generation ended after %s s: %s",
            session,
            frame.get("seconds"),
            frame.get("reason"),
        )
    elif kind == "error":
        log.warning("[%s] service error: %s", session, redact(str(frame.get("error"))))
    elif kind == "session_id":
        log.info("[%s] service session id %s", session, frame.get("session_id"))
