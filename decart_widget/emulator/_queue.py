"""The Gen-B waiting line: at most ``capacity`` sessions hold a room, the others queue.

Decart queues a Gen-B session while no model server is free and tells it where it stands with
``queue_position {position, queue_size}`` before ``livekit_room_info`` (docs/protocol.md). The
emulator does the same when ``room_capacity`` is set (``Emulator(room_capacity=...)``,
``decart-widget emulator --room-capacity N``, or `Emulator.set_room_capacity` at runtime; 0 holds
every new session). Positions are 1-based; every waiting session hears its new position whenever
it or the queue's size changes (a session ahead ended or left the queue, capacity grew, one more
joined). Gen-A sessions never queue and take no capacity.

Runs on the emulator's loop only; `waiting` / `serving` return copies for other threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

#: (position, queue_size), or None once admitted.
Update = tuple[int, int] | None


@dataclass
class Ticket:
    """One session's place in line; iterate `updates` until it is admitted."""

    session_id: str
    _updates: asyncio.Queue[Update] = field(default_factory=asyncio.Queue)
    _last: tuple[int, int] | None = None

    async def updates(self) -> AsyncIterator[tuple[int, int]]:
        """Each new (position, queue_size) while waiting; ends once the session is admitted."""
        while True:
            update = await self._updates.get()
            if update is None:
                return
            yield update

    def _tell(self, update: tuple[int, int]) -> None:
        if update != self._last:
            self._last = update
            self._updates.put_nowait(update)

    def _admit(self) -> None:
        self._updates.put_nowait(None)


class RoomQueue:
    def __init__(self, capacity: int | None = None) -> None:
        self._capacity = capacity
        self._serving: list[str] = []
        self._waiting: list[Ticket] = []
        self._lock = threading.Lock()  # guards the lists for readers in other threads

    @property
    def capacity(self) -> int | None:
        """Sessions that may hold a room at once (None: no limit, nobody queues)."""
        return self._capacity

    def set_capacity(self, capacity: int | None) -> None:
        if capacity is not None and capacity < 0:
            raise ValueError("room capacity must be None or at least 0")
        self._capacity = capacity
        self._advance()

    def enter(self, session_id: str) -> Ticket:
        """Join the line; the ticket is admitted at once when there is room and nobody waits."""
        ticket = Ticket(session_id)
        with self._lock:
            self._waiting.append(ticket)
        self._advance()
        return ticket

    def leave(self, session_id: str) -> None:
        """The session ended: free its room or its place in line (unknown ids are ignored)."""
        with self._lock:
            if session_id in self._serving:
                self._serving.remove(session_id)
            self._waiting = [t for t in self._waiting if t.session_id != session_id]
        self._advance()

    def waiting(self) -> list[str]:
        """Session ids in line, first first."""
        with self._lock:
            return [t.session_id for t in self._waiting]

    def serving(self) -> list[str]:
        """Session ids admitted (holding or opening a room)."""
        with self._lock:
            return list(self._serving)

    def _has_room(self) -> bool:
        return self._capacity is None or len(self._serving) < self._capacity

    def _advance(self) -> None:
        admitted: list[Ticket] = []
        with self._lock:
            while self._waiting and self._has_room():
                ticket = self._waiting.pop(0)
                self._serving.append(ticket.session_id)
                admitted.append(ticket)
            waiting = list(self._waiting)
        for ticket in admitted:
            ticket._admit()
        for index, ticket in enumerate(waiting):
            ticket._tell((index + 1, len(waiting)))
