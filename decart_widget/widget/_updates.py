"""The kernel relay's updates: the widget's desired state through the protocol's `UpdateQueue`.

In ``signaling="kernel"`` mode the kernel is the one sender of *updates* (prompt, image, enhance
changes after the handshake), whatever their origin (a Python cell or the view's prompt box):
comm messages from the browser wait while a cell is busy, the kernel's own sends do not. The
browser's session core only sends its *handshake* (the initial state after every (re)connect).

`KernelUpdates` has no update machine of its own: matching acks (prompts by text, images first
in, first out), one update in flight, latest wins, timeouts and reverting are the
`decart_widget.protocol._update_queue.UpdateQueue`'s, the same piece the session cores use. This
adapter translates: the widget's whole desired `WidgetState` (image as bytes) become requests for
what differs from the queue's desired state; the browser's handshake frames are observed so their
acks match; the queue's settlements become `Settled` (per frame) and `Revert` (the widget's
traitlets go back to what the queue now wants).

Inputs carry ``now`` (monotonic seconds) and return actions, as in `decart_widget.protocol`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from ..protocol._actions import Action, Fail
from ..protocol._actions import Send as SendMessage
from ..protocol._constants import IMAGE_ACK_TIMEOUT, PROMPT_ACK_TIMEOUT
from ..protocol._errors import ProtocolError
from ..protocol._requests import KEEP, Change, InFlight
from ..protocol._requests import Settings as WireSettings
from ..protocol._update_queue import UpdateQueue
from ..protocol.messages import (
    Prompt,
    PromptAck,
    SetImage,
    SetImageAck,
    client_message,
    server_message,
    to_dict,
)

Origin = Literal["browser", "kernel"]
Phase = Literal["closed", "handshake", "running"]


@dataclass(frozen=True)
class WidgetState:
    """What the model runs with: a prompt (None: none), a reference image (encoded bytes)."""

    prompt: str | None = None
    image: bytes | None = None
    enhance: bool = True

    def same_content(self, other: WidgetState) -> bool:
        return self.prompt == other.prompt and self.image == other.image


EMPTY = WidgetState()


def clean_prompt(text: str | None) -> str | None:
    return text if text is not None and text.strip() else None


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


@dataclass(eq=False)
class Pending:
    """A prompt/set_image frame on its way to the service (or there), waiting for its ack."""

    flight: InFlight
    origin: Origin

    @property
    def kind(self) -> Literal["prompt", "image"]:
        return "prompt" if isinstance(self.flight.message, Prompt) else "image"

    @property
    def frame(self) -> dict[str, Any]:
        return to_dict(self.flight.message)

    @property
    def initial(self) -> bool:
        return self.flight.initial

    @property
    def prompt(self) -> str | None:
        """The text its ``prompt_ack`` will carry (a hook that rewrites the prompt sets it)."""
        return self.flight.ack_text

    @prompt.setter
    def prompt(self, text: str | None) -> None:
        self.flight.ack_prompt = text


# ---- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendUpdate:
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
    """The widget's desired state goes back to what the service accepted (after a failure)."""

    settings: WidgetState


UpdateAction = SendUpdate | Settled | Revert


