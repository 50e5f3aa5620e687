"""The sans-I/O session core (docs/architecture.md, "The session core").

`SessionCore` never touches a socket, a timer or a clock. Every input takes the current monotonic
time ``now`` (seconds) and returns the actions the adapter must carry out, in order. Timers are
deadlines: the adapter asks `next_deadline()` and calls `on_timer(now)` once it has passed.
`set_prompt` / `set_image` return ``(request_id, actions)``; the request later settles with a
`Resolve` or `Reject` action carrying that id.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from dataclasses import dataclass, replace
from enum import Enum
from typing import TypeAlias

from .constants import (
    BACKOFF,
    CLOSE_NORMAL,
    CLOSE_PROXY_CONCURRENCY,
    CLOSE_TRY_AGAIN_LATER,
    CONNECT_TIMEOUT,
    IMAGE_ACK_TIMEOUT,
    INITIAL_ACK_TIMEOUT,
    MAX_IMAGE_BYTES,
    PROMPT_ACK_TIMEOUT,
    decoded_size,
)
from .errors import (
    AckTimeout,
    ConcurrencyLimit,
    ConnectionLost,
    DecartError,
    InsufficientCredits,
    InvalidInput,
    ModerationError,
    SessionEnded,
    classify,
    is_permanent,
)
from .messages import (
    JSON,
    Answer,
    ClientMessage,
    Error,
    GenerationEnded,
    GenerationStarted,
    GenerationTick,
    IceCandidate,
    IceRestart,
    Offer,
    Prompt,
    PromptAck,
    ServerMessage,
    SessionId,
    SetImage,
    SetImageAck,
)
from .requests import KEEP, Change, InFlight, Settings, Update, message_for

logger = logging.getLogger("decart_widget.protocol.session")


class ConnectionState(str, Enum):
    """The published ``connection_state``."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    GENERATING = "generating"
    RECONNECTING = "reconnecting"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RetryPolicy:
    """Delays (s) before each reconnect attempt; their number is the number of retries."""

    delays: tuple[float, ...] = BACKOFF

    @property
    def retries(self) -> int:
        return len(self.delays)


# ---- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenSocket:
    """Open the WebSocket (fresh token / URL). ``attempt``: 0 first, k for the k-th retry."""

    attempt: int


@dataclass(frozen=True)
class CloseSocket:
    code: int = CLOSE_NORMAL
    reason: str = ""


@dataclass(frozen=True)
class Send:
    message: ClientMessage


@dataclass(frozen=True)
class StartPeer:
    """Create the peer connection, add the local track, make an offer, call `local_offer`."""


@dataclass(frozen=True)
class ClosePeer:
    pass


@dataclass(frozen=True)
class ApplyAnswer:
    sdp: str


@dataclass(frozen=True)
class AddRemoteCandidate:
    candidate: JSON | None


@dataclass(frozen=True)
class RestartIce:
    """Rebuild ICE with the given TURN server and re-offer (call `local_offer` again)."""

    turn_config: JSON | None


@dataclass(frozen=True)
class StateChanged:
    state: ConnectionState


@dataclass(frozen=True)
class Resolve:
    request_id: int
    superseded: bool = False


@dataclass(frozen=True)
class Reject:
    request_id: int
    error: DecartError


@dataclass(frozen=True)
class Emit:
    """``generation_tick`` (int seconds), ``session_id`` (str), ``error`` (a `DecartError`),
    ``generation_ended`` (the reason)."""

    name: str
    value: object


Action: TypeAlias = (
    OpenSocket
    | CloseSocket
    | Send
    | StartPeer
    | ClosePeer
    | ApplyAnswer
    | AddRemoteCandidate
    | RestartIce
    | StateChanged
    | Resolve
    | Reject
    | Emit
)


class _Phase(Enum):
    IDLE = "idle"  # not started, or ended
    OPENING = "opening"  # OpenSocket issued, waiting for socket_opened
    HANDSHAKE = "handshake"  # initial state sent, waiting for its ack
    RUNNING = "running"  # initial state acked, peer started
    BACKOFF = "backoff"  # waiting to retry


_STATE = ConnectionState


