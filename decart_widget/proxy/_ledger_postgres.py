"""The shared ledger: PostgreSQL through psycopg 3 (async), group-committed.

For several proxy instances behind a load balancer: they all point ``--ledger`` at one database
and keep no state of their own. One connection per proxy carries the writes: operations queued
while a commit is in flight go into the next transaction (each in a savepoint, except tick
updates, which cannot fail on their own). A session start takes a transaction-scoped advisory
lock on its user, so the per-user concurrency limit holds across instances; each start runs in its
own short transaction ahead of its batch's, so a user's lock is held for a count and an insert
only and instances never wait on each other's batches, nor deadlock; a reap skips rows another
transaction holds.

If the connection drops, the operations in flight fail with `LedgerError` (the relay then ends
those sessions rather than serve unmetered time) and the next operation reconnects.

`ping` (``/healthz``) answers at once when a transaction committed within the last
`RECENT_COMMIT` seconds: that proves the database reachable, and a ping queued behind a busy
instance's writes would make a load balancer's health check time out under load, and take every
busy instance out of rotation at once. Otherwise it queues a ``SELECT 1`` like any operation.

Needs ``pip install "psycopg[binary]"`` (the ``proxy-postgres`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..protocol._urls import redact
from ._ledger import (
    REAPED,
    SCHEMA_VERSION,
    TABLE_PREFIX,
    Ledger,
    LedgerError,
    LedgerSession,
    StartResult,
)

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("decart_widget.proxy.ledger")

T = TypeVar("T")
_MAX_BATCH = 1024
#: A commit at most this many seconds old answers `PostgresLedger.ping` by itself.
RECENT_COMMIT = 2.0
#: First argument of the advisory locks taken on users ("DWPX"), so they cannot collide with
#: the platform's own single-key locks.
LOCK_CLASS = 0x44575058 & 0x7FFFFFFF

SESSIONS = f"{TABLE_PREFIX}sessions"
QUOTAS = f"{TABLE_PREFIX}quotas"
META = f"{TABLE_PREFIX}schema"

_SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS {SESSIONS} (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        model TEXT NOT NULL,
        instance TEXT NOT NULL,
        upstream_session_id TEXT,
        seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
        ticks BIGINT NOT NULL DEFAULT 0,
        started_at TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL,
        ended_at TIMESTAMPTZ,
        end_reason TEXT
    )""",
    f"CREATE INDEX IF NOT EXISTS {SESSIONS}_user ON {SESSIONS} (user_id, started_at)",
    f"CREATE INDEX IF NOT EXISTS {SESSIONS}_open ON {SESSIONS} (user_id) WHERE ended_at IS NULL",
    f"""CREATE TABLE IF NOT EXISTS {QUOTAS} (
        user_id TEXT PRIMARY KEY,
        seconds DOUBLE PRECISION NOT NULL
    )""",
    f"CREATE TABLE IF NOT EXISTS {META} (version INTEGER NOT NULL)",
]

_COLUMNS = (
    "id, user_id, model, instance, upstream_session_id, seconds, ticks, "
    "extract(epoch FROM started_at), extract(epoch FROM last_seen), "
    "extract(epoch FROM ended_at), end_reason"
)

Op = Callable[["psycopg.AsyncConnection[Any]"], Awaitable[Any]]


@dataclass(frozen=True)
class _Tick:
    session_id: str
    seconds: float
    now: float


#: An operation, whether it runs in its own savepoint, its future, and the user whose advisory
#: lock it takes (a session start: run in its own transaction), if any.
_Item = tuple["Op | _Tick", bool, "asyncio.Future[Any]", "str | None"]

# Several ticks of one session may share a batch: aggregate them before the update.
_TICKS_SQL = f"""
UPDATE {SESSIONS} AS s
SET seconds = GREATEST(s.seconds, v.seconds), ticks = s.ticks + v.n,
    last_seen = GREATEST(s.last_seen, to_timestamp(v.now))
FROM (
    SELECT id, MAX(seconds) AS seconds, COUNT(*) AS n, MAX(now) AS now
    FROM unnest(%s::text[], %s::float8[], %s::float8[]) AS t(id, seconds, now)
    GROUP BY id
) AS v
WHERE s.id = v.id
"""


