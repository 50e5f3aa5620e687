"""How long connecting may take, and when a lost session tries again (docs/protocol.md, "States,
timeouts and retries"); the twin of js/src/attempts.ts. Deadlines only, no timers, like the session
core (`SessionCore`) that owns it.

* The whole (re)connect, from a start or a loss to "connected", is bounded by ``connect``.
* Each attempt is bounded (docs/where-it-works.md): its socket must open within ``open`` and its
  media connect within ``media`` of being started, both well under ``connect``.
* After a loss the next attempt waits the next delay of the `RetryPolicy`; their number is the
  number of retries, counted again from zero once the session is generating.

A session that never connected does not retry a failed attempt (the next one would meet the same
network) and never calls its failure a lost connection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ._constants import BACKOFF
from ._errors import ConnectionLost

logger = logging.getLogger("decart_widget.protocol.session")


@dataclass(frozen=True)
class RetryPolicy:
    """Delays (s) before each reconnect attempt; their number is the number of retries."""

    delays: tuple[float, ...] = BACKOFF

    @property
    def retries(self) -> int:
        return len(self.delays)


@dataclass(frozen=True)
class AttemptLimits:
    """Seconds: the whole connect, an attempt's socket and media; the delays before each retry."""

    connect: float
    open: float
    media: float
    retry: RetryPolicy


class Attempts:
    """The connect bounds and the retry count of one session (see the module docstring)."""

    def __init__(self, limits: AttemptLimits) -> None:
        self._limits = limits
        #: reconnect attempts used since the session last reached generating
        self.retries = 0
        #: the media connected at least once since start
        self.connected = False
        self._connect_deadline: float | None = None
        self._retry_at: float | None = None
        # this attempt's deadline: for the socket to open, then for the media to connect once
        # started (awaiting_media)
        self._attempt_deadline: float | None = None
        self._awaiting_media = False

    def next_deadline(self) -> float | None:
        deadlines = (self._connect_deadline, self._retry_at, self._attempt_deadline)
        return min((d for d in deadlines if d is not None), default=None)

    def start(self, now: float) -> None:
        """A new session: the whole connect is bounded from now."""
        self.retries = 0
        self.connected = False
        self._connect_deadline = now + self._limits.connect

    def open(self, now: float) -> int:
        """A new attempt, whose socket must open in time; its number (0 first, k for the k-th
        retry)."""
        self._retry_at = None
        self._attempt_deadline = now + self._limits.open
        self._awaiting_media = False
        return self.retries

    def socket_opened(self) -> None:
        self._attempt_deadline = None

    def await_media(self, now: float) -> None:
        """The media link was started: it must connect in time."""
        self._attempt_deadline = now + self._limits.media
        self._awaiting_media = True

    def media_connected(self) -> None:
        self._attempt_deadline = None
        self.connected = True

    def reached(self, generating: bool) -> None:
        """The session is connected (or generating: the retry count starts again)."""
        self._connect_deadline = None
        self.connected = True
        if generating:
            self.retries = 0

    def postpone(self, seconds: float) -> None:
        """Seconds that did not count (the session waited in the server's queue)."""
        if self._connect_deadline is not None:
            self._connect_deadline += seconds

    def close(self) -> None:
        """The attempt's socket and media are closed."""
        self._attempt_deadline = None

    def end(self) -> None:
        """The session ended: nothing more to wait for."""
        self._retry_at = None
        self._connect_deadline = None

    def connect_overdue(self, now: float) -> ConnectionLost | None:
        """The error that ends the session once the whole connect took too long, else None."""
        if self._connect_deadline is None or now < self._connect_deadline:
            return None
        return ConnectionLost(f"could not connect within {self._limits.connect:g} s")

    def attempt_overdue(self, now: float) -> tuple[str, bool] | None:
        """``(why, media)`` if the attempt's socket or media did not come up in time, else None."""
        if self._attempt_deadline is None or now < self._attempt_deadline:
            return None
        if self._awaiting_media:
            return f"no media connection within {self._limits.media:g} s", True
        return f"no signaling connection within {self._limits.open:g} s", False

    def retry_due(self, now: float) -> bool:
        return self._retry_at is not None and now >= self._retry_at

    def unreachable(self, why: str, media: bool) -> ConnectionLost | None:
        """An attempt failed (``why``; ``media``: the media, not the socket): before the session
        ever connected a retry would meet the same network, so this is the error that ends it;
        after, None: a loss like any other."""
        if self.connected:
            return None
        what = "the video could not connect" if media else "could not connect"
        return ConnectionLost(f"{what}: {why}")

    def retry(self, now: float, why: str, live: bool) -> ConnectionLost | None:
        """After a loss (``why``): the next attempt is scheduled (None), or, with no retry left,
        the error that ends the session. ``live``: the session was connected, so a new connect
        bound starts."""
        policy = self._limits.retry
        if self.retries >= policy.retries:
            if self.connected:
                return ConnectionLost(f"connection lost after {self.retries} retries: {why}")
            return ConnectionLost(f"could not connect after {self.retries + 1} attempts: {why}")
        delay = policy.delays[self.retries]
        self.retries += 1
        logger.info("%s; retry %d in %g s", why, self.retries, delay)
        self._retry_at = now + delay
        if live:
            self._connect_deadline = now + self._limits.connect
        return None
