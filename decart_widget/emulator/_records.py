"""Inspection: what reached the emulator, kept for tests and curious users.

Every session gets a live record that its session updates from the emulator's loop; readers in
other threads get frozen `EmulatedSession` snapshots. Refused connections are kept as `Rejection`s.
`Recorder.wait_until` is a condition wait (woken on every change), so tests never sleep and hope.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class EmulatedSession:
    """One ``/v1/stream`` session as the emulator saw it (a snapshot)."""

    id: str
    model: str
    key_kind: str  # "permanent" or "client"
    origin: str | None
    resolution: str | None = None
    user_agent: str | None = None
    #: "webrtc" (Gen-A: offer/answer) or "livekit" (Gen-B: livekit_join), set by the first media
    #: message; None before it.
    transport: str | None = None
    #: The URLs of the ICE servers its media peers use (no credentials): those bound to its
    #: client token (`Emulator.bind_ice_servers`), else the emulator's ``ice_servers=``.
    ice_server_urls: list[str] = field(default_factory=list)
    #: Gen-B: the session's LiveKit room, once opened.
    room_name: str | None = None
    #: Gen-B: every ``queue_position`` sent, in order (empty when it never waited).
    queue_positions: list[int] = field(default_factory=list)
    #: Prompts applied, in order (from ``prompt`` and from ``set_image`` with a prompt).
    prompts_applied: list[str] = field(default_factory=list)
    #: One entry per applied ``set_image``: the image's sha256 (hex), or None for a clear.
    images_applied: list[str | None] = field(default_factory=list)
    #: (what, error) for every refused prompt or image, e.g. ("prompt", "Prompt rejected ...").
    rejected: list[tuple[str, str]] = field(default_factory=list)
    offers: int = 0
    remote_candidates: int = 0
    frames_received: int = 0
    frames_sent: int = 0
    generation_seconds: int = 0
    #: None while live; then "disconnect", "timeout", "insufficient_credits", "server_shutdown",
    #: "dropped", "offer_refused", "invalid_offer", "left_room" (Gen-B) or "error".
    end_reason: str | None = None
    close_code: int | None = None
    started_at: float = 0.0
    ended_at: float | None = None

    @property
    def live(self) -> bool:
        return self.end_reason is None


@dataclass(frozen=True)
class Rejection:
    """A ``/v1/stream`` connection refused before a session started."""

    error: str
    close_code: int
    model: str | None
    origin: str | None
    at: float


#: Ended sessions beyond this many are forgotten, oldest first (a long-running emulator).
MAX_ENDED_RECORDS = 1000
MAX_REJECTIONS = 1000


class Recorder:
    def __init__(self, max_ended: int = MAX_ENDED_RECORDS) -> None:
        self._max_ended = max_ended
        self._cond = threading.Condition(threading.RLock())
        self._records: dict[str, EmulatedSession] = {}
        self._rejections: list[Rejection] = []

    # ---- writers (the emulator's loop) ----------------------------------------------------------

    def open(
        self,
        session_id: str,
        *,
        model: str,
        key_kind: str,
        origin: str | None,
        resolution: str | None,
        user_agent: str | None,
        ice_server_urls: list[str] | None = None,
    ) -> SessionRecorder:
        record = EmulatedSession(
            id=session_id,
            model=model,
            key_kind=key_kind,
            origin=origin,
            resolution=resolution,
            user_agent=user_agent,
            ice_server_urls=list(ice_server_urls or []),
            started_at=time.time(),
        )
        with self._cond:
            self._records[session_id] = record
            ended = [key for key, r in self._records.items() if r.end_reason is not None]
            for key in ended[: max(0, len(ended) - self._max_ended)]:
                del self._records[key]
            self._cond.notify_all()
        return SessionRecorder(self, session_id)

    def reject(self, error: str, close_code: int, model: str | None, origin: str | None) -> None:
        with self._cond:
            self._rejections.append(Rejection(error, close_code, model, origin, time.time()))
            del self._rejections[:-MAX_REJECTIONS]
            self._cond.notify_all()

    def _update(
        self, session_id: str, change: Callable[[EmulatedSession], EmulatedSession]
    ) -> None:
        with self._cond:
            self._records[session_id] = change(self._records[session_id])
            self._cond.notify_all()

    # ---- readers (any thread) -------------------------------------------------------------------

    def sessions(self) -> list[EmulatedSession]:
        with self._cond:
            return list(self._records.values())

    def rejections(self) -> list[Rejection]:
        with self._cond:
            return list(self._rejections)

    def wait_until(self, predicate: Callable[[], object], timeout: float) -> None:
        """Block until ``predicate()`` is true; raise `TimeoutError` after ``timeout`` seconds.

        Woken by every record change, and re-checked every 50 ms for state kept elsewhere.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s")
                self._cond.wait(min(left, 0.05))


class SessionRecorder:
    """The writing handle of one session's record."""

    def __init__(self, recorder: Recorder, session_id: str) -> None:
        self._recorder = recorder
        self.session_id = session_id

    def transport(self, kind: str) -> None:
        self._recorder._update(self.session_id, lambda r: replace(r, transport=kind))

    def room(self, name: str) -> None:
        self._recorder._update(self.session_id, lambda r: replace(r, room_name=name))

    def queued(self, position: int) -> None:
        self._recorder._update(
            self.session_id, lambda r: replace(r, queue_positions=[*r.queue_positions, position])
        )

    def prompt(self, text: str) -> None:
        self._recorder._update(
            self.session_id, lambda r: replace(r, prompts_applied=[*r.prompts_applied, text])
        )

    def image(self, digest: str | None) -> None:
        self._recorder._update(
            self.session_id, lambda r: replace(r, images_applied=[*r.images_applied, digest])
        )

    def rejected(self, what: str, error: str) -> None:
        self._recorder._update(
            self.session_id, lambda r: replace(r, rejected=[*r.rejected, (what, error)])
        )

    def offer(self) -> None:
        self._recorder._update(self.session_id, lambda r: replace(r, offers=r.offers + 1))

    def remote_candidate(self) -> None:
        self._recorder._update(
            self.session_id, lambda r: replace(r, remote_candidates=r.remote_candidates + 1)
        )

    def frame_received(self) -> None:
        self._recorder._update(
            self.session_id, lambda r: replace(r, frames_received=r.frames_received + 1)
        )

    def frame_sent(self) -> None:
        self._recorder._update(self.session_id, lambda r: replace(r, frames_sent=r.frames_sent + 1))

    def seconds(self, seconds: int) -> None:
        self._recorder._update(self.session_id, lambda r: replace(r, generation_seconds=seconds))

    def ended(self, reason: str, close_code: int | None) -> None:
        self._recorder._update(
            self.session_id,
            lambda r: replace(r, end_reason=reason, close_code=close_code, ended_at=time.time()),
        )
