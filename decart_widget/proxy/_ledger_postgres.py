"""The shared ledger: PostgreSQL through psycopg 3 (async), group-committed.

For several proxy instances behind a load balancer: they all point ``--ledger`` at one database
and keep no state of their own. One connection per proxy carries the writes: operations queued
while a batch is in flight go into the next one, and a batch costs at most three statements
whatever the number of sessions in it (`PostgresLedger._run_batch`), each its own transaction:

* the session starts, in one call of a PL/pgSQL function (`START_SESSIONS`): it takes their
  users' advisory locks in one global order (so the per-user concurrency limit holds across
  instances and two instances never deadlock), then counts and inserts each start in the order
  they came. The locks are held for that statement only, so instances never wait on each
  other's writes;
* every session's ticks, service id and end, merged per session into one ``UPDATE`` over
  arrays (``unnest``);
* the quota and usage reads, in one ``SELECT``.

The rest (lease renewal, reaping, administration) runs one statement per call; a reap skips rows
another transaction holds. Every caller's future is settled once the statement holding its
operation has committed: a tick is durable before the relay forwards it. Fewer statements matter
on a busy proxy more than on a busy database: each one costs the proxy's event loop a few turns.

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
#: Operations in one batch at most. A batch costs a few statements whatever its size, so this
#: only bounds a statement's arrays: a smaller cap throttled a busy instance (issue 14's run,
#: 1,665 sessions an instance on a starved machine: a batch per few hundred ms at most, 1,024
#: ticks each, fell behind the ticks and timed them out).
_MAX_BATCH = 20_000
#: A commit at most this many seconds old answers `PostgresLedger.ping` by itself.
RECENT_COMMIT = 2.0
#: First argument of the advisory locks taken on users ("DWPX"), so they cannot collide with
#: the platform's own single-key locks.
LOCK_CLASS = 0x44575058 & 0x7FFFFFFF

SESSIONS = f"{TABLE_PREFIX}sessions"
QUOTAS = f"{TABLE_PREFIX}quotas"
META = f"{TABLE_PREFIX}schema"
START_SESSIONS = f"{TABLE_PREFIX}start_sessions"

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

# A batch's session starts in one call (one statement, so one transaction): the users' advisory
# locks in one global order (hashtext's: two instances never deadlock), then each start in order
# counts its user's live leases (a fresh snapshot per statement, so after the locks) and is
# inserted if under its limit (negative: none). (Re)created at open only when missing or
# different, so instances whose role does not own it can still start.
_START_SESSIONS_BODY = f"""
DECLARE
    h INTEGER;
BEGIN
    FOR h IN SELECT DISTINCT hashtext(u) FROM unnest(users) AS u ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock({LOCK_CLASS}, h);
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        n := i;
        SELECT COUNT(*) INTO active FROM {SESSIONS} AS s
        WHERE s.user_id = users[i] AND s.ended_at IS NULL
            AND s.last_seen >= to_timestamp(born[i] - leases[i]);
        ok := limits[i] < 0 OR active < limits[i];
        IF ok THEN
            INSERT INTO {SESSIONS} (id, user_id, model, instance, started_at, last_seen)
            VALUES (ids[i], users[i], models[i], instances[i], to_timestamp(started[i]),
                    to_timestamp(born[i]));
        END IF;
        RETURN NEXT;
    END LOOP;
END
"""
_START_SESSIONS_DDL = f"""
CREATE OR REPLACE FUNCTION {START_SESSIONS}(
    ids TEXT[], users TEXT[], models TEXT[], instances TEXT[], started FLOAT8[], born FLOAT8[],
    leases FLOAT8[], limits BIGINT[]
) RETURNS TABLE (n INTEGER, ok BOOLEAN, active BIGINT) LANGUAGE plpgsql
AS $body${_START_SESSIONS_BODY}$body$
"""

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


@dataclass(frozen=True)
class _Start:
    session_id: str
    user: str
    model: str
    instance: str
    now: float
    #: When (monotonic) the start was submitted: the lease starts when the row is written.
    submitted: float
    max_concurrent: int | None
    lease: float


@dataclass(frozen=True)
class _SetUpstream:
    session_id: str
    upstream_session_id: str


@dataclass(frozen=True)
class _End:
    session_id: str
    reason: str
    now: float
    seconds: float


@dataclass(frozen=True)
class _GetQuota:
    user: str


@dataclass(frozen=True)
class _Usage:
    user: str
    since: float | None
    exclude: str | None


#: The per-session operations: a batch runs them as at most three statements, whatever their
#: number (`PostgresLedger._run_batch`).
_Batched = _Tick | _Start | _SetUpstream | _End | _GetQuota | _Usage

#: An operation (a per-session one, or a function of the connection) and its future.
_Item = tuple["Op | _Batched", "asyncio.Future[Any]"]

_STARTS_SQL = f"""
SELECT n, ok, active FROM {START_SESSIONS}(
    %s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::float8[],
    %s::int8[]
)
"""

# Ticks, the service's ids and ends, merged per session by `_writes`: one row, one update. An
# end applies to an open row or over a reap's guess ("lost"): the first real end wins; the SET
# expressions all see the row as it was.
_ENDING = f"v.end_reason IS NOT NULL AND (s.ended_at IS NULL OR s.end_reason = '{REAPED}')"
_WRITES_SQL = f"""
UPDATE {SESSIONS} AS s SET
    seconds = GREATEST(s.seconds, COALESCE(v.tick_seconds, 0),
                       CASE WHEN {_ENDING} THEN v.end_seconds ELSE 0 END),
    ticks = s.ticks + v.tick_count,
    last_seen = CASE WHEN {_ENDING} THEN to_timestamp(v.end_now)
                ELSE GREATEST(s.last_seen, COALESCE(to_timestamp(v.tick_now), s.last_seen)) END,
    upstream_session_id = COALESCE(v.upstream, s.upstream_session_id),
    ended_at = CASE WHEN {_ENDING} THEN to_timestamp(v.end_now) ELSE s.ended_at END,
    end_reason = CASE WHEN {_ENDING} THEN v.end_reason ELSE s.end_reason END
