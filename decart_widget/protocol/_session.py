"""The sans-I/O session core (docs/architecture.md, "The session core").

`SessionCore` never touches a socket, a timer or a clock. Every input takes the current monotonic
time ``now`` (seconds) and returns the actions the adapter must carry out, in order. Timers are
deadlines: the adapter asks `next_deadline()` and calls `on_timer(now)` once it has passed.
`set_prompt` / `set_image` return ``(request_id, actions)``; the request later settles with a
`Resolve` or `Fail` action carrying that id.

The core runs the control half of the protocol (requests, acks, ticks, errors, retries, replay),
which is the same for every media transport. The media handshake is an object chosen once, at
construction, from the transport's name (``_handshake.py``): ``"webrtc"`` (Gen-A: an SDP
offer/answer over the socket, `StartPeer` once the initial state is acked) or ``"livekit"``
(Gen-B: ``livekit_join``, the initial state as its own frame, `JoinRoom` on
``livekit_room_info``; docs/protocol.md). The core delegates to it and never asks which it holds.
How long connecting may take and when to try again is ``_attempts.py``; a session that never
connected stays "connecting" between attempts.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
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
from ._attempts import AttemptLimits, Attempts, RetryPolicy
from ._constants import (
    CLOSE_NORMAL,
    CLOSE_PROXY_CONCURRENCY,
    CLOSE_TRY_AGAIN_LATER,
    CONNECT_TIMEOUT,
    IMAGE_ACK_TIMEOUT,
    INITIAL_ACK_TIMEOUT,
    MEDIA_CONNECT_TIMEOUT,
    PROMPT_ACK_TIMEOUT,
    ROOM_INFO_TIMEOUT,
    SIGNALING_OPEN_TIMEOUT,
)
from ._errors import (
    ConcurrencyLimit,
    DecartError,
    InvalidInput,
    classify,
    ended_error,
    permanent_error,
)
from ._handshake import HandshakeHost, handshake_for
from ._requests import (
    Change,
    InFlight,
    Settings,
    clean_image,
    clean_prompt,
    image_change,
    prompt_change,
)
from ._update_queue import UpdateQueue
from .messages import (
    JSON,
    Error,
    GenerationEnded,
    GenerationStarted,
    GenerationTick,
    PromptAck,
    ServerMessage,
    SetImageAck,
)

logger = logging.getLogger("decart_widget.protocol.session")


class _Phase(Enum):
    IDLE = "idle"  # not started, or ended
    OPENING = "opening"  # OpenSocket issued, waiting for socket_opened
    HANDSHAKE = "handshake"  # initial state sent, waiting for its ack
    RUNNING = "running"  # initial state answered: requests may go out
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
        self._updates = UpdateQueue(
            Settings(clean_prompt(prompt), clean_image(image)),
            enhance=enhance,
            prompt_ack_timeout=prompt_ack_timeout,
            image_ack_timeout=image_ack_timeout,
        )
        self._attempts = Attempts(
            AttemptLimits(
                connect=connect_timeout,
                open=signaling_open_timeout,
                media=media_connect_timeout,
                retry=retry or RetryPolicy(),
            )
        )
        host = HandshakeHost(
            send_initial_state=lambda now: self._updates.handshake(now, initial_ack_timeout),
            skip_initial_state=self._skip_initial_state,
            await_media=self._attempts.await_media,
            new_session_id=self._new_session_id,
            postpone=self._postpone,
        )
        self._handshake = handshake_for(transport, host, room_info_timeout=room_info_timeout)

        self._state = _STATE.DISCONNECTED
        self._phase = _Phase.IDLE
        self._ids = itertools.count(1)
        self._server_error: str | None = None  # this attempt's last transient server error text
        self._socket = False  # a socket is open or opening
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
    def transport(self) -> str:
        """The media transport: ``"webrtc"`` (Gen-A) or ``"livekit"`` (Gen-B)."""
        return self._handshake.name

    @property
    def queue_position(self) -> int | None:
        """Gen-B: the 1-based place in the server's queue, None when not queued."""
        queue = self._handshake.queue
        return queue[0] if queue else None

    @property
    def queue_size(self) -> int | None:
        """Gen-B: how many sessions wait in the server's queue, None when not queued."""
        queue = self._handshake.queue
        return queue[1] if queue else None

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
        if self._handshake.queue is not None:
            return None
        deadlines = [
            self._attempts.next_deadline(),
            self._updates.next_deadline(),
            self._handshake.next_deadline(),
        ]
        return min((d for d in deadlines if d is not None), default=None)

    # ---- user inputs ---------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        if self._phase is not _Phase.IDLE:
            return []
        self._attempts.start(now)
        self._updates.restart()
        self._seconds_before = self._seconds = 0
        self._session_id = None
        return [*self._set_state(_STATE.CONNECTING), *self._open(now)]

    def stop(self, now: float) -> list[Action]:
        if self._phase is _Phase.IDLE:
            return []
        return self._end(now, None)

    def set_prompt(
        self, now: float, text: str | None, enhance: bool | None = None
    ) -> tuple[int, list[Action]]:
        """Set the prompt (None clears it; blank is `InvalidInput`); ``enhance=None`` keeps."""
        return self._request(now, lambda: prompt_change(text), enhance)

    def set_image(
        self,
        now: float,
        image: str | None,
        prompt: str | None = None,
        enhance: bool | None = None,
    ) -> tuple[int, list[Action]]:
        """Set (raw base64) or clear (None) the image; ``prompt=None`` keeps the prompt, a blank
        one clears it."""
        return self._request(now, lambda: image_change(image, prompt), enhance)

    # ---- transport inputs ----------------------------------------------------------------------

    def socket_opened(self, now: float) -> list[Action]:
        if self._phase is not _Phase.OPENING:
            return []
        self._phase = _Phase.HANDSHAKE
        self._attempts.socket_opened()
        return self._handshake.begin(now)

    def socket_closed(self, now: float, code: int | None, reason: str = "") -> list[Action]:
        if self._phase in (_Phase.IDLE, _Phase.BACKOFF) or not self._socket:
            return []
        self._socket = False
        if code in (CLOSE_TRY_AGAIN_LATER, CLOSE_PROXY_CONCURRENCY):
            return self._end(now, ConcurrencyLimit(reason or "Concurrent session limit reached."))
        error = permanent_error(reason) if reason else None
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
        media = self._handshake.message(now, msg)
        if media is not None:
            return media
        if isinstance(msg, GenerationStarted):
            return self._set_state(_STATE.GENERATING)
        if isinstance(msg, GenerationTick):
            self._seconds = int(msg.seconds)
            return [
                *self._set_state(_STATE.GENERATING),
                Emit("generation_tick", self.generation_seconds),
            ]
        if isinstance(msg, GenerationEnded):
            self._seconds = max(self._seconds, int(msg.seconds))
            return [
                Emit("generation_tick", self.generation_seconds),
                Emit("generation_ended", msg.reason),
                *self._end(now, ended_error(msg.reason, self._server_error)),
            ]
        if isinstance(msg, Error):
            error = permanent_error(msg.error)
            if error is not None:
                return self._end(now, error)
            # Transient (capacity, internal error...): the close that follows triggers a retry.
            self._server_error = msg.error
            return [Emit("error", classify(msg.error))]
        logger.debug("ignoring %s", msg.type)
        return []

    def local_offer(self, now: float, sdp: str) -> list[Action]:
        return self._handshake.local_offer(sdp) if self._socket else []

    def local_candidate(self, now: float, candidate: JSON | None) -> list[Action]:
        return self._handshake.local_candidate(candidate) if self._socket else []

    def peer_state(self, now: float, state: str) -> list[Action]:
        """The media connection's state: the peer connection's (Gen-A) or the room's (Gen-B:
        ``connected`` once joined and published); the handshake says which states mean it is
        lost."""
        if not self._handshake.started:
            return []
        if state == "connected":
            self._attempts.media_connected()
            if self._state is _STATE.GENERATING:
                return []
            return self._set_state(_STATE.CONNECTED)
        why = self._handshake.lost(state)
        if why is None:
            return []
        return self._unreachable(now, why, media=True)

    def on_timer(self, now: float) -> list[Action]:
        if self._handshake.queue is not None:
            return []  # every deadline pauses while the session waits in the server's queue
        overdue = self._attempts.connect_overdue(now)
        if overdue is not None:
            return self._end(now, overdue)
        expired = self._handshake.expired(now)
        if expired is not None:
            return self._lose(now, expired)
        failed = self._attempts.attempt_overdue(now)
        if failed is not None:
            why, media = failed
            return self._unreachable(now, why, media=media)
        actions: list[Action] = []
        if self._phase is _Phase.BACKOFF and self._attempts.retry_due(now):
            actions += self._open(now)
        flight = self._updates.expired(now)
        if flight is not None:
            if flight.initial:
                return actions + self._lose(now, "no ack for the initial state")
            actions += self._updates.time_out(flight) + self._updates.dispatch(now)
        return actions

    # ---- requests and acks (the update queue) -----------------------------------------------

    def _request(
        self, now: float, change: Callable[[], Change], enhance: bool | None
    ) -> tuple[int, list[Action]]:
        request_id = next(self._ids)
        try:
            checked = change()
        except InvalidInput as exc:
            return request_id, [Fail(request_id, exc)]
        if self._phase is _Phase.IDLE:  # nothing to ack it: it only changes what start() sends
            return request_id, self._updates.preset(request_id, checked, enhance)
        actions = self._updates.request(request_id, checked, enhance)
        return request_id, actions + self._updates.dispatch(now)

    def _settled(self, now: float, flight: InFlight | None, actions: list[Action]) -> list[Action]:
        """After an ack: a settled handshake (accepted or not) ends the handshake; then the
        queue sends what waits."""
        if flight is not None and flight.initial:
            actions = actions + self._handshake_done(now)
        return actions + self._updates.dispatch(now)

    def _handshake_done(self, now: float) -> list[Action]:
        """The initial state was answered: requests may go out; the handshake goes on."""
        self._phase = _Phase.RUNNING
        self._updates.running = True
        return self._handshake.acked(now)

    # ---- what the handshake may ask (`HandshakeHost`) ------------------------------------------

    def _skip_initial_state(self, now: float) -> list[Action] | None:
        settled = self._updates.skip_empty_handshake()
        return None if settled is None else settled + self._handshake_done(now)

    def _new_session_id(self, session_id: str) -> list[Action]:
        self._session_id = session_id
        return [Emit("session_id", session_id)]

    def _postpone(self, seconds: float) -> None:
        self._attempts.postpone(seconds)
        self._updates.postpone(seconds)

    # ---- lifecycle -----------------------------------------------------------------------------

    def _open(self, now: float) -> list[Action]:
        # a new socket is a new server session, whose ticks count from zero again
        self._seconds_before += self._seconds
        self._seconds = 0
        self._phase = _Phase.OPENING
        self._server_error = None
        self._socket = True
        return [OpenSocket(self._attempts.open(now))]

    def _teardown(self, now: float) -> list[Action]:
        """Close socket and media; fold the in-flight update back into the queue."""
        actions: list[Action] = []
        if self._socket:
            actions.append(CloseSocket(CLOSE_NORMAL, ""))
            self._socket = False
        actions += self._handshake.close(now)
        self._attempts.close()
        self._updates.fold_back()
        return actions

    def _unreachable(self, now: float, why: str, *, media: bool = False) -> list[Action]:
        """The socket did not open in time, or the media failed or did not connect in time: the
        end of a session that never connected, else a loss."""
        error = self._attempts.unreachable(why, media)
        return self._lose(now, why) if error is None else self._end(now, error)

    def _lose(self, now: float, why: str) -> list[Action]:
        """An unexpected loss: retry after the next backoff delay, or give up. A session that
        never connected stays "connecting": nothing was lost."""
        actions = self._teardown(now)
        live = self._state in (_STATE.CONNECTED, _STATE.GENERATING)
        error = self._attempts.retry(now, why, live)
        if error is not None:
            return actions + self._end(now, error)
        self._phase = _Phase.BACKOFF
        if not self._attempts.connected:
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
        self._attempts.end()
        return actions + self._set_state(_STATE.DISCONNECTED)

    def _set_state(self, state: ConnectionState) -> list[Action]:
        if state is self._state:
            return []
        logger.debug("state %s -> %s", self._state.value, state.value)
        self._state = state
        if state in (_STATE.CONNECTED, _STATE.GENERATING):
            self._attempts.reached(generating=state is _STATE.GENERATING)
        return [StateChanged(state)]


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
