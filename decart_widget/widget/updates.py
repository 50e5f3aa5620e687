"""The kernel relay's update bookkeeping, free of I/O: which prompt/image frames the kernel sends.

In ``signaling="kernel"`` mode the kernel is the one sender of *updates* (prompt, image, enhance
changes after the handshake), whatever their origin (a Python cell or the view's prompt box):
comm messages from the browser wait while a cell is busy, the kernel's own sends do not. The
browser's session core only sends its *handshake* (the initial state after every (re)connect);
`KernelUpdates` records it, and once it is acked brings the service to the widget's desired state.

Rules (the same as the session cores'): at most one kernel update in flight; later changes only
move the desired state, so a burst of 50 changes sends at most two frames and applies the last.
Acks match prompts by exact text and images first-in first-out. A failed ack (or a timeout)
reverts the desired state to the accepted one unless something newer was asked meanwhile.

Inputs carry ``now`` (monotonic seconds) and return actions, as in `decart_widget.protocol`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..protocol.constants import IMAGE_ACK_TIMEOUT, PROMPT_ACK_TIMEOUT

Origin = Literal["browser", "kernel"]


@dataclass(frozen=True)
class Settings:
    """What the model runs with: a prompt (None: none), a reference image (encoded bytes)."""

    prompt: str | None = None
    image: bytes | None = None
    enhance: bool = True

    def same_content(self, other: Settings) -> bool:
        return self.prompt == other.prompt and self.image == other.image


EMPTY = Settings()


def clean_prompt(text: str | None) -> str | None:
    return text if text is not None and text.strip() else None


def image_digest(image: bytes | None) -> str | None:
    return None if image is None else hashlib.sha256(image).hexdigest()


def decode_image(value: Any) -> bytes | None:
    """The bytes of a frame's ``image_data`` (raw base64 or a data URL), None if absent/invalid."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith("data:"):
        value = value.split(",", 1)[-1]
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        return None


def settings_of(frame: dict[str, Any], before: Settings, initial: bool) -> Settings:
    """The service's state once ``frame`` (prompt or set_image) is applied on top of ``before``."""
    enhance = bool(frame.get("enhance_prompt", True))
    if frame.get("type") == "set_image":
        prompt = frame.get("prompt")
        return Settings(
            clean_prompt(prompt if isinstance(prompt, str) else None),
            decode_image(frame.get("image_data")),
            enhance,
        )
    prompt = frame.get("prompt")
    text = prompt if isinstance(prompt, str) else None
    # a handshake prompt starts a fresh service session: no image
    return Settings(clean_prompt(text), None if initial else before.image, enhance)


def frame_for(target: Settings, base: Settings) -> dict[str, Any] | None:
    """The frame that moves the service from ``base`` to ``target``; None when nothing to do."""
    if target.same_content(base):
        if target.prompt is None or target.enhance == base.enhance:
            return None
        return {"type": "prompt", "prompt": target.prompt, "enhance_prompt": target.enhance}
    if target.image != base.image or target.prompt is None:
        return {
            "type": "set_image",
            "image_data": None
            if target.image is None
            else base64.b64encode(target.image).decode("ascii"),
            "prompt": target.prompt,
            "enhance_prompt": target.enhance,
        }
    return {"type": "prompt", "prompt": target.prompt, "enhance_prompt": target.enhance}


@dataclass(eq=False)
class Pending:
    """A prompt/set_image frame sent to the service, waiting for its ack."""

    kind: Literal["prompt", "image"]
    prompt: str | None
    frame: dict[str, Any]
    origin: Origin
    initial: bool
    #: what the widget asked for when the kernel sent it (None for browser frames)
    target: Settings | None = None
    deadline: float | None = None


# ---- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send this frame to the service (a kernel update)."""

    frame: dict[str, Any]
    pending: Pending


@dataclass(frozen=True)
class Settled:
    """An update got its ack (``success``), or failed to (``error``: rejected or timed out)."""

    pending: Pending
    success: bool
    error: str | None = None
    timed_out: bool = False
    #: refused by a signal hook before it went upstream
    by_hook: bool = False


@dataclass(frozen=True)
class Revert:
    """The widget's desired state goes back to the accepted one (after a failed kernel update)."""

    settings: Settings


UpdateAction = Send | Settled | Revert

Phase = Literal["closed", "handshake", "running"]


