"""The shared ledger: PostgreSQL through psycopg 3 (async), group-committed.

For several proxy instances behind a load balancer: they all point ``--ledger`` at one database
and keep no state of their own. One connection per proxy carries the writes: operations queued
while a batch is in flight go into the next one, and a batch costs a few statements whatever the
number of sessions in it. The per-session operations (session starts, the service's ids, ticks,
ends, quota and usage reads) run as one statement per kind over arrays (``unnest``); the rest
(lease renewal, reaping, administration) run each in a savepoint.

A batch's session starts commit first, in their own short transaction: it takes their users'
advisory locks in one global order (so the per-user concurrency limit holds across instances and
two instances never deadlock), counts those users' live sessions once, admits the starts in the
order they came and inserts the admitted ones. The locks are held for that transaction only, so
instances never wait on each other's writes; a reap skips rows another transaction holds.
Everything else of the batch then commits in one transaction, and every caller's future is
settled after the commit that holds its operation: a tick is durable before the relay forwards it.

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


#: The per-session operations: a batch runs each kind as one statement, whatever their number.
_Batched = _Tick | _Start | _SetUpstream | _End | _GetQuota | _Usage

#: An operation (a batched one, or a function run in the batch's transaction), whether a
#: function runs in its own savepoint, and its future.
_Item = tuple["Op | _Batched", bool, "asyncio.Future[Any]"]

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

# A batch's session starts: its users' advisory locks in one global order (hashtext's), so two
# instances' start transactions queue behind each other but never deadlock.
_LOCK_USERS_SQL = """
SELECT pg_advisory_xact_lock(%s, h)
FROM (SELECT DISTINCT hashtext(u) AS h FROM unnest(%s::text[]) AS u ORDER BY h) AS users
"""
_OPEN_ROWS_SQL = (
    f"SELECT user_id, extract(epoch FROM last_seen) FROM {SESSIONS} "
    "WHERE user_id = ANY(%s) AND ended_at IS NULL"
)
_INSERT_SQL = f"""
INSERT INTO {SESSIONS} (id, user_id, model, instance, started_at, last_seen)
SELECT id, user_id, model, instance, to_timestamp(started), to_timestamp(seen)
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[])
    AS v(id, user_id, model, instance, started, seen)
"""
_UPSTREAM_IDS_SQL = f"""
UPDATE {SESSIONS} AS s SET upstream_session_id = v.upstream
FROM unnest(%s::text[], %s::text[]) AS v(id, upstream)
WHERE s.id = v.id
"""
# The first end of a session wins, except over a reap's guess.
_ENDS_SQL = f"""
UPDATE {SESSIONS} AS s
SET seconds = GREATEST(s.seconds, v.seconds), ended_at = to_timestamp(v.now),
    end_reason = v.reason, last_seen = to_timestamp(v.now)
