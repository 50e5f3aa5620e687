"""The usage ledger's contract, on both backends: SQLite (a file) and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from proxy_kit import fresh_postgres_dsn

from decart_widget.proxy._ledger import (
    Ledger,
    LedgerError,
    StartResult,
    open_ledger,
    period_start,
)
from decart_widget.proxy._ledger_postgres import PostgresLedger
from decart_widget.proxy._ledger_sqlite import SQLiteLedger

LEASE = 30.0

LedgerFactory = Callable[[], Ledger]


@pytest.fixture
def postgres_dsn() -> str:
    return fresh_postgres_dsn()


@pytest.fixture(params=["sqlite", "postgres"])
def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerFactory:
    """A factory of ledgers that share one store (a file, or a database)."""
    if request.param == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        return lambda: SQLiteLedger(path)
    dsn = request.getfixturevalue("postgres_dsn")
    return lambda: PostgresLedger(dsn)


@pytest_asyncio.fixture
async def ledger(make_ledger: LedgerFactory) -> AsyncIterator[Ledger]:
    async with make_ledger() as opened:
        yield opened


async def start(ledger: Ledger, sid: str, user: str = "alice", **kwargs: float) -> bool:
    now = kwargs.get("now", time.time())
    result = await ledger.start_session(
        sid, user, "lucy-2.1", "test", now=now, max_concurrent=None, lease=LEASE
    )
    return result.ok


async def test_ticks_are_cumulative_counted_and_final(ledger: Ledger) -> None:
    await start(ledger, "s1")
    await ledger.set_upstream_session("s1", "emu_1")
    for seconds in (1, 2, 3, 2):  # a late, lower tick never lowers the total
        await ledger.record_tick("s1", seconds, now=time.time())
    [row] = await ledger.sessions()
    assert (row.id, row.user, row.model, row.upstream_session_id) == ("s1", "alice", "lucy-2.1",
                                                                       "emu_1")  # fmt: skip
    assert row.seconds == 3 and row.ticks == 4 and row.open
    await ledger.end_session("s1", "client_closed", now=time.time(), seconds=4)
    await ledger.end_session("s1", "shutdown", now=time.time(), seconds=99)  # first end wins
    [row] = await ledger.sessions()
    assert row.end_reason == "client_closed" and row.seconds == 4 and not row.open


async def test_concurrent_ticks_are_all_committed(ledger: Ledger) -> None:
    for i in range(50):
        await start(ledger, f"s{i}")
    await asyncio.gather(
        *(ledger.record_tick(f"s{i}", t, now=time.time()) for t in range(1, 11) for i in range(50))
    )
    rows = await ledger.sessions()
    assert len(rows) == 50
    assert all(row.seconds == 10 and row.ticks == 10 for row in rows)


async def test_usage_sums_a_users_sessions_in_a_period(ledger: Ledger) -> None:
    day = 86_400.0
    now = time.time()
    await start(ledger, "old", now=now - 40 * day)
    await start(ledger, "new", now=now)
    await start(ledger, "other", user="bob", now=now)
    await ledger.record_tick("old", 7, now=now)
    await ledger.record_tick("new", 5, now=now)
    await ledger.record_tick("other", 100, now=now)
    assert await ledger.usage("alice") == 12
    assert await ledger.usage("alice", since=now - day) == 5
    assert await ledger.usage("alice", exclude="new") == 7
    assert await ledger.usage("nobody") == 0


async def test_quotas_are_stored_per_user(ledger: Ledger) -> None:
    assert await ledger.get_quota("alice") is None
    await ledger.set_quota("alice", 60)
    await ledger.set_quota("alice", 90)
    assert await ledger.get_quota("alice") == 90
    await ledger.set_quota("alice", None)
    assert await ledger.get_quota("alice") is None


async def test_the_session_limit_counts_live_leases_only(ledger: Ledger) -> None:
    now = time.time()

    async def try_start(sid: str, at: float) -> bool:
        result = await ledger.start_session(
            sid, "alice", "m", "test", now=at, max_concurrent=2, lease=LEASE
        )
        return result.ok

    assert await try_start("a", now - 2 * LEASE)  # its proxy died long ago
    assert await try_start("b", now)
    assert await try_start("c", now)
    assert not await try_start("d", now)
    await ledger.touch(["a"], now=now)  # ...or not: it renewed its lease
    await ledger.end_session("b", "client_closed", now=now)
    assert not await try_start("e", now)
    await ledger.end_session("c", "client_closed", now=now)
    assert await try_start("f", now)
    assert {row.id for row in await ledger.sessions("alice")} == {"a", "b", "c", "f"}


async def test_reap_ends_sessions_whose_proxy_died(ledger: Ledger) -> None:
    now = time.time()
    await start(ledger, "dead", now=now - 100)
    await ledger.record_tick("dead", 3, now=now - 90)
    await start(ledger, "alive", now=now)
    assert await ledger.reap(now=now, lease=LEASE) == 1
    rows = {row.id: row for row in await ledger.sessions()}
    assert rows["dead"].end_reason == "lost" and rows["dead"].seconds == 3
    assert rows["dead"].ended_at == pytest.approx(now - 90, abs=0.01)
    assert rows["alive"].open


async def test_the_limit_holds_across_ledgers_sharing_a_store(make_ledger: LedgerFactory) -> None:
    """Several proxies (one ledger each) racing to open a user's last allowed session."""
    ledgers = [make_ledger() for _ in range(4)]
    for each in ledgers:
        await each.open()
    try:
        results = await asyncio.gather(
            *(
                each.start_session(
                    f"s{i}", "alice", "m", f"proxy{i}", now=time.time(), max_concurrent=1,
                    lease=LEASE,
                )
                for i, each in enumerate(ledgers)
            )
        )  # fmt: skip
        assert sorted(result.ok for result in results) == [False, False, False, True]
    finally:
        for each in ledgers:
            await each.close()


