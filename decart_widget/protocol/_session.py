"""The sans-I/O session core (docs/architecture.md, "The session core").

`SessionCore` never touches a socket, a timer or a clock. Every input takes the current monotonic
time ``now`` (seconds) and returns the actions the adapter must carry out, in order. Timers are
deadlines: the adapter asks `next_deadline()` and calls `on_timer(now)` once it has passed.
`set_prompt` / `set_image` return ``(request_id, actions)``; the request later settles with a
`Resolve` or `Fail` action carrying that id.

The media transport is chosen at construction: ``"webrtc"`` (Gen-A: an SDP offer/answer over the
socket, `StartPeer` once the initial state is acked) or ``"livekit"`` (Gen-B: ``livekit_join``,
the initial state as its own frame, `JoinRoom` on ``livekit_room_info``; docs/protocol.md). The
control half (requests, acks, ticks, errors, retries, replay) is the same for both.

Each attempt is bounded (docs/where-it-works.md): the socket must open within
``signaling_open_timeout`` and the media must connect within ``media_connect_timeout`` of being
started, both well under the overall ``connect_timeout``. A session that never connected does not
retry these (a network that drops the socket or blocks the media now does so on the next attempt
too) and never calls its failure a lost connection: it stays "connecting" between attempts.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from enum import Enum

from ._actions import (
    Action,
    AddRemoteCandidate,
    ApplyAnswer,
    ClosePeer,
    CloseSocket,
    ConnectionState,
    Emit,
    Fail,
    JoinRoom,
    OpenSocket,
    Resolve,
    RestartIce,
    Send,
    StartPeer,
    StateChanged,
)
from ._constants import (
    BACKOFF,
    CLOSE_NORMAL,
    CLOSE_PROXY_CONCURRENCY,
    CLOSE_TRY_AGAIN_LATER,
    CONNECT_TIMEOUT,
    IMAGE_ACK_TIMEOUT,
    INITIAL_ACK_TIMEOUT,
    MAX_IMAGE_BYTES,
    MEDIA_CONNECT_TIMEOUT,
    MEDIA_TRANSPORTS,
    PROMPT_ACK_TIMEOUT,
    ROOM_INFO_TIMEOUT,
    SIGNALING_OPEN_TIMEOUT,
    decoded_size,
)
from ._errors import (
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
from ._requests import KEEP, Change, InFlight, Settings
from ._update_queue import UpdateQueue
from .messages import (
    JSON,
    Answer,
    Error,
    GenerationEnded,
    GenerationStarted,
    GenerationTick,
    IceCandidate,
    IceRestart,
    LivekitJoin,
    LivekitRoomInfo,
    Offer,
    PromptAck,
    QueuePosition,
    ServerMessage,
    SessionId,
    SetImageAck,
)

logger = logging.getLogger("decart_widget.protocol.session")


@dataclass(frozen=True)
class RetryPolicy:
    """Delays (s) before each reconnect attempt; their number is the number of retries."""

    delays: tuple[float, ...] = BACKOFF

    @property
    def retries(self) -> int:
        return len(self.delays)


class _Phase(Enum):
    IDLE = "idle"  # not started, or ended
    OPENING = "opening"  # OpenSocket issued, waiting for socket_opened
    HANDSHAKE = "handshake"  # initial state sent, waiting for its ack
    RUNNING = "running"  # initial state acked (Gen-A: peer started)
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
        transport: str = "webrtc",
        room_info_timeout: float = ROOM_INFO_TIMEOUT,
        signaling_open_timeout: float = SIGNALING_OPEN_TIMEOUT,
        media_connect_timeout: float = MEDIA_CONNECT_TIMEOUT,
    ) -> None:
        if transport not in MEDIA_TRANSPORTS:
            known = " or ".join(repr(name) for name in MEDIA_TRANSPORTS)
            raise InvalidInput(f"media transport must be {known}, got {transport!r}")
        self._transport = transport
        self._room_info_timeout = room_info_timeout
        self._updates = UpdateQueue(
            Settings(_clean_prompt(prompt), _clean_image(image)),
            enhance=enhance,
            prompt_ack_timeout=prompt_ack_timeout,
            image_ack_timeout=image_ack_timeout,
        )
        self._initial_ack_timeout = initial_ack_timeout
        self._retry = retry or RetryPolicy()
        self._connect_timeout = connect_timeout
        self._signaling_open_timeout = signaling_open_timeout
        self._media_connect_timeout = media_connect_timeout

        self._state = _STATE.DISCONNECTED
        self._phase = _Phase.IDLE
        self._ids = itertools.count(1)
        self._retries = 0
        self._retry_at: float | None = None
        self._connect_deadline: float | None = None
        # this attempt's deadline: for the socket to open, then for the media to connect once
        # started (awaiting_media)
        self._attempt_deadline: float | None = None
        self._awaiting_media = False
        self._media_connected = False  # the media connected at least once since start()
        self._server_error: str | None = None  # this attempt's last transient server error text
        self._socket = False  # a socket is open or opening
        self._peer = False  # a peer connection exists
        self._answered = False
        self._early_candidates: list[JSON | None] = []
        self._seconds_before = 0  # generation seconds of the server sessions before this one
        self._seconds = 0  # the current server session's generation seconds
        self._session_id: str | None = None
        # Gen-B: the room info deadline, and the time the session entered the server's queue
        # (every deadline pauses while it waits there) with its last (position, size).
        self._room_info_deadline: float | None = None
        self._queued_since: float | None = None
        self._line: tuple[int, int | None] | None = None

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
    def transport(self) -> str:
        """The media transport: ``"webrtc"`` (Gen-A) or ``"livekit"`` (Gen-B)."""
        return self._transport

    @property
    def queue_position(self) -> int | None:
        """Gen-B: the 1-based place in the server's queue, None when not queued."""
        return self._line[0] if self._line else None

    @property
    def queue_size(self) -> int | None:
        """Gen-B: how many sessions wait in the server's queue, None when not queued."""
        return self._line[1] if self._line else None

    @property
    def accepted_prompt(self) -> str | None:
        return self._updates.accepted.prompt

    @property
    def accepted_image(self) -> str | None:
        return self._updates.accepted.image

    @property
    def desired_prompt(self) -> str | None:
        return self._updates.desired.prompt

    @property
    def desired_image(self) -> str | None:
        return self._updates.desired.image

    @property
    def enhance(self) -> bool:
        return self._updates.enhance

    def next_deadline(self) -> float | None:
        """The earliest time `on_timer` must be called, or None (always while queued)."""
        if self._queued_since is not None:
            return None
        deadlines = [
            self._connect_deadline,
            self._retry_at if self._phase is _Phase.BACKOFF else None,
            self._updates.next_deadline(),
            self._room_info_deadline,
            self._attempt_deadline,
        ]
        return min((d for d in deadlines if d is not None), default=None)

    # ---- user inputs ---------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        if self._phase is not _Phase.IDLE:
            return []
        self._retries = 0
        self._updates.restart()
        self._seconds_before = self._seconds = 0
        self._session_id = None
        self._media_connected = False
        self._connect_deadline = now + self._connect_timeout
        return [*self._set_state(_STATE.CONNECTING), *self._open(now)]

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
            return request_id, [Fail(request_id, exc)]
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
            return request_id, [Fail(request_id, exc)]
        return request_id, self._request(now, request_id, change, enhance)

    # ---- transport inputs ----------------------------------------------------------------------

    def socket_opened(self, now: float) -> list[Action]:
        if self._phase is not _Phase.OPENING:
            return []
        self._phase = _Phase.HANDSHAKE
        self._attempt_deadline = None
        if self._transport == "livekit":
            return self._join(now)
        return [self._updates.handshake(now, self._initial_ack_timeout)]

    def _join(self, now: float) -> list[Action]:
        """Gen-B: ask for a room, then send the initial state as its own frame; its ack is
        awaited as in Gen-A but the room does not wait for it. No prompt and no image: a
        passthrough join, and nothing to ack."""
        self._room_info_deadline = now + self._room_info_timeout
        settled = self._updates.skip_empty_handshake()
        if settled is not None:
            return [Send(LivekitJoin(passthrough=True)), *settled, *self._handshake_done(now)]
        return [Send(LivekitJoin()), self._updates.handshake(now, self._initial_ack_timeout)]

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
            return self._settled(now, *self._updates.prompt_ack(msg))
        if isinstance(msg, SetImageAck):
            return self._settled(now, *self._updates.image_ack(msg))
        if self._transport == "livekit":
            if isinstance(msg, LivekitRoomInfo):
                return self._on_room_info(now, msg)
            if isinstance(msg, QueuePosition):
                return self._on_queue_position(now, msg)
            if isinstance(msg, (Answer, IceCandidate, IceRestart, SessionId)):
                logger.debug("ignoring Gen-A %s on a LiveKit session", msg.type)
                return []
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
            self._server_error = msg.error
            return [Emit("error", classify(msg.error))]
        if isinstance(msg, IceRestart):
            if not self._peer:
                return []
            self._answered = False
            return [RestartIce(msg.turn_config)]
        logger.debug("ignoring %s", msg.type)
        return []

    def local_offer(self, now: float, sdp: str) -> list[Action]:
        return [Send(Offer(sdp))] if self._webrtc_peer() else []

    def local_candidate(self, now: float, candidate: JSON | None) -> list[Action]:
        return [Send(IceCandidate(candidate))] if self._webrtc_peer() else []

    def _webrtc_peer(self) -> bool:
        return self._transport == "webrtc" and self._peer and self._socket

    def peer_state(self, now: float, state: str) -> list[Action]:
        """The media connection's state: the peer connection's (Gen-A) or the room's (Gen-B:
        ``connected`` once joined and published; ``disconnected`` is final, as a LiveKit client
        reports it only after its own reconnect attempts failed)."""
        if not self._peer:
            return []
        if state == "connected":
            self._attempt_deadline = None
            self._media_connected = True
            if self._state is _STATE.GENERATING:
                return []
            return self._set_state(_STATE.CONNECTED)
        room = self._transport == "livekit"
        if state in ("failed", "closed") or (room and state == "disconnected"):
            why = f"{'room' if room else 'peer connection'} {state}"
            return self._unreachable(now, why, media=True)
        return []  # "new", "connecting", and Gen-A's "disconnected", which ICE often recovers from

    def on_timer(self, now: float) -> list[Action]:
        if self._queued_since is not None:
            return []  # every deadline pauses while the session waits in the server's queue
        if self._connect_deadline is not None and now >= self._connect_deadline:
            seconds = f"{self._connect_timeout:g}"
            return self._end(now, ConnectionLost(f"could not connect within {seconds} s"))
        if self._room_info_deadline is not None and now >= self._room_info_deadline:
            seconds = f"{self._room_info_timeout:g}"
            return self._lose(now, f"no room info within {seconds} s")
        if self._attempt_deadline is not None and now >= self._attempt_deadline:
            media = self._awaiting_media
            if media:
                why = f"no media connection within {self._media_connect_timeout:g} s"
            else:
                why = f"no signaling connection within {self._signaling_open_timeout:g} s"
            return self._unreachable(now, why, media=media)
        actions: list[Action] = []
        if self._phase is _Phase.BACKOFF and self._retry_at is not None and now >= self._retry_at:
            actions += self._open(now)
        flight = self._updates.expired(now)
        if flight is not None:
            if flight.initial:
                return actions + self._lose(now, "no ack for the initial state")
            actions += self._updates.time_out(flight) + self._updates.dispatch(now)
        return actions

    # ---- requests and acks (the update queue) -----------------------------------------------

    def _request(
        self, now: float, request_id: int, change: Change, enhance: bool | None
    ) -> list[Action]:
        if self._phase is _Phase.IDLE:  # nothing to ack it: it only changes what start() sends
            return self._updates.preset(request_id, change, enhance)
        return self._updates.request(request_id, change, enhance) + self._updates.dispatch(now)

    def _settled(self, now: float, flight: InFlight | None, actions: list[Action]) -> list[Action]:
        """After an ack: a settled handshake (accepted or not) ends the handshake; then the
        queue sends what waits."""
        if flight is not None and flight.initial:
            actions = actions + self._handshake_done(now)
        return actions + self._updates.dispatch(now)

    def _handshake_done(self, now: float) -> list[Action]:
        """The initial state was answered: requests may go out; Gen-A starts its peer now (Gen-B
        joins its room whenever the room info comes)."""
        self._phase = _Phase.RUNNING
        self._updates.running = True
        if self._transport == "livekit":
            return []
        self._peer = True
        self._await_media(now)
        return [StartPeer()]

    # ---- Gen-B: queue and room ------------------------------------------------------------------

    def _on_queue_position(self, now: float, msg: QueuePosition) -> list[Action]:
        if self._peer:
            logger.debug("ignoring queue_position after the room info")
            return []
        if self._queued_since is None:
            self._queued_since = now
        self._line = (msg.position, msg.queue_size)
        return [Emit("queue", {"position": msg.position, "size": msg.queue_size})]

    def _leave_line(self, now: float) -> list[Action]:
        """Out of the server's queue: the paused deadlines resume where they stopped."""
        if self._queued_since is not None:
            paused = now - self._queued_since
            self._queued_since = None
            if self._connect_deadline is not None:
                self._connect_deadline += paused
            if self._room_info_deadline is not None:
                self._room_info_deadline += paused
            flight = self._updates.inflight
            if flight is not None and flight.deadline is not None:
                flight.deadline += paused
        if self._line is None:
            return []
        self._line = None
        return [Emit("queue", None)]

    def _on_room_info(self, now: float, msg: LivekitRoomInfo) -> list[Action]:
        if self._peer:
            logger.debug("ignoring a second livekit_room_info")
            return []
        actions = self._leave_line(now)
        self._room_info_deadline = None
        self._peer = True
        self._await_media(now)
        actions.append(JoinRoom(msg.livekit_url, msg.token, msg.room_name, msg.session_id))
        if msg.session_id is not None:
            self._session_id = msg.session_id
            actions.append(Emit("session_id", msg.session_id))
        return actions

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
        elif self._server_error:  # the server said why before it ended: say it too
            text = f"the server ended the generation: {self._server_error}"
            error = SessionEnded(text, reason=reason)
        else:
            error = SessionEnded(f"the server ended the generation ({reason})", reason=reason)
        return [
            Emit("generation_tick", self.generation_seconds),
            Emit("generation_ended", reason),
            *self._end(now, error),
        ]

    def _open(self, now: float) -> list[Action]:
        # a new socket is a new server session, whose ticks count from zero again
        self._seconds_before += self._seconds
        self._seconds = 0
        self._phase = _Phase.OPENING
        self._retry_at = None
        self._server_error = None
        self._attempt_deadline = now + self._signaling_open_timeout
        self._awaiting_media = False
        self._socket = True
        return [OpenSocket(self._retries)]

    def _teardown(self, now: float) -> list[Action]:
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
        self._room_info_deadline = None
        self._attempt_deadline = None
        actions += self._leave_line(now)
        self._updates.fold_back()
        return actions

    def _await_media(self, now: float) -> None:
        self._attempt_deadline = now + self._media_connect_timeout
        self._awaiting_media = True

    def _unreachable(self, now: float, why: str, *, media: bool = False) -> list[Action]:
        """The socket did not open in time, or the media failed or did not connect in time. Before
        the session ever connected, a retry would meet the same network: end at once, saying so;
        after, it is a loss like any other."""
        if self._media_connected:
            return self._lose(now, why)
        what = "the video could not connect" if media else "could not connect"
        return self._end(now, ConnectionLost(f"{what}: {why}"))

    def _lose(self, now: float, why: str) -> list[Action]:
        """An unexpected loss: retry after the next backoff delay, or give up. A session that
        never connected stays "connecting": nothing was lost."""
        actions = self._teardown(now)
        if self._retries >= self._retry.retries:
            if self._media_connected:
                text = f"connection lost after {self._retries} retries: {why}"
            else:
                text = f"could not connect after {self._retries + 1} attempts: {why}"
            return actions + self._end(now, ConnectionLost(text))
        delay = self._retry.delays[self._retries]
        self._retries += 1
        logger.info("%s; retry %d in %g s", why, self._retries, delay)
        self._retry_at = now + delay
        self._phase = _Phase.BACKOFF
        if self._state in (_STATE.CONNECTED, _STATE.GENERATING):
            self._connect_deadline = now + self._connect_timeout
        if not self._media_connected:
            return actions
        return actions + self._set_state(_STATE.RECONNECTING)

    def _end(self, now: float, error: DecartError | None) -> list[Action]:
        """End the session: close everything, settle pending requests, publish the error."""
        actions = self._teardown(now)
        pending = self._updates.take_queued()
        if pending is not None:
            if error is None:  # a clean end: keep the values for the next start()
                self._updates.base = pending.change.apply(self._updates.base)
                actions += [Resolve(rid, superseded=True) for rid in pending.ids]
            else:
                actions += [Fail(rid, error) for rid in pending.ids]
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
            self._media_connected = True
        if state is _STATE.GENERATING:
            self._retries = 0
        return [StateChanged(state)]


def _permanent_error(text: str) -> DecartError | None:
    """The typed error of a server text if retrying cannot help, else None."""
    error = classify(text)
    return error if error.permanent or is_permanent(text) else None


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


__all__ = [
    "Action",
    "AddRemoteCandidate",
    "ApplyAnswer",
    "ClosePeer",
    "CloseSocket",
    "ConnectionState",
    "Emit",
    "Fail",
    "JoinRoom",
    "OpenSocket",
    "Resolve",
    "RestartIce",
    "RetryPolicy",
    "Send",
    "SessionCore",
    "StartPeer",
    "StateChanged",
]
