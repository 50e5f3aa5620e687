"""The embedded ledger: SQLite in WAL mode with ``synchronous=FULL``, group-committed.

One writer thread owns the connection. Callers queue operations; the thread runs everything
queued so far in one transaction (each operation in its own savepoint, so one failure spoils
nothing else), commits, and only then settles the callers' futures. A committed transaction
survives a kill of the process and, with ``synchronous=FULL``, a power cut.

Several proxy processes on one host may share the file (SQLite locks it); for several hosts use
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ._ledger import (
    REAPED,
    SCHEMA_VERSION,
    TABLE_PREFIX,
    Ledger,
    LedgerError,
    LedgerSession,
    StartResult,
)

log = logging.getLogger("decart_widget.proxy.ledger")

T = TypeVar("T")
_MAX_BATCH = 1024

SESSIONS = f"{TABLE_PREFIX}sessions"
QUOTAS = f"{TABLE_PREFIX}quotas"
META = f"{TABLE_PREFIX}schema"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {SESSIONS} (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    model TEXT NOT NULL,
    instance TEXT NOT NULL,
    upstream_session_id TEXT,
    seconds REAL NOT NULL DEFAULT 0,
    ticks INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    ended_at REAL,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS {SESSIONS}_user ON {SESSIONS} (user_id, started_at);
CREATE INDEX IF NOT EXISTS {SESSIONS}_open ON {SESSIONS} (user_id) WHERE ended_at IS NULL;
CREATE TABLE IF NOT EXISTS {QUOTAS} (
    user_id TEXT PRIMARY KEY,
    seconds REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS {META} (version INTEGER NOT NULL);
"""

_COLUMNS = (
    "id, user_id, model, instance, upstream_session_id, seconds, ticks, started_at, last_seen, "
    "ended_at, end_reason"
)