FROM unnest(
    %s::text[], %s::float8[], %s::int8[], %s::float8[], %s::text[], %s::text[], %s::float8[],
    %s::float8[]
) AS v(id, tick_seconds, tick_count, tick_now, upstream, end_reason, end_now, end_seconds)
WHERE s.id = v.id
"""

# Quota reads (n = 0) and usage sums (n = the request's position; a null ``since``, no period,
# is -infinity) in one statement.
_READS_SQL = f"""
SELECT 0::bigint, user_id, seconds FROM {QUOTAS} WHERE user_id = ANY(%s::text[])
UNION ALL
SELECT v.n, v.user_id, (
    SELECT COALESCE(SUM(s.seconds), 0) FROM {SESSIONS} AS s
    WHERE s.user_id = v.user_id AND s.started_at >= to_timestamp(v.since) AND s.id <> v.exclude
)
FROM unnest(%s::text[], %s::float8[], %s::text[]) WITH ORDINALITY AS v(user_id, since, exclude, n)
"""


@dataclass
class _Writes:
    """One session's writes in a batch: its ticks (the highest, how many, the latest time), the
    service's id, its first end."""

    tick_seconds: float | None = None
    tick_count: int = 0
    tick_now: float | None = None
    upstream: str | None = None
    end: _End | None = None

    def add(self, op: _Tick | _SetUpstream | _End) -> None:
        if isinstance(op, _Tick):
            self.tick_seconds = max(op.seconds, self.tick_seconds or op.seconds)
            self.tick_count += 1
            self.tick_now = max(op.now, self.tick_now or op.now)
        elif isinstance(op, _SetUpstream):
            self.upstream = op.upstream_session_id
        elif self.end is None:  # the first end wins
            self.end = op


