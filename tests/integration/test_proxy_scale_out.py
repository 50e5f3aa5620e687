"""Scale-out on real parts: three ``decart-widget proxy`` processes behind HAProxy, one PostgreSQL
ledger, ~60 control sessions through the balancer, and one instance killed with SIGKILL.

Checked: sessions spread over the instances; the per-user session limit and a quota hold across
instances; each instance's ``/metrics`` add up to what the clients and the ledger saw; the killed
instance's clients get a close they act on (no close frame: 1006) and reconnect through the
balancer to the others; its sessions are reaped as ``lost`` once their lease runs out; and no
tick is lost or counted twice: every connection's ledger row holds exactly the seconds its client
saw, except a killed connection's row, which may hold the one tick it committed but could not
forward (committed before forwarding: never the reverse), and never more than the service sent.

`bench/scale_out.py` runs the same with 5,000 sessions. Skips without Debian's HAProxy or
PostgreSQL server binaries (``scripts/setup.sh`` installs both).
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from proxy_kit import free_port, fresh_postgres_dsn
from scale_kit import (
    RETRYABLE,
    Balancer,
    ConnectionRecord,
    LoadClient,
    ProxyProcess,
    TickingUpstream,
    haproxy_binary,
    wait_until,
)

from decart_widget.protocol._constants import CLOSE_PROXY_CONCURRENCY
from decart_widget.proxy._ledger import LedgerSession
from decart_widget.proxy._ledger_postgres import PostgresLedger
from decart_widget.proxy.codes import QUOTA_EXHAUSTED

pytestmark = pytest.mark.timeout(150)

INSTANCES = 3
TICK = 0.25  # wall seconds per generation second
TICKS = 24  # a session lasts 24 generation seconds (6 s), then the service ends it
LEASE = 2.0
SESSION_LIMIT = 5
QUOTA = 36.0  # the quota user's seconds: one full session, then half of another
USERS = 30
SESSIONS_PER_USER = 2


@dataclass
class Cluster:
    dsn: str
    upstream: TickingUpstream
    instances: list[ProxyProcess]
    balancer: Balancer
    http: aiohttp.ClientSession

    async def rows(self) -> list[LedgerSession]:
        async with PostgresLedger(self.dsn) as ledger:
            return await ledger.sessions(limit=100_000)

    def instance(self, name: str) -> ProxyProcess:
        return next(p for p in self.instances if p.name == name)


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="decart-scale-") as path:
        yield Path(path)


@pytest_asyncio.fixture
async def cluster(workdir: Path) -> AsyncIterator[Cluster]:
    if haproxy_binary() is None:
        pytest.skip("HAProxy not found: apt-get install haproxy (scripts/setup.sh does)")
    dsn = fresh_postgres_dsn()
    async with PostgresLedger(dsn) as ledger:  # the tables, before three instances race for them
        await ledger.set_quota("metered", QUOTA)
    upstream = TickingUpstream(tick=TICK, ticks=TICKS)
    instances: list[ProxyProcess] = []
    balancer: Balancer | None = None
    http = aiohttp.ClientSession()
    try:
        flags = [
            "--lease-seconds", str(LEASE), "--max-sessions-per-user", str(SESSION_LIMIT),
            "--max-connections-per-address", "0", "--prompt-rate", "0", "--heartbeat", "0",
            "--drain-seconds", "0", "--log-level", "warning",
        ]  # fmt: skip
        for index in range(INSTANCES):
            instances.append(
                ProxyProcess(
                    f"proxy{index + 1}",
                    free_port(),
                    upstream_url=upstream.realtime_url,
                    ledger=dsn,
                    workdir=workdir,
                    flags=flags,
                )
            )
        for instance in instances:
            await wait_until(lambda i=instance: i.healthy(http), 60, f"{instance.name} healthy")
        balancer = Balancer(free_port(), instances, workdir)
        await wait_until(lambda: balancer.serving(http), 30, "the balancer serving")
        yield Cluster(dsn, upstream, instances, balancer, http)
    finally:
        if balancer is not None:
            balancer.stop()
        for instance in instances:
            instance.stop()
        upstream.stop()
        await http.close()


async def run_clients(clients: list[LoadClient], http: aiohttp.ClientSession) -> list[asyncio.Task]:
    return [asyncio.create_task(client.run(http)) for client in clients]


async def test_three_instances_one_ledger_and_a_sigkill(cluster: Cluster) -> None:
    http = cluster.http
    url = cluster.balancer.url

    # ---- the per-user limit holds across instances ---------------------------------------------
    capped = [LoadClient(url, "capped", prompt_every=1.0, max_connections=1) for _ in range(8)]
    tasks = await run_clients(capped, http)
    await wait_until(
        lambda: all(c.current is not None and (c.current.admitted or c.current.close_code)
                    for c in capped),
        30, "the capped user's sessions admitted or refused",
    )  # fmt: skip
    admitted = [c for c in capped if c.current is not None and c.current.admitted]
    refused = [c for c in capped if c not in admitted]
    assert len(admitted) == SESSION_LIMIT
    assert [c.records[0].close_code for c in refused] == [CLOSE_PROXY_CONCURRENCY] * 3
    capped_rows = [r for r in await cluster.rows() if r.user == "capped"]
    assert len({r.instance for r in capped_rows}) >= 2  # on several instances, counted as one
    await asyncio.gather(*(c.leave() for c in admitted))
    await asyncio.gather(*tasks)

    # ---- a quota holds across instances: one session, then another on another instance --------
    first = LoadClient(url, "metered", prompt_every=1.0, max_connections=1)
    await first.run(http)  # the service ends it after TICKS seconds
    assert first.records[0].ended == TICKS
    second = LoadClient(url, "metered", prompt_every=1.0, max_connections=1)
    await second.run(http)
    cut = second.records[0]
    assert (cut.close_code, cut.seconds) == (QUOTA_EXHAUSTED, QUOTA - TICKS)
    third = LoadClient(url, "metered", prompt_every=1.0, max_connections=1)
    await third.run(http)
    assert (third.records[0].close_code, third.records[0].admitted) == (QUOTA_EXHAUSTED, False)
    metered = [r for r in await cluster.rows() if r.user == "metered"]
    assert sum(r.seconds for r in metered) == QUOTA
    assert len({r.instance for r in metered}) == 2

    # ---- load: USERS x SESSIONS_PER_USER sessions through the balancer -------------------------
    clients = [
        LoadClient(url, f"user{u}", prompt_every=0.5)
        for u in range(USERS)
        for _ in range(SESSIONS_PER_USER)
    ]
    tasks = await run_clients(clients, http)
    await wait_until(
        lambda: all(c.current is not None and c.current.admitted for c in clients),
        30, "every load session admitted",
    )  # fmt: skip
    await wait_until(
        lambda: all(c.current is not None and c.current.seconds >= 1 for c in clients),
        30, "every load session ticking",
    )  # fmt: skip

    # sessions spread, and the instances' gauges add up to the clients' connections
    async def ledger_knows_every_session() -> bool:  # the service's id is stored in the background
        known = {r.upstream_session_id for r in await cluster.rows()}
        return all(c.current is not None and c.current.upstream_id in known for c in clients)

    await wait_until(ledger_knows_every_session, 10, "the service's session ids in the ledger")
    rows = await cluster.rows()
    by_upstream = {r.upstream_session_id: r for r in rows}
    home = [by_upstream[_live(c).upstream_id].instance for c in clients]
    placed = collections.Counter(home)
    assert sorted(placed) == [p.name for p in cluster.instances]
    assert min(placed.values()) >= len(clients) // INSTANCES // 2, placed

    gauges: dict[str, float] = {}

    async def gauges_match() -> bool:  # the capped user's ends may still be in flight
        for p in cluster.instances:
            gauges[p.name] = (await p.metrics(http))["decart_proxy_sessions_active"]
        return gauges == placed

    try:
        await wait_until(gauges_match, 10, "each instance's sessions_active = its clients")
    except AssertionError:
        raise AssertionError(f"gauges {gauges}, clients {placed}, {_summary(clients)}") from None
    metrics = {p.name: await p.metrics(http) for p in cluster.instances}
    refusals = collections.Counter[str]()
    for values in metrics.values():
        for key, value in values.items():
            if key.startswith("decart_proxy_refusals_total{"):
                refusals[key.split('"')[1]] += int(value)
    assert +refusals == {"user_session_limit": 3, "quota_exhausted": 1}, (
        refusals,
        _summary(clients),
    )
    admitted_so_far = SESSION_LIMIT + 2 + len(clients)
    assert sum(m["decart_proxy_sessions_total"] for m in metrics.values()) == admitted_so_far

    # ---- SIGKILL one instance mid-run ----------------------------------------------------------
    victim = cluster.instance(max(placed, key=lambda name: placed[name]))
    on_victim = [c for c, name in zip(clients, home, strict=True) if name == victim.name]
    victim.kill()
    await wait_until(
        lambda: all(len(c.records) >= 2 and c.records[-1].admitted for c in on_victim),
        30, "the killed instance's clients reconnected",
    )  # fmt: skip
    for client in on_victim:
        [lost] = [r for r in client.records if r.admitted and r.closed_at is not None]
        assert lost.close_code in RETRYABLE and lost.ended is None, lost
    # the dead instance's rows are still open until their lease runs out, then reaped as "lost"
    await wait_until(
        lambda: _all_reaped(cluster, victim.name), 10 * LEASE, "the dead instance's sessions reaped"
    )

    # ---- every session runs to its end -------------------------------------------------------
    await asyncio.wait_for(asyncio.gather(*tasks), TICKS * TICK + 30)

    async def all_ended() -> bool:  # a client may read the close before the end is committed
        return not any(r.open for r in await cluster.rows())

    await wait_until(all_ended, 10, "every session's end in the ledger")
    rows = await cluster.rows()
    by_upstream = {r.upstream_session_id: r for r in rows}
    sent = await cluster.upstream.sent(http)
    for client in clients:
        assert client.records[-1].ended == TICKS, client.records
        for record in client.records:
            if not record.admitted:  # an attempt the balancer or an instance refused
                continue
            row = by_upstream[record.upstream_id]
            assert row.user == client.user
            if row.instance == victim.name:
                _check_lost(row, record, sent[record.upstream_id]["seconds"])
            else:
                assert row.seconds == record.seconds == record.ended == TICKS, (row, record)
                assert row.end_reason == "generation_ended_timeout"
    # one row per admitted connection: nothing counted twice, nothing missing
    admitted_records = [r for c in clients for r in c.records if r.admitted]
    load_rows = [r for r in rows if r.user.startswith("user")]
    assert len(load_rows) == len(admitted_records)
    unseen = sum(by_upstream[r.upstream_id].seconds - r.seconds for r in admitted_records)
    assert sum(r.seconds for r in load_rows) == sum(r.seconds for r in admitted_records) + unseen
    assert 0 <= unseen <= len(on_victim)

    # the survivors' /metrics add up to their ledger rows and to what the service received
    for instance in cluster.instances:
        if instance is victim:
            continue
        values = await instance.metrics(http)
        mine = [r for r in rows if r.instance == instance.name]
        assert values["decart_proxy_sessions_total"] == len(mine)
        assert values["decart_proxy_sessions_active"] == 0
        assert values["decart_proxy_generation_seconds_total"] == sum(r.seconds for r in mine)
        # every prompt the service received, and none the clients did not send (a prompt sent
        # as the session ends is counted by the proxy, not forwarded to a closed upstream)
        received = sum(sent[r.upstream_session_id]["prompts"] for r in mine)
        ids = {r.upstream_session_id for r in mine}
        everyone = [*capped, first, second, third, *clients]
        sent_by_clients = sum(
            r.prompts for c in everyone for r in c.records if r.upstream_id in ids
        )
        assert received <= values["decart_proxy_prompts_total"] <= sent_by_clients


def _live(client: LoadClient) -> ConnectionRecord:
    assert client.current is not None
    return client.current


def _summary(clients: list[LoadClient]) -> str:
    return repr([c.records for c in clients if len(c.records) > 1 or not c.records[0].admitted])


async def _all_reaped(cluster: Cluster, instance: str) -> bool:
    rows = [r for r in await cluster.rows() if r.instance == instance]
    return bool(rows) and all(not r.open for r in rows)


def _check_lost(row: LedgerSession, record: ConnectionRecord, sent: float) -> None:
    """A connection of the killed instance: reaped, and at most the one tick the instance had
    committed but not yet forwarded more than its client saw; never more than was sent."""
    assert row.end_reason == "lost", row
    assert record.seconds <= row.seconds <= record.seconds + 1, (row, record)
    assert row.seconds <= sent


async def test_an_instance_queues_a_burst_of_connections_before_accepting_them(
    workdir: Path,
) -> None:
    """The listening socket's backlog holds a balancer's burst of new sessions while the event
    loop is busy: aiohttp's default (128) overflowed in the 5,000-session run, and a dropped
    connection waits for the client's SYN retry."""
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) not found")
    port = free_port()
    instance = ProxyProcess(
        "burst", port, upstream_url="ws://127.0.0.1:9", ledger=str(workdir / "ledger.sqlite3"),
        workdir=workdir,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            await wait_until(lambda: instance.healthy(http), 60, "the instance healthy")
        process = await asyncio.create_subprocess_exec(
            ss, "-ltnH", f"sport = :{port}", stdout=asyncio.subprocess.PIPE
        )
        listing = (await process.communicate())[0].decode().split()
        backlog = int(listing[2])  # State Recv-Q Send-Q: for a listener, Send-Q is the backlog
        assert backlog >= min(1024, somaxconn())
    finally:
        instance.stop()


def somaxconn() -> int:
    return int(Path("/proc/sys/net/core/somaxconn").read_text())
