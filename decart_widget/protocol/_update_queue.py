"""The update pipeline, free of I/O: prompt and image requests -> frames -> acks -> settlements.

One piece used by the session core (`SessionCore`) and by the kernel relay
(`decart_widget.widget._updates`), so both follow the same rules (docs/architecture.md, "The
session core"; every rule is a conformance trace):

* the desired state is derived: ``base`` (the accepted state) with the in-flight update applied,
  then the queued one; a failed or timed-out update "reverts" by being dropped;
* at most one update is in flight; a newer request merges into the queued one and supersedes the
  requests it covers (latest wins: 50 changes in a burst send two frames);
* a ``prompt_ack`` matches the in-flight ``prompt`` by its exact text, a ``set_image_ack`` the
  oldest ``set_image`` sent (first in, first out, also after a timeout); a successful ack that
  matches nothing still moves the accepted state;
* a failed ack rejects with the typed error of its text (`ModerationError` when it has none); a
  timeout rejects with `AckTimeout`;
* on a loss the in-flight update folds back into the queued one, to be replayed.

The owner decides *when* updates may go out (``running``) and what a settled handshake means;
every method takes ``now`` where time matters and returns the actions to carry out.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import replace

from ._actions import Action, Emit, Fail, Resolve, Send
from ._errors import AckTimeout, DecartError, ModerationError, classify
from ._requests import KEEP, Change, InFlight, Settings, Update, message_for
from .messages import Prompt, PromptAck, SetImage, SetImageAck

logger = logging.getLogger("decart_widget.protocol.update_queue")


class UpdateQueue:
    """Requests, the update in flight and the acks they wait for (see the module docstring)."""

    def __init__(
        self,
        base: Settings,
        *,
        enhance: bool,
        prompt_ack_timeout: float,
        image_ack_timeout: float,
    ) -> None:
        #: the state the next update builds on: the accepted one (or what a start sends)
        self.base = base
        #: the last state the server acknowledged
        self.accepted = Settings()
        self.enhance = enhance
        #: updates may be sent (the owner's handshake is done)
        self.running = False
        self.queued: Update | None = None
        self.inflight: InFlight | None = None
        self._prompt_ack_timeout = prompt_ack_timeout
        self._image_ack_timeout = image_ack_timeout
        self._image_fifo: deque[InFlight] = deque()  # sent set_images, oldest first
        self._acked = False  # an initial state was accepted since `restart`

    # ---- views ---------------------------------------------------------------------------------

    @property
    def desired(self) -> Settings:
        settings = self.base
        for update in (self.inflight.update if self.inflight else None, self.queued):
            if update is not None:
                settings = update.change.apply(settings)
        return settings

    def next_deadline(self) -> float | None:
        return self.inflight.deadline if self.inflight else None

    def postpone(self, seconds: float) -> None:
        """Time that did not count (the session waited in the server's queue): the in-flight
        update's ack deadline moves by as much."""
        flight = self.inflight
        if flight is not None and flight.deadline is not None:
            flight.deadline += seconds

    def expired(self, now: float) -> InFlight | None:
        """The in-flight update if its ack is overdue."""
        flight = self.inflight
        if flight is not None and flight.deadline is not None and now >= flight.deadline:
            return flight
        return None

    # ---- lifecycle -----------------------------------------------------------------------------

    def restart(self) -> None:
        """A new session (``start``): nothing accepted since."""
        self._acked = False

    def reset(self) -> None:
        """A fresh server session whose handshake someone else sends (the kernel relay)."""
        self.running = False
        self.queued = self.inflight = None
        self._image_fifo.clear()
        self.accepted = self.base = Settings()

    def fold_back(self) -> None:
        """The connection is gone: the in-flight update merges back into the queued one."""
        self.running = False
        self._image_fifo.clear()
        flight, self.inflight = self.inflight, None
        if flight is not None:
            queued = self.queued or Update()
            self.queued = Update(
                flight.update.change.then(queued.change),
                [*flight.update.requests, *queued.requests],
            )

    def take_queued(self) -> Update | None:
        queued, self.queued = self.queued, None
        return queued

    # ---- requests ------------------------------------------------------------------------------

    def preset(self, request_id: int, change: Change, enhance: bool | None) -> list[Action]:
        """A request with no session: it only changes what the next start sends."""
        if enhance is not None:
            self.enhance = enhance
        self.base = change.apply(self.base)
        return [Resolve(request_id)]

    def request(self, request_id: int, change: Change, enhance: bool | None) -> list[Action]:
        """Queue a request (latest wins); the owner dispatches."""
        if enhance is not None:
            self.enhance = enhance
        update = Update(change, [(request_id, change)])
        if self.queued is None:
            self.queued = update
            return []
        superseded = self.queued.absorb(update)
        return [Resolve(rid, superseded=True) for rid in superseded]

    def dispatch(self, now: float) -> list[Action]:
        """Send the queued update if updates may go out and nothing is in flight."""
        if not self.running or self.inflight or self.queued is None:
            return []
        update, self.queued = self.queued, None
        target = update.change.apply(self.base)
        message = message_for(target, update.change, self.enhance, full=False)
        timeout = (
            self._prompt_ack_timeout if isinstance(message, Prompt) else self._image_ack_timeout
        )
        return [self._send(InFlight(message, update, now + timeout, initial=False))]

    def handshake(self, now: float, timeout: float) -> Send:
        """The initial state of a new server session: the whole desired state, in flight."""
        update = self.take_queued() or Update()
        target = update.change.apply(self.base)
        message = message_for(target, update.change, self.enhance, full=True)
        return self._send(InFlight(message, update, now + timeout, initial=True))

    def skip_empty_handshake(self) -> list[Action] | None:
        """Gen-B's passthrough join: when the whole desired state is empty, a fresh server
        session has it already, so nothing is sent or acked. Returns the settlements of the
        requests that rode on it, or None when there is a state to send (`handshake`)."""
        update = self.queued or Update()
        if update.change.apply(self.base) != Settings():
            return None
        self.queued = None
        self.accepted = self.base = Settings()
        self._acked = True
        return [Resolve(rid) for rid in update.ids]

    def observe(self, message: Prompt | SetImage, initial: bool) -> InFlight:
        """A frame someone else sent (the browser's handshake in kernel signaling): its ack must
        match it. The initial one is in flight (with no deadline: its sender times it out)."""
        flight = InFlight(message, Update(), None, initial)
        if initial:
            self.inflight = flight
        if isinstance(message, SetImage):
            self._image_fifo.append(flight)
        return flight

    def _send(self, flight: InFlight) -> Send:
        self.inflight = flight
        if isinstance(flight.message, SetImage):
            self._image_fifo.append(flight)
        return Send(flight.message)

    # ---- acks ----------------------------------------------------------------------------------

    def prompt_ack(self, ack: PromptAck) -> tuple[InFlight | None, list[Action]]:
        """Settle the in-flight prompt with this text; returns the settled update, if any."""
        flight = self.inflight
        if flight and isinstance(flight.message, Prompt) and flight.ack_text == ack.prompt:
            return flight, self._settle(flight, ack.success, ack.error)
        if ack.success:  # unknown text (a late or foreign ack): the server still applied it
            self._accept(replace(self.accepted, prompt=ack.prompt))
        return None, []

    def image_ack(self, ack: SetImageAck) -> tuple[InFlight | None, list[Action]]:
        """Settle the oldest set_image sent; returns it if it was still in flight."""
        if not self._image_fifo:
            logger.debug("set_image_ack with no set_image pending")
            return None, []
        flight = self._image_fifo.popleft()
        if flight is self.inflight:
            return flight, self._settle(flight, ack.success, ack.error)
        if ack.success:  # the late ack of a timed-out set_image
            self._accept(flight.settings_after(self.accepted))
        return None, []

    def fail(self, flight: InFlight, error_text: str) -> list[Action]:
        """A frame refused before it reached the server (a hook): as if its ack failed."""
        if flight in self._image_fifo:
            self._image_fifo.remove(flight)
        return self._settle(flight, False, error_text)

    def withdraw(self, flight: InFlight) -> list[Action]:
        """A frame dropped before it was sent: nothing will ack it; its requests are void."""
        if flight in self._image_fifo:
            self._image_fifo.remove(flight)
        if self.inflight is flight:
            self.inflight = None
        return [Resolve(rid, superseded=True) for rid in flight.update.ids]

    def time_out(self, flight: InFlight) -> list[Action]:
        """The in-flight update's ack did not come: reject it and drop its change."""
        self.inflight = None  # a set_image stays in the FIFO, so its late ack still matches it
        kind = "prompt" if isinstance(flight.message, Prompt) else "image"
        timeout = self._prompt_ack_timeout if kind == "prompt" else self._image_ack_timeout
        error = AckTimeout(f"no {kind} ack within {timeout:g} s")
        return [Fail(rid, error) for rid in flight.update.ids]

    def _accept(self, settings: Settings) -> None:
        self.accepted = settings
        if self.running:
            self.base = settings

    def _settle(self, flight: InFlight, success: bool, error_text: str | None) -> list[Action]:
        if self.inflight is flight:
            self.inflight = None
        if success:
            self.accepted = self.base = flight.settings_after(self.accepted)
            if flight.initial:
                self._acked = True
            return [Resolve(rid) for rid in flight.update.ids]

        error = ack_error(error_text)
        actions: list[Action] = [Fail(rid, error) for rid in flight.update.ids]
        if not actions:  # nobody waits for this one (the initial state, a replay)
            actions.append(Emit("error", error))
        if flight.initial:
            # The model keeps its previous state, which for a fresh server session is none. The
            # handshake goes on; after a reconnect the last accepted state is sent again.
            previous = self.accepted if self._acked else Settings()
            self.accepted = Settings()
            if previous != self.accepted:
                image = KEEP if previous.image is None else previous.image
                again = Update(Change(prompt=previous.prompt, image=image))
                if self.queued is not None:
                    again.absorb(self.queued)
                self.queued = again
        self.base = self.accepted  # the desired state reverts to the accepted one
        return actions


def ack_error(text: str | None) -> DecartError:
    """The typed error of a failed ack: its classified text, else `ModerationError`."""
    if not text:
        return ModerationError("rejected by the server")
    error = classify(text)
    return error if type(error) is not DecartError else ModerationError(text)
