"""The usage ledger: every generation second, per user and session, durably.

One row per client session holds its user, model, the service's session id, the cumulative
generation seconds and the number of ticks recorded. The relay writes each ``generation_tick``
**before** forwarding it, and a write returns only once it is committed, so a crash of the proxy
loses nothing a client has seen (docs/protocol.md: ticks add up, so each row always holds the
latest total). Writes from all sessions are group-committed: whatever arrives while one commit
is in flight goes into the next, so a thousand sessions cost a few commits a second, not a
thousand.

Open sessions carry a lease (``last_seen``, refreshed by the proxy that serves them): a session
whose proxy died stops counting against its user's concurrency limit once the lease runs out,
and `Ledger.reap` closes it with the reason ``lost`` (`REAPED`). So the proxies themselves keep no
state and any number of them can share one PostgreSQL ledger behind a load balancer. A reap is a
guess from silence: if the session's proxy was only slow to renew (a stalled event loop, a busy
database), its next `Ledger.touch` opens the row again, and its own `Ledger.end_session`
replaces the guess with the real end. Seconds are cumulative per row, so neither counts any
twice.

Backends: `decart_widget.proxy._ledger_sqlite.SQLiteLedger` (the default, embedded) and
`decart_widget.proxy._ledger_postgres.PostgresLedger` (needs ``psycopg``). `open_ledger` picks one
from a path or DSN.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TABLE_PREFIX = "decart_proxy_"
SCHEMA_VERSION = 1
#: The end reason `Ledger.reap` gives a session whose lease ran out.
REAPED = "lost"


class LedgerError(Exception):
    """The ledger could not record or read usage (database down, disk full, ...)."""


@dataclass(frozen=True)
class LedgerSession:
    id: str
    user: str
    model: str
    instance: str
    upstream_session_id: str | None
    seconds: float
    ticks: int
    started_at: float
    last_seen: float
    ended_at: float | None
    end_reason: str | None

    @property
    def open(self) -> bool:
        return self.ended_at is None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> LedgerSession:
        """A record from a ``sessions`` row (the same column order in every backend)."""
        return cls(
            id=row[0],
            user=row[1],
            model=row[2],
            instance=row[3],
            upstream_session_id=row[4],
            seconds=float(row[5]),
            ticks=int(row[6]),
            started_at=float(row[7]),
            last_seen=float(row[8]),
            ended_at=None if row[9] is None else float(row[9]),
            end_reason=row[10],
        )


@dataclass(frozen=True)
class StartResult:
    """Whether a session may start, and how many of its user's sessions were already open."""

    ok: bool
    active: int


def period_start(period: str, now: float) -> float | None:
    """The start (Unix time) of the quota period containing ``now``; None for ``total``."""
    if period == "total":
        return None
    moment = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    elif period == "month":
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        raise ValueError(f"unknown quota period {period!r}")
    return start.timestamp()


class Ledger(abc.ABC):
    """What the proxy needs from a usage store. Every method is a coroutine-safe async call."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the tables if needed."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and disconnect."""

    @abc.abstractmethod
    async def start_session(
        self,
        session_id: str,
        user: str,
        model: str,
        instance: str,
        *,
        now: float,
        max_concurrent: int | None,
        lease: float,
    ) -> StartResult:
        """Record a new session unless ``user`` already has ``max_concurrent`` live ones."""

    @abc.abstractmethod
    async def set_upstream_session(self, session_id: str, upstream_session_id: str) -> None:
        """Remember the service's own id for a session."""

    @abc.abstractmethod
    async def record_tick(self, session_id: str, seconds: float, *, now: float) -> None:
        """Record a cumulative tick durably (returns once committed)."""

    @abc.abstractmethod
    async def end_session(
        self, session_id: str, reason: str, *, now: float, seconds: float | None = None
    ) -> None:
        """Close a session (idempotent: the first end wins, except over a reap's `REAPED`)."""

    @abc.abstractmethod
    async def touch(self, session_ids: Sequence[str], *, now: float) -> None:
        """Renew the lease of live sessions (and reopen those reaped meanwhile)."""

    @abc.abstractmethod
    async def reap(self, *, now: float, lease: float) -> int:
        """End the open sessions whose lease ran out (their proxy died); returns how many."""

    @abc.abstractmethod
    async def usage(
        self, user: str, *, since: float | None = None, exclude: str | None = None
    ) -> float:
        """Generation seconds of ``user``'s sessions started at or after ``since``."""

    @abc.abstractmethod
    async def set_quota(self, user: str, seconds: float | None) -> None:
        """Give ``user`` their own quota (``None`` removes it: the default applies)."""

    @abc.abstractmethod
    async def get_quota(self, user: str) -> float | None:
        """The user's own quota, if one was set."""

    @abc.abstractmethod
    async def sessions(self, user: str | None = None, *, limit: int = 1000) -> list[LedgerSession]:
        """Recorded sessions, newest first."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise `LedgerError` if the store cannot be reached."""

    async def __aenter__(self) -> Ledger:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def open_ledger(spec: str | None) -> Ledger:
    """A ledger from ``--ledger``: a SQLite path (or ``sqlite:///path``, ``:memory:``), or a
    ``postgresql://`` DSN. Not yet opened: call ``await ledger.open()``."""
    spec = (spec or ":memory:").strip()
    if spec.startswith(("postgresql://", "postgres://")):
        from ._ledger_postgres import PostgresLedger

        return PostgresLedger(spec)
    from ._ledger_sqlite import SQLiteLedger

    if spec.startswith("sqlite:///"):
        spec = spec[len("sqlite:///") :] or ":memory:"
    elif spec.startswith("sqlite://"):
        spec = spec[len("sqlite://") :] or ":memory:"
    return SQLiteLedger(spec)