async def test_data_survives_a_reopen_and_a_closed_ledger_refuses(
    make_ledger: LedgerFactory,
) -> None:
    first = make_ledger()
    await first.open()
    await start(first, "s1")
    await first.record_tick("s1", 42, now=time.time())
    await first.close()
    with pytest.raises(LedgerError):
        await first.record_tick("s1", 43, now=time.time())
    async with make_ledger() as second:
        [row] = await second.sessions()
        assert row.seconds == 42
        await second.ping()


async def test_an_unreachable_postgres_fails_with_ledger_error() -> None:
    from proxy_kit import free_port

    ledger = PostgresLedger(
        f"postgresql://nobody:hunter2@127.0.0.1:{free_port()}/x", connect_timeout=2
    )
    with pytest.raises(LedgerError, match="cannot connect"):
        await ledger.open()
    assert "hunter2" not in repr(ledger)


async def test_a_role_granted_reads_and_writes_only_opens_a_ledger_set_up_before(
    postgres_dsn: str,
) -> None:
    """docs/proxy.md: the role needs CREATE on the schema for the first start only."""
    import psycopg

    def as_role(role: str) -> str:
        return postgres_dsn.replace("//decart@", f"//{role}@", 1)

    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        for statement in (
            "CREATE ROLE ledger_owner LOGIN",
            "CREATE ROLE ledger_app LOGIN",
            "CREATE SCHEMA ledger AUTHORIZATION ledger_owner",
            "GRANT USAGE ON SCHEMA ledger TO ledger_app",
            "ALTER ROLE ledger_owner SET search_path = ledger",
            "ALTER ROLE ledger_app SET search_path = ledger",
        ):
            admin.execute(statement)
    # before the owner's first start, the app's role cannot create the tables: a clear error
    with pytest.raises(LedgerError, match="permission denied for schema ledger"):
        await PostgresLedger(as_role("ledger_app")).open()
    async with PostgresLedger(as_role("ledger_owner")):
        pass
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ledger TO ledger_app"
        )
    async with PostgresLedger(as_role("ledger_app")) as app:
        assert await start(app, "s1")
        await app.record_tick("s1", 1.0, now=time.time())
    async with PostgresLedger(as_role("ledger_owner")) as owner:
        [row] = await owner.sessions()
        assert row.id == "s1" and row.seconds == 1.0


def test_open_ledger_picks_the_backend() -> None:
    assert isinstance(open_ledger(None), SQLiteLedger)
    assert open_ledger("sqlite:///var/x.db").path == "var/x.db"  # type: ignore[attr-defined]
    assert open_ledger("sqlite:////var/x.db").path == "/var/x.db"  # type: ignore[attr-defined]
    assert isinstance(open_ledger("postgresql://u@h/db"), PostgresLedger)
    assert isinstance(open_ledger("postgres://u@h/db"), PostgresLedger)


def test_quota_periods_start_at_utc_calendar_boundaries() -> None:
    moment = 1_795_302_945.0  # 2026-11-21T23:15:45Z
    assert period_start("total", moment) is None
    assert period_start("day", moment) == 1_795_219_200.0  # 2026-11-21T00:00:00Z
    assert period_start("month", moment) == 1_793_491_200.0  # 2026-11-01T00:00:00Z
    with pytest.raises(ValueError):
        period_start("week", moment)