Op = Callable[[sqlite3.Connection], Any]
_Item = tuple[Op, "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SQLiteLedger(Ledger):
    def __init__(self, path: str | os.PathLike[str] = ":memory:") -> None:
        self.path = os.fspath(path)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteLedger({self.path!r})"

    # ---- the writer thread --------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(_SCHEMA)
        row = conn.execute(f"SELECT version FROM {META}").fetchone()
        if row is None:
            conn.execute(f"INSERT INTO {META} (version) VALUES (?)", (SCHEMA_VERSION,))
        elif int(row[0]) > SCHEMA_VERSION:
            raise LedgerError(
                f"ledger schema version {row[0]} is newer than this proxy ({SCHEMA_VERSION})"
            )
        return conn

    def _run(self, ready: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        try:
            conn = self._connect()
        except Exception as exc:  # report to open() and stop
            loop.call_soon_threadsafe(
                _settle, ready, None, LedgerError(f"cannot open ledger: {exc}")
            )
            return
        loop.call_soon_threadsafe(_settle, ready, None, None)
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                batch = [item]
                stop = False
                while len(batch) < _MAX_BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                self._run_batch(conn, batch)
                if stop:
                    break
        finally:
            conn.close()
            # Anything queued after the stop marker fails rather than hanging.
            while True:
                try:
                    left = self._queue.get_nowait()
                except queue.Empty:
                    break
                if left is not None:
                    left[2].call_soon_threadsafe(
                        _settle, left[1], None, LedgerError("ledger is closed")
                    )

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, _future, _loop in batch:
                conn.execute("SAVEPOINT op")
                try:
                    result = op(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append(
                        (None, exc if isinstance(exc, LedgerError) else LedgerError(str(exc)))
                    )
                else:
                    conn.execute("RELEASE op")
                    outcomes.append((result, None))
            conn.execute("COMMIT")
        except Exception as exc:
            log.error("ledger commit failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = LedgerError(f"ledger commit failed: {exc}")
            outcomes = [(None, error)] * len(batch)
        for (_op, future, loop), (result, error_) in zip(batch, outcomes, strict=True):
            loop.call_soon_threadsafe(_settle, future, result, error_)

    async def _call(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None or self._closed:
            raise LedgerError("ledger is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((op, future, loop))
        return await future

    # ---- the Ledger API -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, args=(ready, loop), name="decart-proxy-ledger", daemon=True
        )
        self._thread.start()
        try:
            await ready
        except BaseException:
            self._thread = None
            raise

    async def close(self) -> None:
        thread = self._thread
        if thread is None or self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        self._thread = None

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
        submitted = time.monotonic()

        def op(conn: sqlite3.Connection) -> StartResult:
            # the lease starts when the row is written, not when the op was queued
            at = now + max(0.0, time.monotonic() - submitted)
            (active,) = conn.execute(
                f"SELECT COUNT(*) FROM {SESSIONS} "
                "WHERE user_id = ? AND ended_at IS NULL AND last_seen >= ?",
                (user, at - lease),
            ).fetchone()
            if max_concurrent is not None and active >= max_concurrent:
                return StartResult(ok=False, active=int(active))
            conn.execute(
                f"INSERT INTO {SESSIONS} (id, user_id, model, instance, started_at, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, user, model, instance, now, at),
            )
            return StartResult(ok=True, active=int(active))

        return await self._call(op)

    async def set_upstream_session(self, session_id: str, upstream_session_id: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE {SESSIONS} SET upstream_session_id = ? WHERE id = ?",
                (upstream_session_id, session_id),
            )

        await self._call(op)

    async def record_tick(self, session_id: str, seconds: float, *, now: float) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE {SESSIONS} SET seconds = MAX(seconds, ?), ticks = ticks + 1, "
                "last_seen = ? WHERE id = ?",
                (float(seconds), now, session_id),
            )

        await self._call(op)

    async def end_session(
        self, session_id: str, reason: str, *, now: float, seconds: float | None = None
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE {SESSIONS} SET seconds = MAX(seconds, ?), ended_at = ?, end_reason = ?, "
                f"last_seen = ? WHERE id = ? AND (ended_at IS NULL OR end_reason = '{REAPED}')",
                (float(seconds or 0), now, reason, now, session_id),
            )

        await self._call(op)

    async def touch(self, session_ids: Sequence[str], *, now: float) -> None:
        ids = list(session_ids)
        if not ids:
            return

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                f"UPDATE {SESSIONS} SET last_seen = MAX(last_seen, ?), ended_at = NULL, "
                f"end_reason = NULL WHERE id = ? AND (ended_at IS NULL OR end_reason = '{REAPED}')",
                [(now, sid) for sid in ids],
            )

        await self._call(op)

    async def reap(self, *, now: float, lease: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                f"UPDATE {SESSIONS} SET ended_at = last_seen, end_reason = '{REAPED}' "
                "WHERE ended_at IS NULL AND last_seen < ?",
                (now - lease,),
            )
            return int(cursor.rowcount)

        return await self._call(op)

    async def usage(
        self, user: str, *, since: float | None = None, exclude: str | None = None
    ) -> float:
        def op(conn: sqlite3.Connection) -> float:
            (total,) = conn.execute(
                f"SELECT COALESCE(SUM(seconds), 0) FROM {SESSIONS} "
                "WHERE user_id = ? AND started_at >= ? AND id != ?",
                (user, since if since is not None else float("-inf"), exclude or ""),
            ).fetchone()
            return float(total)

        return await self._call(op)

    async def set_quota(self, user: str, seconds: float | None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            if seconds is None:
                conn.execute(f"DELETE FROM {QUOTAS} WHERE user_id = ?", (user,))
            else:
                conn.execute(
                    f"INSERT INTO {QUOTAS} (user_id, seconds) VALUES (?, ?) "
                    "ON CONFLICT (user_id) DO UPDATE SET seconds = excluded.seconds",
                    (user, float(seconds)),
                )

        await self._call(op)

    async def get_quota(self, user: str) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                f"SELECT seconds FROM {QUOTAS} WHERE user_id = ?", (user,)
            ).fetchone()
            return None if row is None else float(row[0])

        return await self._call(op)

    async def sessions(self, user: str | None = None, *, limit: int = 1000) -> list[LedgerSession]:
        def op(conn: sqlite3.Connection) -> list[LedgerSession]:
            if user is None:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM {SESSIONS} ORDER BY started_at DESC, id LIMIT ?",
                    (limit,),
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM {SESSIONS} WHERE user_id = ? "
                    "ORDER BY started_at DESC, id LIMIT ?",
                    (user, limit),
                ).fetchall()
            return [LedgerSession.from_row(row) for row in rows]

        return await self._call(op)

    async def ping(self) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1").fetchone()

        await self._call(op)