FROM unnest(%s::text[], %s::text[], %s::float8[], %s::float8[]) AS v(id, reason, now, seconds)
WHERE s.id = v.id AND (s.ended_at IS NULL OR s.end_reason = '{REAPED}')
"""
_QUOTAS_SQL = f"SELECT user_id, seconds FROM {QUOTAS} WHERE user_id = ANY(%s)"
# One sum per request, in the requests' order; a null ``since`` (no period) is -infinity.
_USAGE_SQL = f"""
SELECT v.n, (
    SELECT COALESCE(SUM(s.seconds), 0) FROM {SESSIONS} AS s
    WHERE s.user_id = v.user_id AND s.started_at >= to_timestamp(v.since) AND s.id <> v.exclude
)
FROM unnest(%s::text[], %s::float8[], %s::text[]) WITH ORDINALITY AS v(user_id, since, exclude, n)
"""


def admit(
    starts: Sequence[_Start], open_rows: Sequence[tuple[str, float]], at: float
) -> list[StartResult]:
    """Each start's outcome, in order, as if they ran one after the other: a start counts its
    user's open rows whose lease (``last_seen`` within ``lease`` of its own start time, ``at``
    seconds after its submission) still runs, plus the ones admitted before it in the batch."""
    seen: dict[str, list[float]] = {}
    for user, last_seen in open_rows:
        seen.setdefault(user, []).append(float(last_seen))
    admitted: dict[str, int] = {}
    results = []
    for start in starts:
        born = start.now + max(0.0, at - start.submitted)
        active = sum(1 for last in seen.get(start.user, ()) if last >= born - start.lease)
        active += admitted.get(start.user, 0)
        ok = start.max_concurrent is None or active < start.max_concurrent
        if ok:
            admitted[start.user] = admitted.get(start.user, 0) + 1
        results.append(StartResult(ok=ok, active=active))
    return results


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
        """One batch, whatever its size: its session starts in one short transaction (a few
        statements), then everything else in one more, each per-session kind as one statement
        (functions each in their own savepoint); every future is settled after its commit."""
        import psycopg

        outcomes: dict[int, tuple[Any, BaseException | None]] = {}
        starts = [(i, op) for i, (op, _g, _f) in enumerate(batch) if isinstance(op, _Start)]
        try:
            conn = await self._ensure_conn()
            if starts:
                # Committed ahead of the rest: a user's lock is held for a count and an insert,
                # not for a whole batch of writes (issue 14's scale-out run: instances queued
                # behind each other's batches and, taking locks in batch order, deadlocked).
                await self._run_starts(conn, starts, outcomes)
            async with conn.transaction():
                await self._run_writes(conn, batch, outcomes)
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
            # what the failed transaction held is lost; starts already committed stand
            outcomes = {i: outcomes[i] for i, _op in starts if i in outcomes}
            for index in range(len(batch)):
                outcomes.setdefault(index, (None, error))
        for index, (_op, _guarded, future) in enumerate(batch):
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
        users = sorted({op.user for op in ops})
        try:
            async with conn.transaction():
                await conn.execute(_LOCK_USERS_SQL, (LOCK_CLASS, users))
                cursor = await conn.execute(_OPEN_ROWS_SQL, (users,))
                open_rows = await cursor.fetchall()
                results = admit(ops, open_rows, time.monotonic())
                admitted = [(op, r) for op, r in zip(ops, results, strict=True) if r.ok]
                if admitted:
                    at = time.monotonic()
                    await conn.execute(
                        _INSERT_SQL,
                        (
                            [op.session_id for op, _r in admitted],
                            [op.user for op, _r in admitted],
                            [op.model for op, _r in admitted],
                            [op.instance for op, _r in admitted],
                            [op.now for op, _r in admitted],
                            [op.now + max(0.0, at - op.submitted) for op, _r in admitted],
                        ),
                    )
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            if len(starts) == 1:
                outcomes[starts[0][0]] = (None, LedgerError(str(exc)))
                return
            for one in starts:  # one bad start (a duplicate id) must not refuse the others
                await self._run_starts(conn, [one], outcomes)
            return
        for (index, _op), result in zip(starts, results, strict=True):
            outcomes[index] = (result, None)

    async def _run_writes(
        self,
        conn: psycopg.AsyncConnection[Any],
        batch: list[_Item],
        outcomes: dict[int, tuple[Any, BaseException | None]],
    ) -> None:
        import psycopg

        ticks: list[_Tick] = []
        upstream_ids: dict[str, str] = {}
        ends: dict[str, _End] = {}
        quotas: list[tuple[int, _GetQuota]] = []
        usages: list[tuple[int, _Usage]] = []
        for index, (op, guarded, _future) in enumerate(batch):
            if isinstance(op, _Start):
                continue
            if isinstance(op, _Tick):
                ticks.append(op)
            elif isinstance(op, _SetUpstream):
                upstream_ids[op.session_id] = op.upstream_session_id
            elif isinstance(op, _End):
                ends.setdefault(op.session_id, op)  # the first end wins
            elif isinstance(op, _GetQuota):
                quotas.append((index, op))
                continue
            elif isinstance(op, _Usage):
                usages.append((index, op))
                continue
            elif not guarded:
                outcomes[index] = (await op(conn), None)
                continue
            else:
                try:
                    async with conn.transaction():
                        result = await op(conn)
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as exc:
                    outcomes[index] = (None, LedgerError(str(exc)))
                else:
                    outcomes[index] = (result, None)
                continue
            outcomes[index] = (None, None)
        if ticks:
            await conn.execute(
                _TICKS_SQL,
                (
                    [tick.session_id for tick in ticks],
                    [tick.seconds for tick in ticks],
                    [tick.now for tick in ticks],
                ),
            )
        if upstream_ids:
            await conn.execute(_UPSTREAM_IDS_SQL, (list(upstream_ids), list(upstream_ids.values())))
        if ends:
            await conn.execute(
                _ENDS_SQL,
                (
                    list(ends),
                    [end.reason for end in ends.values()],
                    [end.now for end in ends.values()],
                    [end.seconds for end in ends.values()],
                ),
            )
        if quotas:  # reads after the writes: they see this batch's seconds
            cursor = await conn.execute(_QUOTAS_SQL, (sorted({op.user for _i, op in quotas}),))
            found = {user: float(seconds) for user, seconds in await cursor.fetchall()}
            for index, op in quotas:
                outcomes[index] = (found.get(op.user), None)
        if usages:
            cursor = await conn.execute(
                _USAGE_SQL,
                (
                    [op.user for _i, op in usages],
                    [float("-inf") if op.since is None else op.since for _i, op in usages],
                    [op.exclude or "" for _i, op in usages],
                ),
            )
            sums = {int(n): float(total) for n, total in await cursor.fetchall()}
            for position, (index, _op) in enumerate(usages, start=1):
                outcomes[index] = (sums.get(position, 0.0), None)

    def _submit(self, op: Op | _Batched, guarded: bool = False) -> asyncio.Future[Any]:
        if self._queue is None or self._worker is None or self._worker.done():
            raise LedgerError("ledger is not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, guarded, future))
        return future

    async def _call(
        self, op: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]], *, guarded: bool = True
    ) -> T:
        result: T = await self._submit(op, guarded)
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