async def test_a_recent_commit_answers_the_health_ping_of_a_busy_postgres_ledger(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/healthz's ping must not wait behind a busy instance's writes (a balancer's health check
    would time out under load), yet a ledger whose writes are stuck must not look healthy."""
    import psycopg

    from decart_widget.proxy import _ledger_postgres as ledger_postgres

    async with PostgresLedger(postgres_dsn) as ledger:
        await start(ledger, "s0")  # a commit
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as blocker:
            # another session holds alice's advisory lock: the worker's next batch waits for it
            await blocker.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                (ledger_postgres.LOCK_CLASS, "alice"),
            )
            stuck = asyncio.create_task(start(ledger, "s1"))

            async def worker_waits() -> bool:
                cursor = await blocker.execute("SELECT COUNT(*) FROM pg_locks WHERE NOT granted")
                row = await cursor.fetchone()
                return row is not None and row[0] > 0

            deadline = time.monotonic() + 10
            while not await worker_waits():
                assert time.monotonic() < deadline, "the ledger's batch never waited on the lock"
                await asyncio.sleep(0.02)
            monkeypatch.setattr(ledger_postgres, "RECENT_COMMIT", 3600.0)
            await asyncio.wait_for(ledger.ping(), 2.0)  # answered by the recent commit
            monkeypatch.setattr(ledger_postgres, "RECENT_COMMIT", 0.0)
            with pytest.raises(asyncio.TimeoutError):  # queued behind the stuck batch
                await asyncio.wait_for(asyncio.shield(ledger.ping()), 0.5)
            await blocker.rollback()
        assert await stuck
        await ledger.ping()


async def test_a_session_reaped_while_its_proxy_still_serves_it_is_reopened(
    ledger: Ledger,
) -> None:
    """A reap is a guess from a late lease renewal: the serving proxy's next renewal reopens
    the row (it counts against the limit again) and its own end replaces "lost"."""
    now = time.time()
    await start(ledger, "slow", now=now - 100)  # its proxy was stalled for a while
    await ledger.record_tick("slow", 5, now=now - 100)
    await start(ledger, "dead", now=now - 100)
    assert await ledger.reap(now=now, lease=LEASE) == 2
    await ledger.touch(["slow"], now=now)
    rows = {row.id: row for row in await ledger.sessions()}
    assert rows["slow"].open and rows["slow"].end_reason is None and rows["slow"].seconds == 5
    assert rows["dead"].end_reason == "lost"
    blocked = await ledger.start_session(
        "next", "alice", "m", "test", now=now, max_concurrent=1, lease=LEASE
    )
    assert (blocked.ok, blocked.active) == (False, 1)
    await ledger.reap(now=now + 2 * LEASE, lease=LEASE)  # reaped again, then ended for real
    await ledger.end_session("slow", "client_closed", now=now + 2 * LEASE, seconds=7)
    await ledger.end_session("slow", "shutdown", now=now + 2 * LEASE)  # the first real end wins
    rows = {row.id: row for row in await ledger.sessions()}
    assert (rows["slow"].end_reason, rows["slow"].seconds) == ("client_closed", 7)


async def test_two_instances_starting_sessions_of_the_same_users_never_deadlock(
    postgres_dsn: str,
) -> None:
    """Each instance's batch starts many users' sessions in one transaction; two batches that
    took the users' locks in opposite orders deadlocked (the batch failed: its sessions were
    refused, its ticks ended their sessions)."""
    users = [f"user{i}" for i in range(40)]
    async with PostgresLedger(postgres_dsn) as first, PostgresLedger(postgres_dsn) as second:
        for round_ in range(3):
            a, b = await asyncio.gather(
                _starts(first, users, f"a{round_}"), _starts(second, users[::-1], f"b{round_}")
            )
            assert all(a) and all(b)
        assert len(await first.sessions()) == 3 * 2 * len(users)


async def _starts(ledger: Ledger, users: list[str], prefix: str) -> list[bool]:
    """Start one session per user, all at once (so in one batch), in ``users``' order."""
    results = await asyncio.gather(
        *(
            ledger.start_session(
                f"{prefix}-{user}", user, "m", prefix, now=time.time(), max_concurrent=None,
                lease=LEASE,
            )
            for user in users
        )
    )  # fmt: skip
    return [result.ok for result in results]


async def test_a_batch_applies_the_user_limit_in_the_order_the_starts_came(
    make_ledger: LedgerFactory,
) -> None:
    """Starts that share one batch (one turn of the event loop) are counted one after the
    other, as if each had its own transaction, on both instances sharing the store."""
    async with make_ledger() as first, make_ledger() as second:

        async def starts(ledger: Ledger, prefix: str) -> list[tuple[bool, int]]:
            results = await asyncio.gather(
                *(
                    ledger.start_session(
                        f"{prefix}{i}", "alice", "m", prefix, now=time.time(), max_concurrent=5,
                        lease=LEASE,
                    )
                    for i in range(6)
                )
            )  # fmt: skip
            return [(result.ok, result.active) for result in results]

        assert await starts(first, "a") == [(True, n) for n in range(5)] + [(False, 5)]
        assert await starts(second, "b") == [(False, 5)] * 6
        await first.end_session("a0", "client_closed", now=time.time())
        assert await starts(second, "c") == [(True, 4)] + [(False, 5)] * 5