def safe_dsn(dsn: str) -> str:
    """The DSN with its password hidden (``user:***@`` and ``password=***``)."""
    dsn = re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", dsn)
    return re.sub(r"(password=)[^&\s]*", r"\1***", dsn, flags=re.IGNORECASE)


class PostgresLedger(Ledger):
    def __init__(self, dsn: str, *, connect_timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._worker: asyncio.Task[None] | None = None
        #: When (monotonic) the last transaction committed.
        self._committed_at: float | None = None

    def __repr__(self) -> str:
        return f"PostgresLedger({redact(self._safe_dsn())!r})"

    def _safe_dsn(self) -> str:
        return safe_dsn(self.dsn)

    # ---- connection and worker ----------------------------------------------------------------

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise LedgerError(
                'the PostgreSQL ledger needs psycopg: pip install "psycopg[binary]"'
            ) from exc
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
            )
        except psycopg.Error as exc:
            raise LedgerError(f"cannot connect to the ledger database: {exc}") from None
        return conn

    async def _ensure_conn(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect()
        return self._conn

    async def _work(self) -> None:
        assert self._queue is not None
        q = self._queue
        while True:
            item = await q.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < _MAX_BATCH and not q.empty():
                more = q.get_nowait()
                if more is None:
                    stop = True
                    break
                batch.append(more)
            await self._run_batch(batch)
            if stop:
                return

    async def _run_batch(self, batch: list[_Item]) -> None:
        import psycopg

        outcomes: list[tuple[Any, BaseException | None] | None] = [None] * len(batch)
        ticks: list[_Tick] = []
        try:
            conn = await self._ensure_conn()
            # Session starts first, each in its own short transaction: its user's advisory lock
            # is held for its count and insert only. Held to the end of a whole batch, the locks
            # queued every instance behind the others' batches (and, taken in batch order,
            # deadlocked them): issue 14's scale-out run.
            for index, (op, _guarded, _future, user) in enumerate(batch):
                if user is None or isinstance(op, _Tick):
                    continue
                try:
                    async with conn.transaction():
                        outcomes[index] = (await op(conn), None)
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as exc:
                    outcomes[index] = (None, LedgerError(str(exc)))
            async with conn.transaction():
                for index, (op, guarded, _future, user) in enumerate(batch):
                    if user is not None:
                        continue
                    if isinstance(op, _Tick):
                        ticks.append(op)
                        outcomes[index] = (None, None)
                        continue
                    if not guarded:
                        outcomes[index] = (await op(conn), None)
                        continue
                    try:
                        async with conn.transaction():
                            result = await op(conn)
                    except psycopg.OperationalError:
                        raise
                    except psycopg.Error as exc:
                        outcomes[index] = (None, LedgerError(str(exc)))
                    else:
                        outcomes[index] = (result, None)
                if ticks:  # every tick of the batch in one statement, one round trip
                    await conn.execute(
                        _TICKS_SQL,
                        (
                            [tick.session_id for tick in ticks],
                            [tick.seconds for tick in ticks],
                            [tick.now for tick in ticks],
                        ),
                    )
            self._committed_at = time.monotonic()
        except (psycopg.Error, LedgerError, OSError) as exc:
            log.error("ledger transaction failed: %s", redact(str(exc)))
            if self._conn is not None and (
                self._conn.closed or isinstance(exc, psycopg.OperationalError)
            ):
                with contextlib.suppress(psycopg.Error):
                    await self._conn.close()
                self._conn = None
            self._committed_at = None
            error = exc if isinstance(exc, LedgerError) else LedgerError(f"ledger failed: {exc}")
            # what the failed group transaction held is lost; starts already committed stand
            outcomes = [
                (None, error) if outcome is None or batch[index][3] is None
                else outcome
                for index, outcome in enumerate(outcomes)
            ]  # fmt: skip
        for (_op, _guarded, future, _user), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            result, error_ = outcome if outcome is not None else (None, LedgerError("not run"))
            if error_ is not None:
                future.set_exception(error_)
            else:
                future.set_result(result)

    def _submit(
        self, op: Op | _Tick, guarded: bool, lock_user: str | None = None
    ) -> asyncio.Future[Any]:
        if self._queue is None or self._worker is None or self._worker.done():
            raise LedgerError("ledger is not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, guarded, future, lock_user))
        return future

    async def _call(
        self,
        op: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
        *,
        guarded: bool = True,
        lock_user: str | None = None,
    ) -> T:
        result: T = await self._submit(op, guarded, lock_user)
        return result

    # ---- the Ledger API -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._worker is not None:
            return
        import psycopg

        conn = await self._ensure_conn()
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))
                for statement in _SCHEMA:
                    await conn.execute(statement)
                cursor = await conn.execute(f"SELECT version FROM {META}")
                row = await cursor.fetchone()
                if row is None:
                    await conn.execute(
                        f"INSERT INTO {META} (version) VALUES (%s)", (SCHEMA_VERSION,)
                    )
                elif int(row[0]) > SCHEMA_VERSION:
                    raise LedgerError(
                        f"ledger schema version {row[0]} is newer than this proxy "
                        f"({SCHEMA_VERSION})"
                    )
        except psycopg.Error as exc:
            raise LedgerError(f"cannot set up the ledger tables: {exc}") from None
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._work(), name="decart-proxy-ledger")

    async def close(self) -> None:
        worker, q = self._worker, self._queue
        if worker is not None and q is not None:
            q.put_nowait(None)
            try:
                await worker
            finally:
                self._worker = None
        if q is not None:
            while not q.empty():
                item = q.get_nowait()
                if item is not None and not item[2].done():
                    item[2].set_exception(LedgerError("ledger is closed"))
        self._queue = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

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

        async def op(conn: psycopg.AsyncConnection[Any]) -> StartResult:
            # The lease starts when the row is written: a busy queue may have held the op for
            # seconds, and a row born stale would be reaped by another instance at once.
            at = now + max(0.0, time.monotonic() - submitted)
            await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, user))
            cursor = await conn.execute(
                f"SELECT COUNT(*) FROM {SESSIONS} WHERE user_id = %s AND ended_at IS NULL "
                "AND last_seen >= to_timestamp(%s)",
                (user, at - lease),
            )
            row = await cursor.fetchone()
            active = int(row[0]) if row else 0
            if max_concurrent is not None and active >= max_concurrent:
                return StartResult(ok=False, active=active)
            await conn.execute(
                f"INSERT INTO {SESSIONS} (id, user_id, model, instance, started_at, last_seen) "
                "VALUES (%s, %s, %s, %s, to_timestamp(%s), to_timestamp(%s))",
                (session_id, user, model, instance, now, at),
            )
            return StartResult(ok=True, active=active)

        return await self._call(op, lock_user=user)

    async def set_upstream_session(self, session_id: str, upstream_session_id: str) -> None:
        async def op(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                f"UPDATE {SESSIONS} SET upstream_session_id = %s WHERE id = %s",
                (upstream_session_id, session_id),
            )

        await self._call(op)

    async def record_tick(self, session_id: str, seconds: float, *, now: float) -> None:
        await self._submit(_Tick(session_id, float(seconds), now), guarded=False)

    async def end_session(
        self, session_id: str, reason: str, *, now: float, seconds: float | None = None
    ) -> None:
        async def op(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                f"UPDATE {SESSIONS} SET seconds = GREATEST(seconds, %s), "
                "ended_at = to_timestamp(%s), end_reason = %s, last_seen = to_timestamp(%s) "
                f"WHERE id = %s AND (ended_at IS NULL OR end_reason = '{REAPED}')",
                (float(seconds or 0), now, reason, now, session_id),
            )

        await self._call(op)

    async def touch(self, session_ids: Sequence[str], *, now: float) -> None:
        ids = list(session_ids)
        if not ids:
            return

        async def op(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                f"UPDATE {SESSIONS} SET last_seen = GREATEST(last_seen, to_timestamp(%s)), "
                "ended_at = NULL, end_reason = NULL "
                f"WHERE id = ANY(%s) AND (ended_at IS NULL OR end_reason = '{REAPED}')",
                (now, ids),
            )

        await self._call(op)

    async def reap(self, *, now: float, lease: float) -> int:
        async def op(conn: psycopg.AsyncConnection[Any]) -> int:
            cursor = await conn.execute(
                # rows another transaction holds are being written, so alive: skipped, never
                # waited for (a reap waiting on another instance's batch could deadlock with it)
                f"UPDATE {SESSIONS} SET ended_at = last_seen, end_reason = '{REAPED}' "
                f"WHERE id IN (SELECT id FROM {SESSIONS} WHERE ended_at IS NULL "
                "AND last_seen < to_timestamp(%s) FOR UPDATE SKIP LOCKED)",
                (now - lease,),
            )
            return max(0, cursor.rowcount)

        return await self._call(op)

    async def usage(
        self, user: str, *, since: float | None = None, exclude: str | None = None
    ) -> float:
        async def op(conn: psycopg.AsyncConnection[Any]) -> float:
            cursor = await conn.execute(
                f"SELECT COALESCE(SUM(seconds), 0) FROM {SESSIONS} WHERE user_id = %s "
                "AND (%s::double precision IS NULL OR started_at >= to_timestamp(%s)) "
                "AND id <> %s",
                (user, since, since, exclude or ""),
            )
            row = await cursor.fetchone()
            return float(row[0]) if row else 0.0

        return await self._call(op)

    async def set_quota(self, user: str, seconds: float | None) -> None:
        async def op(conn: psycopg.AsyncConnection[Any]) -> None:
            if seconds is None:
                await conn.execute(f"DELETE FROM {QUOTAS} WHERE user_id = %s", (user,))
            else:
                await conn.execute(
                    f"INSERT INTO {QUOTAS} (user_id, seconds) VALUES (%s, %s) "
                    "ON CONFLICT (user_id) DO UPDATE SET seconds = EXCLUDED.seconds",
                    (user, float(seconds)),
                )

        await self._call(op)

    async def get_quota(self, user: str) -> float | None:
        async def op(conn: psycopg.AsyncConnection[Any]) -> float | None:
            cursor = await conn.execute(f"SELECT seconds FROM {QUOTAS} WHERE user_id = %s", (user,))
            row = await cursor.fetchone()
            return None if row is None else float(row[0])

        return await self._call(op)

    async def sessions(self, user: str | None = None, *, limit: int = 1000) -> list[LedgerSession]:
        async def op(conn: psycopg.AsyncConnection[Any]) -> list[LedgerSession]:
            if user is None:
                cursor = await conn.execute(
                    f"SELECT {_COLUMNS} FROM {SESSIONS} ORDER BY started_at DESC, id LIMIT %s",
                    (limit,),
                )
            else:
                cursor = await conn.execute(
                    f"SELECT {_COLUMNS} FROM {SESSIONS} WHERE user_id = %s "
                    "ORDER BY started_at DESC, id LIMIT %s",
                    (user, limit),
                )
            return [LedgerSession.from_row(row) for row in await cursor.fetchall()]

        return await self._call(op)

    async def ping(self) -> None:
        committed = self._committed_at
        if (
            committed is not None
            and time.monotonic() - committed < RECENT_COMMIT
            and self._conn is not None
            and not self._conn.closed
            and self._worker is not None
            and not self._worker.done()
        ):
            return

        async def op(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute("SELECT 1")

        await self._call(op)