@dataclass
class KernelUpdates:
    """One widget's updates across its upstream connections (one at a time)."""

    desired: Settings = EMPTY
    applied: Settings = EMPTY
    phase: Phase = "closed"
    pending: list[Pending] = field(default_factory=list)
    in_flight: Pending | None = None

    # ---- connection ------------------------------------------------------------------------------

    def opened(self) -> None:
        """A new upstream connection: a fresh service session, nothing applied yet."""
        self.phase = "handshake"
        self.applied = EMPTY
        self.pending.clear()
        self.in_flight = None

    def closed(self) -> None:
        self.phase = "closed"
        self.pending.clear()
        self.in_flight = None

    # ---- inputs ----------------------------------------------------------------------------------

    def set_desired(self, now: float, settings: Settings) -> list[UpdateAction]:
        self.desired = replace(settings, prompt=clean_prompt(settings.prompt))
        return self._dispatch(now)

    def browser_frame(self, frame: dict[str, Any]) -> Pending | None:
        """Record a prompt/set_image frame the browser sends (its handshake); None for others."""
        kind = _kind(frame)
        if kind is None:
            return None
        initial = self.phase == "handshake" and not any(p.initial for p in self.pending)
        prompt = frame.get("prompt")
        entry = Pending(
            kind, prompt if isinstance(prompt, str) else None, frame, "browser", initial
        )
        self.pending.append(entry)
        return entry

    def ack(self, now: float, frame: dict[str, Any]) -> list[UpdateAction]:
        """A prompt_ack or set_image_ack from the service (or a hook's rejection)."""
        success = bool(frame.get("success"))
        error = frame.get("error") if isinstance(frame.get("error"), str) else None
        if frame.get("type") == "prompt_ack":
            text = frame.get("prompt")
            entry = next((p for p in self.pending if p.kind == "prompt" and p.prompt == text), None)
            if entry is None:
                if success and isinstance(text, str):  # a foreign ack: the service applied it
                    self.applied = replace(self.applied, prompt=clean_prompt(text))
                return self._dispatch(now)
        elif frame.get("type") == "set_image_ack":
            entry = next((p for p in self.pending if p.kind == "image"), None)
            if entry is None:
                return self._dispatch(now)
        else:
            return []
        return self._settle(now, entry, success, error)

    def reject(self, now: float, entry: Pending, error: str) -> list[UpdateAction]:
        """A frame refused before it went upstream (a hook): as if the service refused it."""
        if entry not in self.pending:
            return []
        return self._settle(now, entry, False, error, by_hook=True)

    def withdraw(self, entry: Pending) -> None:
        """A recorded frame was dropped (never sent): nothing will ack it."""
        if entry in self.pending:
            self.pending.remove(entry)
        if self.in_flight is entry:
            self.in_flight = None

    def next_deadline(self) -> float | None:
        return self.in_flight.deadline if self.in_flight is not None else None

    def on_timer(self, now: float) -> list[UpdateAction]:
        entry = self.in_flight
        if entry is None or entry.deadline is None or now < entry.deadline:
            return []
        self.in_flight = None  # it stays pending: a late ack still matches it
        what = "prompt" if entry.kind == "prompt" else "image"
        limit = PROMPT_ACK_TIMEOUT if entry.kind == "prompt" else IMAGE_ACK_TIMEOUT
        actions: list[UpdateAction] = [
            Settled(entry, False, f"no {what} ack within {limit:g} s", timed_out=True)
        ]
        return actions + self._revert_if_unchanged(entry) + self._dispatch(now)

    # ---- internals -------------------------------------------------------------------------------

    def _settle(
        self, now: float, entry: Pending, success: bool, error: str | None, by_hook: bool = False
    ) -> list[UpdateAction]:
        self.pending.remove(entry)
        was_in_flight = self.in_flight is entry
        if was_in_flight:
            self.in_flight = None
        actions: list[UpdateAction] = [Settled(entry, success, error, by_hook=by_hook)]
        if success:
            self.applied = settings_of(entry.frame, self.applied, entry.initial)
        elif entry.initial:
            self.applied = EMPTY  # a fresh service session keeps no state
        if entry.initial:
            self.phase = "running"
        if not success and entry.origin == "kernel":
            actions += self._revert_if_unchanged(entry)
        return actions + self._dispatch(now)

    def _revert_if_unchanged(self, entry: Pending) -> list[UpdateAction]:
        """After a failed kernel update: back to the accepted state, unless a newer one waits."""
        if entry.target is None or self.desired != entry.target:
            return []
        self.desired = self.applied
        return [Revert(self.applied)]

    def _dispatch(self, now: float) -> list[UpdateAction]:
        if self.phase != "running" or self.in_flight is not None:
            return []
        frame = frame_for(self.desired, self.applied)
        if frame is None:
            return []
        kind = _kind(frame)
        assert kind is not None
        timeout = PROMPT_ACK_TIMEOUT if kind == "prompt" else IMAGE_ACK_TIMEOUT
        entry = Pending(
            kind, frame.get("prompt"), frame, "kernel", False, self.desired, now + timeout
        )
        self.pending.append(entry)
        self.in_flight = entry
        return [Send(frame, entry)]


def _kind(frame: dict[str, Any]) -> Literal["prompt", "image"] | None:
    kind = frame.get("type")
    if kind == "prompt":
        return "prompt"
    if kind == "set_image":
        return "image"
    return None