class SessionCore:
    """The realtime session as a pure state machine (see the module docstring)."""

    def __init__(
        self,
        *,
        prompt: str | None = None,
        image: str | None = None,
        enhance: bool = True,
        prompt_ack_timeout: float = PROMPT_ACK_TIMEOUT,
        image_ack_timeout: float = IMAGE_ACK_TIMEOUT,
        initial_ack_timeout: float = INITIAL_ACK_TIMEOUT,
        retry: RetryPolicy | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self._base = Settings(_clean_prompt(prompt), _clean_image(image))
        self._accepted = Settings()
        self._enhance = enhance
        self._prompt_ack_timeout = prompt_ack_timeout
        self._image_ack_timeout = image_ack_timeout
        self._initial_ack_timeout = initial_ack_timeout
        self._retry = retry or RetryPolicy()
        self._connect_timeout = connect_timeout

        self._state = _STATE.DISCONNECTED
        self._phase = _Phase.IDLE
        self._ids = itertools.count(1)
        self._queued: Update | None = None
        self._inflight: InFlight | None = None
        self._image_fifo: deque[InFlight] = deque()  # sent set_images, oldest first
        self._retries = 0
        self._retry_at: float | None = None
        self._connect_deadline: float | None = None
        self._socket = False  # a socket is open or opening
        self._peer = False  # a peer connection exists
        self._answered = False
        self._early_candidates: list[JSON | None] = []
        self._acked = False  # an initial state was accepted since start()
        self._seconds_before = 0  # generation seconds of the server sessions before this one
        self._seconds = 0  # the current server session's generation seconds
        self._session_id: str | None = None

    # ---- properties ----------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def generation_seconds(self) -> int:
        """Seconds generated since `start`, summed over every server session (reconnects)."""
        return self._seconds_before + self._seconds

    @property
    def session_id(self) -> str | None:
        return self._session_id

    @property
    def accepted_prompt(self) -> str | None:
        return self._accepted.prompt

    @property
    def accepted_image(self) -> str | None:
        return self._accepted.image

    @property
    def desired_prompt(self) -> str | None:
        return self._desired().prompt

    @property
    def desired_image(self) -> str | None:
        return self._desired().image

    @property
    def enhance(self) -> bool:
        return self._enhance

    def next_deadline(self) -> float | None:
        """The earliest time `on_timer` must be called, or None."""
        deadlines = [
            self._connect_deadline,
            self._retry_at if self._phase is _Phase.BACKOFF else None,
            self._inflight.deadline if self._inflight else None,
        ]
        return min((d for d in deadlines if d is not None), default=None)

    # ---- user inputs ---------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        if self._phase is not _Phase.IDLE:
            return []
        self._retries = 0
        self._acked = False
        self._seconds_before = self._seconds = 0
        self._session_id = None
        self._connect_deadline = now + self._connect_timeout
        return [*self._set_state(_STATE.CONNECTING), *self._open()]

    def stop(self, now: float) -> list[Action]:
        if self._phase is _Phase.IDLE:
            return []
        return self._end(now, None)

    def set_prompt(
        self, now: float, text: str | None, enhance: bool | None = None
    ) -> tuple[int, list[Action]]:
        """Set the prompt (None clears it; blank is `InvalidInput`); ``enhance=None`` keeps."""
        request_id = next(self._ids)
        try:
            if text is not None and not (isinstance(text, str) and text.strip()):
                raise InvalidInput("prompt is empty (use None to clear it)")
            change = Change(prompt=_clean_prompt(text))
        except InvalidInput as exc:
            return request_id, [Reject(request_id, exc)]
        return request_id, self._request(now, request_id, change, enhance)

    def set_image(
        self,
        now: float,
        image: str | None,
        prompt: str | None = None,
        enhance: bool | None = None,
    ) -> tuple[int, list[Action]]:
        """Set (raw base64) or clear (None) the image; ``prompt=None`` keeps the prompt, a blank
        one clears it."""
        request_id = next(self._ids)
        try:
            change = Change(
                prompt=KEEP if prompt is None else _clean_prompt(prompt),
                image=_clean_image(image),
            )
        except InvalidInput as exc:
            return request_id, [Reject(request_id, exc)]
        return request_id, self._request(now, request_id, change, enhance)

    # ---- transport inputs ----------------------------------------------------------------------

    def socket_opened(self, now: float) -> list[Action]:
        if self._phase is not _Phase.OPENING:
            return []
        self._phase = _Phase.HANDSHAKE
        update, self._queued = self._queued or Update(), None
        target = update.change.apply(self._base)
        message = message_for(target, update.change, self._enhance, full=True)
        return [self._send_update(now, message, update, self._initial_ack_timeout, initial=True)]

    def socket_closed(self, now: float, code: int | None, reason: str = "") -> list[Action]:
        if self._phase in (_Phase.IDLE, _Phase.BACKOFF) or not self._socket:
            return []
        self._socket = False
        if code in (CLOSE_TRY_AGAIN_LATER, CLOSE_PROXY_CONCURRENCY):
            return self._end(now, ConcurrencyLimit(reason or "Concurrent session limit reached."))
        error = _permanent_error(reason) if reason else None
        if error is not None:
            return self._end(now, error)
        if code is None:
            return self._lose(now, reason or "could not connect")
        return self._lose(now, f"socket closed (code {code}{': ' + reason if reason else ''})")

    def message(self, now: float, msg: ServerMessage) -> list[Action]:
        if self._phase not in (_Phase.HANDSHAKE, _Phase.RUNNING):
            logger.debug("ignoring %s while %s", msg.type, self._phase.value)
            return []
        if isinstance(msg, PromptAck):
            return self._on_prompt_ack(now, msg)
        if isinstance(msg, SetImageAck):
            return self._on_image_ack(now, msg)
        if isinstance(msg, Answer):
            return self._on_answer(msg)
        if isinstance(msg, IceCandidate):
            if not self._answered:  # a peer connection cannot take candidates before the answer
                self._early_candidates.append(msg.candidate)
                return []
            return [AddRemoteCandidate(msg.candidate)]
        if isinstance(msg, SessionId):
            self._session_id = msg.session_id
            return [Emit("session_id", msg.session_id)]
        if isinstance(msg, GenerationStarted):
            return self._set_state(_STATE.GENERATING)
        if isinstance(msg, GenerationTick):
            self._seconds = int(msg.seconds)
            return [
                *self._set_state(_STATE.GENERATING),
                Emit("generation_tick", self.generation_seconds),
            ]
        if isinstance(msg, GenerationEnded):
            return self._on_generation_ended(now, msg)
        if isinstance(msg, Error):
            error = _permanent_error(msg.error)
            if error is not None:
                return self._end(now, error)
            # Transient (capacity, internal error...): the close that follows triggers a retry.
            return [Emit("error", classify(msg.error))]
        if isinstance(msg, IceRestart):
            if not self._peer:
                return []
            self._answered = False
            return [RestartIce(msg.turn_config)]
        logger.debug("ignoring %s", msg.type)
        return []

    def local_offer(self, now: float, sdp: str) -> list[Action]:
        return [Send(Offer(sdp))] if self._peer and self._socket else []

    def local_candidate(self, now: float, candidate: JSON | None) -> list[Action]:
        return [Send(IceCandidate(candidate))] if self._peer and self._socket else []

    def peer_state(self, now: float, state: str) -> list[Action]:
        if not self._peer:
            return []
        if state == "connected":
            if self._state is _STATE.GENERATING:
                return []
            return self._set_state(_STATE.CONNECTED)
        if state in ("failed", "closed"):
            return self._lose(now, f"peer connection {state}")
        return []  # "new", "connecting", and "disconnected", which ICE often recovers from

    def on_timer(self, now: float) -> list[Action]:
        if self._connect_deadline is not None and now >= self._connect_deadline:
            seconds = f"{self._connect_timeout:g}"
            return self._end(now, ConnectionLost(f"could not connect within {seconds} s"))
        actions: list[Action] = []
        if self._phase is _Phase.BACKOFF and self._retry_at is not None and now >= self._retry_at:
            actions += self._open()
        flight = self._inflight
        if flight is not None and now >= flight.deadline:
            actions += self._on_ack_timeout(now, flight)
        return actions

    # ---- requests and acks ---------------------------------------------------------------------

    def _desired(self) -> Settings:
        settings = self._base
        for update in (self._inflight.update if self._inflight else None, self._queued):
            if update is not None:
                settings = update.change.apply(settings)
        return settings

    def _request(
        self, now: float, request_id: int, change: Change, enhance: bool | None
    ) -> list[Action]:
        if enhance is not None:
            self._enhance = enhance
        if self._phase is _Phase.IDLE:  # nothing to ack it: it only changes what start() sends
            self._base = change.apply(self._base)
            return [Resolve(request_id)]
        update = Update(change, [(request_id, change)])
        if self._queued is None:
            self._queued = update
            return self._dispatch(now)
        superseded = self._queued.absorb(update)
        return [Resolve(rid, superseded=True) for rid in superseded] + self._dispatch(now)

    def _dispatch(self, now: float) -> list[Action]:
        """Send the queued update if the session is running and nothing is in flight."""
        if self._phase is not _Phase.RUNNING or self._inflight or self._queued is None:
            return []
        update, self._queued = self._queued, None
        target = update.change.apply(self._base)
        message = message_for(target, update.change, self._enhance, full=False)
        timeout = (
            self._prompt_ack_timeout if isinstance(message, Prompt) else self._image_ack_timeout
        )
        return [self._send_update(now, message, update, timeout, initial=False)]

    def _send_update(
        self,
        now: float,
        message: Prompt | SetImage,
        update: Update,
        timeout: float,
        initial: bool,
    ) -> Send:
        flight = InFlight(message, update, now + timeout, initial)
        self._inflight = flight
        if isinstance(message, SetImage):
            self._image_fifo.append(flight)
        return Send(message)

    def _on_prompt_ack(self, now: float, ack: PromptAck) -> list[Action]:
        flight = self._inflight
        if flight and isinstance(flight.message, Prompt) and flight.message.prompt == ack.prompt:
            return self._settle(now, flight, ack.success, ack.error)
        if ack.success:  # unknown text (a late or foreign ack): the server still applied it
            self._accept(replace(self._accepted, prompt=ack.prompt))
        return []

    def _on_image_ack(self, now: float, ack: SetImageAck) -> list[Action]:
        if not self._image_fifo:
            logger.debug("set_image_ack with no set_image pending")
            return []
        flight = self._image_fifo.popleft()
        if flight is self._inflight:
            return self._settle(now, flight, ack.success, ack.error)
        if ack.success:  # the late ack of a timed-out set_image
            self._accept(flight.settings_after(self._accepted))
        return []

    def _accept(self, settings: Settings) -> None:
        self._accepted = settings
        if self._phase is _Phase.RUNNING:
            self._base = settings

    def _settle(
        self, now: float, flight: InFlight, success: bool, error_text: str | None
    ) -> list[Action]:
        self._inflight = None
        if success:
            self._accepted = self._base = flight.settings_after(self._accepted)
            actions: list[Action] = [Resolve(rid) for rid in flight.update.ids]
            if flight.initial:
                self._acked = True
                actions += self._start_peer()
            return actions + self._dispatch(now)

        error = _ack_error(error_text)
        actions = [Reject(rid, error) for rid in flight.update.ids]
        if not actions:  # nobody waits for this one (the initial state, a replay)
            actions.append(Emit("error", error))
        if flight.initial:
            # The model keeps its previous state, which for a fresh server session is none. The
            # handshake goes on; after a reconnect the last accepted state is sent again.
            previous = self._accepted if self._acked else Settings()
            self._accepted = Settings()
            if previous != self._accepted:
                image = KEEP if previous.image is None else previous.image
                again = Update(Change(prompt=previous.prompt, image=image))
                if self._queued is not None:
                    again.absorb(self._queued)
                self._queued = again
            actions += self._start_peer()
        self._base = self._accepted  # the desired state reverts to the accepted one
        return actions + self._dispatch(now)

    def _start_peer(self) -> list[Action]:
        self._phase = _Phase.RUNNING
        self._peer = True
        return [StartPeer()]

    def _on_ack_timeout(self, now: float, flight: InFlight) -> list[Action]:
        if flight.initial:
            return self._lose(now, "no ack for the initial state")
        self._inflight = None  # a set_image stays in the FIFO, so its late ack still matches it
        kind = "prompt" if isinstance(flight.message, Prompt) else "image"
        timeout = self._prompt_ack_timeout if kind == "prompt" else self._image_ack_timeout
        error = AckTimeout(f"no {kind} ack within {timeout:g} s")
        return [Reject(rid, error) for rid in flight.update.ids] + self._dispatch(now)

    # ---- lifecycle -----------------------------------------------------------------------------

    def _on_answer(self, msg: Answer) -> list[Action]:
        if not self._peer or self._answered:
            logger.debug("ignoring an unexpected answer")
            return []
        self._answered = True
        early, self._early_candidates = self._early_candidates, []
        return [ApplyAnswer(msg.sdp), *(AddRemoteCandidate(c) for c in early)]

    def _on_generation_ended(self, now: float, msg: GenerationEnded) -> list[Action]:
        self._seconds = max(self._seconds, int(msg.seconds))
        reason = msg.reason
        error: DecartError | None
        if reason == "disconnect":
            error = None
        elif reason == "insufficient_credits":
            error = InsufficientCredits("insufficient credits: the generation was stopped")
        elif reason == "moderation_violation":
            error = ModerationError("the generation was stopped by moderation")
        elif reason == "timeout":
            error = SessionEnded("the session reached its time limit", reason="timeout")
        else:
            error = SessionEnded(f"the server ended the generation ({reason})", reason=reason)
        return [
            Emit("generation_tick", self.generation_seconds),
            Emit("generation_ended", reason),
            *self._end(now, error),
        ]

    def _open(self) -> list[Action]:
        # a new socket is a new server session, whose ticks count from zero again
        self._seconds_before += self._seconds
        self._seconds = 0
        self._phase = _Phase.OPENING
        self._retry_at = None
        self._socket = True
        return [OpenSocket(self._retries)]

    def _teardown(self) -> list[Action]:
        """Close socket and peer; fold the in-flight update back into the queue."""
        actions: list[Action] = []
        if self._socket:
            actions.append(CloseSocket(CLOSE_NORMAL, ""))
            self._socket = False
        if self._peer:
            actions.append(ClosePeer())
            self._peer = False
        self._answered = False
        self._early_candidates.clear()
        self._image_fifo.clear()
        flight, self._inflight = self._inflight, None
        if flight is not None:
            queued = self._queued or Update()
            self._queued = Update(
                flight.update.change.then(queued.change),
                [*flight.update.requests, *queued.requests],
            )
        return actions

    def _lose(self, now: float, why: str) -> list[Action]:
        """An unexpected loss: retry after the next backoff delay, or give up."""
        actions = self._teardown()
        if self._retries >= self._retry.retries:
            lost = ConnectionLost(f"connection lost after {self._retries} retries: {why}")
            return actions + self._end(now, lost)
        delay = self._retry.delays[self._retries]
        self._retries += 1
        logger.info("%s; retry %d in %g s", why, self._retries, delay)
        self._retry_at = now + delay
        self._phase = _Phase.BACKOFF
        if self._state in (_STATE.CONNECTED, _STATE.GENERATING):
            self._connect_deadline = now + self._connect_timeout
        return actions + self._set_state(_STATE.RECONNECTING)

    def _end(self, now: float, error: DecartError | None) -> list[Action]:
        """End the session: close everything, settle pending requests, publish the error."""
        actions = self._teardown()
        pending, self._queued = self._queued, None
        if pending is not None:
            if error is None:  # a clean end: keep the values for the next start()
                self._base = pending.change.apply(self._base)
                actions += [Resolve(rid, superseded=True) for rid in pending.ids]
            else:
                actions += [Reject(rid, error) for rid in pending.ids]
        if error is not None:
            logger.warning("session ended: %s: %s", error.kind, error.message)
            actions.append(Emit("error", error))
        self._phase = _Phase.IDLE
        self._retry_at = None
        self._connect_deadline = None
        return actions + self._set_state(_STATE.DISCONNECTED)

    def _set_state(self, state: ConnectionState) -> list[Action]:
        if state is self._state:
            return []
        logger.debug("state %s -> %s", self._state.value, state.value)
        self._state = state
        if state in (_STATE.CONNECTED, _STATE.GENERATING):
            self._connect_deadline = None
        if state is _STATE.GENERATING:
            self._retries = 0
        return [StateChanged(state)]


def _permanent_error(text: str) -> DecartError | None:
    """The typed error of a server text if retrying cannot help, else None."""
    error = classify(text)
    return error if error.permanent or is_permanent(text) else None


def _ack_error(text: str | None) -> DecartError:
    """The typed error of a failed ack: its classified text, else `ModerationError`."""
    if not text:
        return ModerationError("rejected by the server")
    error = classify(text)
    return error if type(error) is not DecartError else ModerationError(text)


def _clean_prompt(text: object) -> str | None:
    """A prompt, or None for no prompt (None, empty or blank)."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidInput(f"prompt must be a string or None, got {type(text).__name__}")
    return text if text.strip() else None


def _clean_image(image: object) -> str | None:
    """Raw base64 (a ``data:`` URL prefix is stripped), checked against `MAX_IMAGE_BYTES`."""
    if image is None:
        return None
    if not isinstance(image, str):
        raise InvalidInput(f"image must be base64 text or None, got {type(image).__name__}")
    if image.startswith("data:"):
        head, comma, image = image.partition(",")
        if not comma or not head.endswith(";base64"):
            raise InvalidInput("an image data URL must be base64-encoded")
    image = image.strip()
    if not image:
        raise InvalidInput("image is empty (use None to clear it)")
    size = decoded_size(image)
    if size > MAX_IMAGE_BYTES:
        limit = f"{MAX_IMAGE_BYTES / 2**20:g} MiB"
        raise InvalidInput(f"image is {size / 2**20:.1f} MiB; the limit is {limit}")
    return image