def _writes_params(writes: dict[str, _Writes]) -> tuple[list[Any], ...]:
    rows = list(writes.values())
    return (
        list(writes),
        [w.tick_seconds for w in rows],
        [w.tick_count for w in rows],
        [w.tick_now for w in rows],
        [w.upstream for w in rows],
        [None if w.end is None else w.end.reason for w in rows],
        [None if w.end is None else w.end.now for w in rows],
        [None if w.end is None else w.end.seconds for w in rows],
    )


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
        """One batch, whatever its size, in at most three statements plus one per function: the
        session starts (one call), the functions (lease renewal, reaping, administration: rare),
        every session's writes (one update), the quota and usage reads (one select). Each
        statement is its own transaction (the connection autocommits), and every future is
        settled once the statement holding its operation has committed: a tick is durable
        before the relay forwards it, and a batch costs a few event-loop turns of the proxy."""
        import psycopg

        outcomes: dict[int, tuple[Any, BaseException | None]] = {}
        starts: list[tuple[int, _Start]] = []
        functions: list[tuple[int, Op]] = []
        writes: dict[str, _Writes] = {}
        write_ops: list[int] = []
        reads: list[tuple[int, _GetQuota | _Usage]] = []
        for index, (op, _future) in enumerate(batch):
            if isinstance(op, _Start):
                starts.append((index, op))
            elif isinstance(op, (_Tick, _SetUpstream, _End)):
                writes.setdefault(op.session_id, _Writes()).add(op)
                write_ops.append(index)
            elif isinstance(op, (_GetQuota, _Usage)):
                reads.append((index, op))
            else:
                functions.append((index, op))
        try:
            conn = await self._ensure_conn()
            if starts:
                await self._run_starts(conn, starts, outcomes)
            for index, function in functions:
                try:
                    outcomes[index] = (await function(conn), None)
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as exc:
                    outcomes[index] = (None, LedgerError(str(exc)))
            if writes:
                await conn.execute(_WRITES_SQL, _writes_params(writes))
                for index in write_ops:
                    outcomes[index] = (None, None)
            if reads:
                await self._run_reads(conn, reads, outcomes)
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
            # what committed before the failure stands; the rest failed
            for index in range(len(batch)):
                outcomes.setdefault(index, (None, error))
        for index, (_op, future) in enumerate(batch):
            if future.done():
                continue
            result, error_ = outcomes.get(index, (None, LedgerError("not run")))
            if error_ is not None:
                future.set_exception(error_)
            else:
                future.set_result(result)

    async def _run_starts(
        self,
        conn: psycopg.AsyncConnection[Any],
        starts: list[tuple[int, _Start]],
        outcomes: dict[int, tuple[Any, BaseException | None]],
    ) -> None:
        import psycopg

        ops = [op for _i, op in starts]
        # The lease starts when the row is written: a busy queue may have held a start for
        # seconds, and a row born stale would be reaped by another instance at once.
        at = time.monotonic()
        try:
            cursor = await conn.execute(
                _STARTS_SQL,
                (
                    [op.session_id for op in ops],
                    [op.user for op in ops],
                    [op.model for op in ops],
                    [op.instance for op in ops],
                    [op.now for op in ops],
                    [op.now + max(0.0, at - op.submitted) for op in ops],
                    [op.lease for op in ops],
                    [-1 if op.max_concurrent is None else op.max_concurrent for op in ops],
                ),
            )
            rows = await cursor.fetchall()
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            if len(starts) == 1:
                outcomes[starts[0][0]] = (None, LedgerError(str(exc)))
                return
            for one in starts:  # one bad start (a duplicate id) must not refuse the others
                await self._run_starts(conn, [one], outcomes)
            return
        for n, ok, active in rows:
            outcomes[starts[int(n) - 1][0]] = (StartResult(ok=bool(ok), active=int(active)), None)

    @staticmethod
    async def _run_reads(
        conn: psycopg.AsyncConnection[Any],
        reads: list[tuple[int, _GetQuota | _Usage]],
        outcomes: dict[int, tuple[Any, BaseException | None]],
    ) -> None:
        quotas = [(i, op) for i, op in reads if isinstance(op, _GetQuota)]
        usages = [(i, op) for i, op in reads if isinstance(op, _Usage)]
        cursor = await conn.execute(
            _READS_SQL,
            (
                sorted({op.user for _i, op in quotas}),
                [op.user for _i, op in usages],
                [float("-inf") if op.since is None else op.since for _i, op in usages],
                [op.exclude or "" for _i, op in usages],
            ),
        )
        found: dict[str, float] = {}
        sums: dict[int, float] = {}
        for n, user, seconds in await cursor.fetchall():
            if int(n) == 0:
                found[user] = float(seconds)
            else:
                sums[int(n)] = float(seconds)
        for index, quota in quotas:
            outcomes[index] = (found.get(quota.user), None)
        for position, (index, _usage) in enumerate(usages, start=1):
            outcomes[index] = (sums.get(position, 0.0), None)

    def _submit(self, op: Op | _Batched) -> asyncio.Future[Any]:
        if self._queue is None or self._worker is None or self._worker.done():
            raise LedgerError("ledger is not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return future

    async def _call(self, op: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        result: T = await self._submit(op)
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
                # a ledger set up at this version is left as it is: `CREATE ... IF NOT EXISTS`
                # still needs CREATE on the schema, which a role granted only reads and writes
                # (docs/proxy.md, "PostgreSQL") does not hold
                if await self._schema_version(conn) != SCHEMA_VERSION:
                    for statement in _SCHEMA:
                        await conn.execute(statement)
                cursor = await conn.execute(
                    "SELECT prosrc FROM pg_proc WHERE proname = %s "
                    "AND pronamespace = current_schema()::regnamespace",
                    (START_SESSIONS,),
                )
                if [row[0] for row in await cursor.fetchall()] != [_START_SESSIONS_BODY]:
                    await conn.execute(_START_SESSIONS_DDL)
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

    @staticmethod
    async def _schema_version(conn: psycopg.AsyncConnection[Any]) -> int | None:
        """The version recorded in the ledger's schema table; None if there is none yet."""
        cursor = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (META,))
        row = await cursor.fetchone()
        if row is None or not row[0]:
            return None
        cursor = await conn.execute(f"SELECT version FROM {META}")
        row = await cursor.fetchone()
        return None if row is None else int(row[0])

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
                if item is not None and not item[1].done():
                    item[1].set_exception(LedgerError("ledger is closed"))
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
        start = _Start(
            session_id, user, model, instance, now, time.monotonic(), max_concurrent, lease
        )
        result: StartResult = await self._submit(start)
        return result

    async def set_upstream_session(self, session_id: str, upstream_session_id: str) -> None:
        await self._submit(_SetUpstream(session_id, upstream_session_id))

    async def record_tick(self, session_id: str, seconds: float, *, now: float) -> None:
        await self._submit(_Tick(session_id, float(seconds), now))

    async def end_session(
        self, session_id: str, reason: str, *, now: float, seconds: float | None = None
    ) -> None:
        await self._submit(_End(session_id, reason, now, float(seconds or 0)))

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
        total: float = await self._submit(_Usage(user, since, exclude))
        return total

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
        quota: float | None = await self._submit(_GetQuota(user))
        return quota

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