async def test_one_bad_start_in_a_batch_refuses_only_itself(ledger: Ledger) -> None:
    assert await start(ledger, "taken")
    outcomes = await asyncio.gather(
        *(start(ledger, sid, user=sid) for sid in ("first", "taken", "last")),
        return_exceptions=True,
    )
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], LedgerError)
    assert {row.id for row in await ledger.sessions()} == {"taken", "first", "last"}


def record_statements(ledger: PostgresLedger) -> list[str]:
    """The statements ``ledger`` runs from now on, appended to the list returned."""
    conn = ledger._conn
    assert conn is not None
    statements: list[str] = []
    real_execute = conn.execute

    async def counting_execute(query: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(str(query))
        return await real_execute(query, *args, **kwargs)

    conn.execute = counting_execute  # type: ignore[method-assign]
    return statements


async def test_a_batch_of_many_sessions_costs_a_few_statements(postgres_dsn: str) -> None:
    """The ledger's work per batch does not grow with the sessions in it: 200 sessions' starts,
    service ids, ticks, quota and usage reads and ends are a handful of statements (one per
    kind), not one (or five) per session: issue 14's 5,000-session run."""
    async with PostgresLedger(postgres_dsn) as ledger:
        await ledger.set_quota("user3", 42)
        statements = record_statements(ledger)
        ids = [f"s{i}" for i in range(200)]
        users = [f"user{i % 100}" for i in range(200)]

        async def each(step: Callable[[str, str], Awaitable[object]]) -> list[object]:
            before = len(statements)
            results = await asyncio.gather(
                *(step(sid, user) for sid, user in zip(ids, users, strict=True))
            )
            assert len(statements) - before <= 2, statements[before:]
            return list(results)

        started = await each(
            lambda sid, user: ledger.start_session(
                sid, user, "m", "test", now=time.time(), max_concurrent=2, lease=LEASE
            )
        )
        assert all(isinstance(result, StartResult) and result.ok for result in started)
        await each(lambda sid, user: ledger.set_upstream_session(sid, f"up_{sid}"))
        for second in (1, 2, 3):
            await each(lambda sid, user, s=second: ledger.record_tick(sid, s, now=time.time()))
        quotas = await each(lambda sid, user: ledger.get_quota(user))
        assert quotas.count(42) == 2 and quotas.count(None) == 198
        used = await each(lambda sid, user: ledger.usage(user, exclude=sid))
        assert used == [3.0] * 200
        await each(lambda sid, user: ledger.end_session(sid, "client_closed", now=time.time()))
        rows = await ledger.sessions()
        assert len(rows) == 200
        assert all(
            row.seconds == 3 and row.ticks == 3 and row.upstream_session_id == f"up_{row.id}"
            and row.end_reason == "client_closed"
            for row in rows
        )  # fmt: skip


async def test_a_sessions_writes_sharing_a_batch_all_count(ledger: Ledger) -> None:
    """A tick, the service's id and ends of one session submitted together (one batch): the
    tick counts, the id is kept, the first end wins."""
    await start(ledger, "s1")
    now = time.time()
    await asyncio.gather(
        ledger.record_tick("s1", 5, now=now),
        ledger.set_upstream_session("s1", "up_1"),
        ledger.end_session("s1", "client_closed", now=now, seconds=4),
        ledger.end_session("s1", "shutdown", now=now, seconds=9),
    )
    [row] = await ledger.sessions()
    assert (row.seconds, row.ticks, row.upstream_session_id) == (5, 1, "up_1")
    assert (row.end_reason, row.open) == ("client_closed", False)


async def test_thousands_of_ticks_queued_at_once_are_one_statement(postgres_dsn: str) -> None:
    """A busy instance's backlog of ticks (its event loop starved for a while) drains in one
    batch, not in slices of a fixed size that fall behind the ticks still coming."""
    async with PostgresLedger(postgres_dsn) as ledger:
        await asyncio.gather(*(start(ledger, f"s{i}", user=f"u{i}") for i in range(10)))
        statements = record_statements(ledger)
        await asyncio.gather(
            *(
                ledger.record_tick(f"s{i}", t, now=time.time())
                for t in range(1, 501)
                for i in range(10)
            )
        )
        assert len(statements) == 1
        rows = await ledger.sessions()
        assert all(row.seconds == 500 and row.ticks == 500 for row in rows)