@dataclass
class KernelUpdates:
    """One widget's updates across its upstream connections (one at a time)."""

    desired: WidgetState = EMPTY
    phase: Phase = "closed"
    _queue: UpdateQueue = field(init=False)
    _pending: dict[InFlight, Pending] = field(default_factory=dict, init=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), init=False)
    _image: tuple[bytes, str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.desired = _cleaned(self.desired)
        # the handshake is the browser's (its core times it out); the kernel's own updates wait
        # for their acks as long as the session core's do
        self._queue = UpdateQueue(
            WireSettings(),
            enhance=self.desired.enhance,
            prompt_ack_timeout=PROMPT_ACK_TIMEOUT,
            image_ack_timeout=IMAGE_ACK_TIMEOUT,
        )

    # ---- views -----------------------------------------------------------------------------------

    @property
    def applied(self) -> WidgetState:
        """What the service accepted on the current connection."""
        accepted = self._queue.accepted
        return WidgetState(accepted.prompt, decode_image(accepted.image), self._queue.enhance)

    @property
    def pending(self) -> list[Pending]:
        """Frames waiting for their ack."""
        return list(self._pending.values())

    @property
    def in_flight(self) -> Pending | None:
        flight = self._queue.inflight
        return None if flight is None else self._pending.get(flight)

    def next_deadline(self) -> float | None:
        return self._queue.next_deadline()

    # ---- connection ------------------------------------------------------------------------------

    def opened(self) -> None:
        """A new upstream connection: a fresh service session, nothing applied yet."""
        self.phase = "handshake"
        self._queue.reset()
        self._pending.clear()

    def closed(self) -> None:
        self.phase = "closed"
        self._queue.reset()
        self._pending.clear()

    # ---- inputs ----------------------------------------------------------------------------------

    def set_desired(self, now: float, settings: WidgetState) -> list[UpdateAction]:
        self.desired = _cleaned(settings)
        return self._sync(now)

    def browser_frame(self, frame: dict[str, Any]) -> Pending | None:
        """Record a prompt/set_image frame the browser sends (its handshake); None for others."""
        if frame.get("type") not in ("prompt", "set_image"):
            return None
        try:
            message = client_message(frame)
        except ProtocolError:
            return None
        assert isinstance(message, Prompt | SetImage)
        initial = self.phase == "handshake" and not any(p.initial for p in self._pending.values())
        return self._track(self._queue.observe(message, initial), "browser")

    def ack(self, now: float, frame: dict[str, Any]) -> list[UpdateAction]:
        """A prompt_ack or set_image_ack from the service."""
        try:
            message = server_message(frame)
        except ProtocolError:
            return []
        if isinstance(message, PromptAck):
            flight, actions = self._queue.prompt_ack(message)
        elif isinstance(message, SetImageAck):
            flight, actions = self._queue.image_ack(message)
        else:
            return []
        return self._after(now, flight, actions, success=message.success, error=message.error)

    def reject(self, now: float, entry: Pending, error: str) -> list[UpdateAction]:
        """A frame refused before it went upstream (a hook): as if the service refused it."""
        if entry.flight not in self._pending:
            return []
        actions = self._queue.fail(entry.flight, error)
        return self._after(now, entry.flight, actions, success=False, error=error, by_hook=True)

    def withdraw(self, entry: Pending) -> None:
        """A recorded frame was dropped (never sent): nothing will ack it."""
        self._pending.pop(entry.flight, None)
        self._queue.withdraw(entry.flight)

    def on_timer(self, now: float) -> list[UpdateAction]:
        flight = self._queue.expired(now)
        if flight is None:
            return []
        actions = self._queue.time_out(flight)
        error = next((a.error.message for a in actions if isinstance(a, Fail)), None)
        return self._after(now, flight, actions, success=False, error=error, timed_out=True)

    # ---- internals -------------------------------------------------------------------------------

    def _track(self, flight: InFlight, origin: Origin) -> Pending:
        entry = Pending(flight, origin)
        self._pending[flight] = entry
        return entry

    def _after(
        self,
        now: float,
        flight: InFlight | None,
        actions: list[Action],
        *,
        success: bool,
        error: str | None,
        timed_out: bool = False,
        by_hook: bool = False,
    ) -> list[UpdateAction]:
        """Report a settled frame, revert the widget after a failed update of its own, then
        send what waits and what the widget still wants."""
        out: list[UpdateAction] = []
        if flight is not None:
            entry = self._pending.pop(flight, None) or Pending(flight, "browser")
            out.append(Settled(entry, success, error, timed_out, by_hook))
            if flight.initial:
                self.phase = "running"
                self._queue.running = True
            if not success and entry.origin == "kernel":
                out += self._revert()
        return out + self._sync(now)

    def _revert(self) -> list[UpdateAction]:
        """The widget wants what the queue now wants (the accepted state plus anything newer)."""
        wanted = self._queue.desired
        reverted = WidgetState(
            wanted.prompt,
            self._bytes_of(wanted.image),
            self.desired.enhance,
        )
        if reverted == self.desired:
            return []
        self.desired = reverted
        return [Revert(reverted)]

    def _sync(self, now: float) -> list[UpdateAction]:
        """Request what the widget wants and the queue does not have yet; send what may go."""
        actions: list[UpdateAction] = []
        if self.phase != "closed":
            change = self._change()
            if change is not None:
                queued = self._queue.request(next(self._ids), change, self.desired.enhance)
                assert not any(isinstance(a, SendMessage) for a in queued)
            actions += self._sent(self._queue.dispatch(now))
        return actions

    def _change(self) -> Change | None:
        have = self._queue.desired
        prompt = self.desired.prompt
        image = self._base64_of(self.desired.image)
        change = Change(
            prompt=prompt if prompt != have.prompt else KEEP,
            image=image if image != have.image else KEEP,
        )
        if change.sets_prompt or change.sets_image:
            return change
        if self.desired.enhance == self._queue.enhance:
            return None
        if prompt is None:  # enhance alone, with no prompt: nothing to tell the service
            self._queue.enhance = self.desired.enhance
            return None
        return Change(prompt=prompt)

    def _sent(self, actions: list[Action]) -> list[UpdateAction]:
        flight = self._queue.inflight
        out: list[UpdateAction] = []
        for action in actions:
            if isinstance(action, SendMessage) and flight is not None:
                out.append(SendUpdate(to_dict(action.message), self._track(flight, "kernel")))
        return out

    def _base64_of(self, image: bytes | None) -> str | None:
        if image is None:
            return None
        if self._image is None or self._image[0] is not image:
            self._image = (image, base64.b64encode(image).decode("ascii"))
        return self._image[1]

    def _bytes_of(self, image: str | None) -> bytes | None:
        if image is None:
            return None
        if self._image is not None and self._image[1] == image:
            return self._image[0]
        return decode_image(image)


def _cleaned(settings: WidgetState) -> WidgetState:
    return WidgetState(clean_prompt(settings.prompt), settings.image or None, settings.enhance)


__all__ = [
    "EMPTY",
    "KernelUpdates",
    "Pending",
    "Revert",
    "SendUpdate",
    "Settled",
    "UpdateAction",
    "WidgetState",
]
