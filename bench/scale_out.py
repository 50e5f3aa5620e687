"""Scale-out of the signaling proxy on real parts, at issue 14's size: 5,000 control sessions.

    python bench/scale_out.py                        # 5000 sessions, 3 instances, one SIGKILL
    python bench/scale_out.py --sessions 1000 --ticks 60 --kill-after 20

Starts a throwaway PostgreSQL server (the ledger), the ticking control-only upstream
(``tests/integration/ticking_upstream.py``: ``session_id``, a ``prompt_ack`` per prompt, a
``generation_tick`` every ``--tick`` s, the end after ``--ticks``), ``--instances`` ``decart-widget
proxy`` processes sharing the ledger, and HAProxy in front of them (the configuration of
docs/proxy.md's deployment section, `scale_kit.HAPROXY_CONFIG`). This process is the load
generator: ``--sessions`` clients (two per user) open sessions through the balancer at
``--ramp`` a second, each prompting every ``--prompt-every`` s, and reconnecting after a lost
connection. Alongside, a user opens 8 sessions against ``--max-sessions-per-user`` 5, and a user
with a quota of 1.5 sessions runs one session and then a second.

``--kill-after`` s after the last session opened, the instance serving the most sessions is
killed with SIGKILL. Printed: how the sessions spread (each instance's ``/metrics`` gauge against
the ledger's open rows), the CPU and memory of every process over a steady window, the prompt
round trip through the balancer (p50/p99), how long the killed instance's clients took to be back
(all reconnected through the balancer) and its sessions to be reaped, the per-user limit and the
quota outcomes, and the accounting once every session ended: ledger rows against admitted
connections, seconds in the ledger against seconds the clients saw and the service sent, the
survivors' ``/metrics`` against the ledger. Not part of the test run; never fails on a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "tests" / "integration"
for path in (ROOT, KIT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _common import load_average  # noqa: E402
from proxy_kit import PostgresCluster, free_port, postgres_bin  # noqa: E402
from scale_kit import (  # noqa: E402
    Balancer,
    LoadClient,
    ProxyProcess,
    TickingUpstream,
    haproxy_binary,
    parse_metrics,
    wait_until,
)

from decart_widget.proxy import LedgerSession  # noqa: E402
from decart_widget.proxy._ledger import TABLE_PREFIX  # noqa: E402
from decart_widget.proxy._ledger_postgres import PostgresLedger  # noqa: E402

SESSION_LIMIT = 5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def postgres_pids(cluster: PostgresCluster) -> list[int]:
    """The postmaster and its children (backends, writer, WAL...)."""
    try:
        with open(os.path.join(cluster.data, "postmaster.pid")) as pidfile:
            main = int(pidfile.readline())
    except OSError:
        return []
    pids = [main]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == main:
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


class Processes:
    """The run's processes by name (PostgreSQL: the postmaster and its children, summed)."""

    def __init__(self, pids: dict[str, int], cluster: PostgresCluster) -> None:
        self.pids = pids
        self.cluster = cluster
        self.last: dict[str, float] = {}

    def cpu(self) -> dict[str, float]:
        """Each process's CPU seconds (user + system) so far (a killed one: until its death, as
        last read)."""
        seconds = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        seconds["postgres"] = sum(cpu_seconds(pid) for pid in postgres_pids(self.cluster))
        for name, value in seconds.items():
            self.last[name] = max(self.last.get(name, 0.0), value)
        return dict(self.last)

    def rss(self) -> dict[str, float]:
        sizes = {name: rss_mb(pid) for name, pid in self.pids.items()}
        sizes["postgres"] = sum(rss_mb(pid) for pid in postgres_pids(self.cluster))
        return sizes


def cores(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    return {name: (after[name] - before.get(name, 0.0)) / wall for name in after}


def listen_overflows() -> dict[str, int]:
    """The kernel's counts of connections dropped at a full listen queue (all sockets)."""
    values: dict[str, int] = {}
    with open("/proc/net/netstat") as netstat:
        lines = netstat.read().splitlines()
    for header, row in zip(lines[::2], lines[1::2], strict=False):
        names, numbers = header.split()[1:], row.split()[1:]
        for name, number in zip(names, numbers, strict=False):
            if name in ("ListenOverflows", "ListenDrops"):
                values[name] = int(number)
    return values


async def accept_queues(ports: dict[int, str]) -> dict[str, int]:
    """The connections waiting in each listener's accept queue (``ss -ltn``: netlink, listening
    sockets only; reading ``/proc/net/tcp`` walks every socket, 20,000 of them here)."""
    process = await asyncio.create_subprocess_exec(
        "ss", "-ltnH", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    output, _ = await process.communicate()
    queues: dict[str, int] = {}
    for line in output.decode().splitlines():
        fields = line.split()  # State Recv-Q Send-Q Local:Port Peer:Port
        if len(fields) >= 4:
            port = int(fields[3].rsplit(":", 1)[1])
            if port in ports:
                queues[ports[port]] = int(fields[1])
    return queues


async def watch_accept_queues(ports: dict[int, str], peaks: dict[str, int]) -> None:
    """Keep each listener's deepest accept queue seen (every 0.2 s) in ``peaks``."""
    while True:
        for name, depth in (await accept_queues(ports)).items():
            peaks[name] = max(peaks.get(name, 0), depth)
        await asyncio.sleep(0.2)


async def print_balancer(balancer: Balancer) -> None:
    """Per server: sessions now and at most, in all, connection errors, retries, redispatches,
    queue peak, status and health-check downs; and the frontend's refusals."""
    print("  HAProxy (server: scur smax stot econ wretr wredis qmax status chkdown):")
    for row in await balancer.stats():
        if row.get("pxname") == "proxies" and row.get("svname") not in ("BACKEND", "FRONTEND"):
            print(
                "    "
                + " ".join(
                    row.get(key, "")
                    for key in (
                        "svname", "scur", "smax", "stot", "econ", "wretr", "wredis", "qmax",
                        "status", "chkdown",
                    )
                )
            )  # fmt: skip
        elif row.get("svname") == "FRONTEND" and row.get("pxname") == "realtime":
            print(
                f"    frontend: scur {row.get('scur')} smax {row.get('smax')} stot "
                f"{row.get('stot')} ereq {row.get('ereq')} dreq {row.get('dreq')} "
                f"hrsp_5xx {row.get('hrsp_5xx')}"
            )


def print_cpu(title: str, usage: dict[str, float], rss: dict[str, float] | None = None) -> None:
    print(f"  {title}:")
    for name, share in usage.items():
        extra = f"   RSS {rss[name]:6.0f} MB" if rss is not None else ""
        print(f"    {name:<15} {share:5.2f} cores{extra}")
    print(f"    {'all':<15} {sum(usage.values()):5.2f} cores")


def why_not_admitted(clients: list[LoadClient]) -> collections.Counter[str]:
    """Each failed open's cause: the balancer's HTTP status, or the close code and reason."""
    causes: collections.Counter[str] = collections.Counter()
    for client in clients:
        for record in client.records:
            if record.admitted or record.closed_at is None:
                continue
            if record.handshake_status is not None:
                causes[f"HTTP {record.handshake_status}"] += 1
            else:
                causes[f"close {record.close_code} {record.close_reason[:40]}".strip()] += 1
    return causes


async def health_times(
    instances: list[ProxyProcess], http: aiohttp.ClientSession, wall: float
) -> dict[str, list[float]]:
    """Each instance's ``/healthz`` answer time, every 0.25 s for ``wall`` s: its loop's lag."""
    times: dict[str, list[float]] = {i.name: [] for i in instances}
    times["load generator (loop lag)"] = []
    end = time.monotonic() + wall
    while time.monotonic() < end:
        started = time.monotonic()
        await asyncio.sleep(0)
        times["load generator (loop lag)"].append(time.monotonic() - started)
        for instance in instances:
            started = time.monotonic()
            async with http.get(f"{instance.http_url}/healthz") as response:
                await response.read()
            times[instance.name].append(time.monotonic() - started)
        await asyncio.sleep(0.25)
    return times


async def print_ramp(
    processes: Processes,
    run_cpu: dict[str, float],
    started: float,
    overflows: dict[str, int],
    balancer: Balancer,
    queue_peaks: dict[str, int],
) -> None:
    wall = time.monotonic() - started
    print_cpu(f"CPU over the ramp ({wall:.1f} s)", cores(run_cpu, processes.cpu(), wall))
    now = listen_overflows()
    print(
        "  connections dropped at a full listen queue (kernel, all sockets): "
        + ", ".join(f"{name} +{now[name] - overflows.get(name, 0)}" for name in now)
    )
    print(f"  deepest accept queue seen per listener: {queue_peaks}")
    await print_balancer(balancer)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def print_ledger_table(dsn: str) -> None:
    """The sessions table's updates (HOT: no index touched), dead rows and size."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd, n_dead_tup, autovacuum_count, "
            "pg_total_relation_size(relid) FROM pg_stat_user_tables WHERE relname = %s",
            (f"{TABLE_PREFIX}sessions",),
        )
        row = await cursor.fetchone()
    if row is not None:
        updates, hot, dead, vacuums, size = row
        print(
            f"  ledger table: {updates} row updates ({hot} HOT), {dead} dead rows, "
            f"{vacuums} autovacuums, {size / 2**20:.1f} MB with its indexes"
        )


async def ledger_rows(dsn: str) -> list[LedgerSession]:
    async with PostgresLedger(dsn) as ledger:
        return await ledger.sessions(limit=1_000_000)


async def run(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    print(f"descriptor limit {hard} (was {soft}); load average {load_average()}")
    bindir = postgres_bin()
    if bindir is None or haproxy_binary() is None:
        sys.exit("needs PostgreSQL's server binaries and HAProxy (bash scripts/setup.sh)")
    workdir = Path(tempfile.mkdtemp(prefix="decart-scale-bench-"))
    cluster = PostgresCluster(bindir).start()
    dsn = cluster.dsn
    quota = args.ticks * 1.5
    async with PostgresLedger(dsn) as ledger:
        await ledger.set_quota("metered", quota)
    upstream = TickingUpstream(tick=args.tick, ticks=args.ticks)
    flags = [
        "--lease-seconds",
        str(args.lease),
        "--max-sessions-per-user",
        str(SESSION_LIMIT),
        "--max-connections-per-address",
        "0",
        "--drain-seconds",
        "0",
    ]
    instances = [
        ProxyProcess(
            f"proxy{i + 1}",
            free_port(),
            upstream_url=upstream.realtime_url,
            ledger=dsn,
            workdir=workdir,
            flags=flags,
        )
        for i in range(args.instances)
    ]
    balancer: Balancer | None = None
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    http = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
    try:
        for instance in instances:
            await wait_until(lambda i=instance: i.healthy(http), 60, f"{instance.name} healthy")
        balancer = Balancer(free_port(), instances, workdir, maxconn=args.sessions + 1000)
        await wait_until(lambda: balancer.serving(http), 30, "the balancer")
        await measure(args, dsn, cluster, upstream, instances, balancer, http, quota)
    finally:
        await http.close()
        if balancer is not None:
            balancer.stop()
        for instance in instances:
            instance.stop()
        upstream.stop()
        cluster.stop()
        print(f"logs in {workdir}; load average {load_average()}")


async def measure(
    args: argparse.Namespace,
    dsn: str,
    cluster: PostgresCluster,
    upstream: TickingUpstream,
    instances: list[ProxyProcess],
    balancer: Balancer,
    http: aiohttp.ClientSession,
    quota: float,
) -> None:
    url = balancer.url
    round_trips: list[float] = []
    clients = [
        LoadClient(
            url,
            f"user{i // 2}",
            prompt_every=args.prompt_every,
            round_trips=round_trips,
            max_connections=10,
        )
        for i in range(args.sessions)
    ]
    pids = {p.name: p.process.pid for p in instances}
    pids["haproxy"] = balancer.process.pid
    pids["upstream"] = upstream.process.pid
    pids["load generator"] = os.getpid()
    processes = Processes(pids, cluster)
    run_cpu = processes.cpu()
    overflows = listen_overflows()
    listeners = {p.port: p.name for p in instances}
    listeners[balancer.port] = "haproxy"
    listeners[int(upstream.realtime_url.rsplit(":", 1)[1])] = "upstream"
    queue_peaks: dict[str, int] = {}
    queue_watch = asyncio.create_task(watch_accept_queues(listeners, queue_peaks))
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    print(f"opening {args.sessions} sessions through HAProxy at {args.ramp:g}/s ...")
    for index, client in enumerate(clients):
        tasks.append(asyncio.create_task(client.run(http)))
        await asyncio.sleep(max(0.0, started + (index + 1) / args.ramp - time.monotonic()))
    try:
        await wait_until(
            lambda: all(c.current is not None and c.current.admitted for c in clients),
            args.admit_timeout,
            "every session admitted",
            every=0.5,
        )
    except AssertionError:
        stuck = [c for c in clients if c.current is None or not c.current.admitted]
        print(
            f"{len(stuck)} of {args.sessions} not admitted within {args.admit_timeout:g} s "
            f"(load average {load_average()}); failed opens by cause: "
            f"{dict(why_not_admitted(clients))}"
        )
        await print_ramp(processes, run_cpu, started, overflows, balancer, queue_peaks)
        raise
    ramp = time.monotonic() - started
    failed_opens = sum(1 for c in clients for r in c.records if not r.admitted)
    waits = [r.admitted_at - r.opened_at for c in clients for r in c.records if r.admitted_at]
    print(
        f"all {args.sessions} admitted {ramp:.1f} s after the first (retried opens: "
        f"{failed_opens}, by cause {dict(why_not_admitted(clients))}); open to session id "
        f"p50 {percentile(waits, 0.5) * 1000:.0f} ms, p99 {percentile(waits, 0.99) * 1000:.0f} "
        f"ms; load average {load_average()}"
    )
    await print_ramp(processes, run_cpu, started, overflows, balancer, queue_peaks)
    queue_watch.cancel()

    # the spread: each instance's gauge against the ledger's open rows
    rows = await ledger_rows(dsn)
    open_rows = collections.Counter(r.instance for r in rows if r.open)
    print("\nspread (instance: /metrics sessions_active, ledger open rows):")
    active: dict[str, float] = {}
    for instance in instances:
        async with http.get(f"{instance.http_url}/metrics") as response:
            values = parse_metrics(await response.text())
        active[instance.name] = values["decart_proxy_sessions_active"]
        print(f"  {instance.name}: {active[instance.name]:.0f}, {open_rows[instance.name]}")
    print(
        f"  sum: {sum(active.values()):.0f}, {sum(open_rows.values())} "
        f"(clients connected: {sum(1 for c in clients if not c.done.is_set())})"
    )

    # the per-user limit and the quota, while the load runs
    capped = [
        LoadClient(url, "capped", prompt_every=args.prompt_every, max_connections=1)
        for _ in range(8)
    ]
    capped_tasks = [asyncio.create_task(c.run(http)) for c in capped]
    metered = [
        LoadClient(url, "metered", prompt_every=args.prompt_every, max_connections=1)
        for _ in range(3)
    ]

    async def quota_run() -> None:
        for client in metered:
            await client.run(http)

    quota_task = asyncio.create_task(quota_run())

    # a steady window: CPU and memory of every process, the prompt round trip, how long ticks
    # waited for their commit, how fast each instance answers /healthz (its event loop's lag)
    await asyncio.sleep(args.settle)
    before = processes.cpu()
    ledger_before = {i.name: await i.metrics(http) for i in instances}
    round_trips.clear()
    health_task = asyncio.create_task(health_times(instances, http, args.window))
    await asyncio.sleep(args.window)
    rtts = list(round_trips)
    health = await health_task
    print(f"\nsteady window of {args.window:g} s, {args.settle:g} s after the ramp "
          f"(load average {load_average()}):")  # fmt: skip
    print_cpu("CPU and memory", cores(before, processes.cpu(), args.window), processes.rss())
    p50, p99 = percentile(rtts, 0.5) * 1000, percentile(rtts, 0.99) * 1000
    print(
        f"  prompt -> ack through HAProxy and a proxy: {len(rtts)} prompts, "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    for instance in instances:
        now_values = await instance.metrics(http)
        was = ledger_before[instance.name]
        writes = (
            now_values["decart_proxy_ledger_writes_total"] - was["decart_proxy_ledger_writes_total"]
        )
        waited = (
            now_values["decart_proxy_ledger_write_seconds_total"]
            - was["decart_proxy_ledger_write_seconds_total"]
        )
        times = health[instance.name]
        print(
            f"  {instance.name}: {writes:.0f} ticks committed, {1000 * waited / max(1, writes):.1f}"
            f" ms mean wait for the commit; /healthz p50 {percentile(times, 0.5) * 1000:.1f} ms,"
            f" max {max(times, default=float('nan')) * 1000:.1f} ms"
        )
    lags = health["load generator (loop lag)"]
    print(
        f"  the load generator's own event loop: a turn took p50 "
        f"{percentile(lags, 0.5) * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms"
    )

    # the per-user limit
    await wait_until(
        lambda: all(
            c.current is not None and (c.current.admitted or c.done.is_set()) for c in capped
        ),
        60,
        "the capped user's sessions",
    )
    capped_admitted = [c for c in capped if c.current is not None and c.current.admitted]
    capped_codes = collections.Counter(
        c.records[0].close_code for c in capped if c not in capped_admitted
    )
    capped_instances = {r.instance for r in await ledger_rows(dsn) if r.user == "capped"}
    print(
        f"\nper-user limit {SESSION_LIMIT}: 8 attempts -> {len(capped_admitted)} admitted on "
        f"{len(capped_instances)} instances, refused {dict(capped_codes)}"
    )
    for client in capped_admitted:
        await client.leave()
    await asyncio.gather(*capped_tasks)

    # SIGKILL the busiest instance
    await asyncio.sleep(max(0.0, args.kill_after - args.window - args.settle))
    rows = await ledger_rows(dsn)
    by_upstream = {r.upstream_session_id: r for r in rows}
    open_now = collections.Counter(r.instance for r in rows if r.open)
    victim = next(p for p in instances if p.name == max(open_now, key=lambda n: open_now[n]))
    on_victim = [
        c
        for c in clients
        if c.current is not None
        and c.current.admitted
        and not c.done.is_set()
        and by_upstream[c.current.upstream_id].instance == victim.name
    ]
    processes.cpu()  # the victim's CPU, last read before it dies
    killed_at = time.monotonic()
    victim.kill()
    print(f"\nSIGKILL {victim.name} with {len(on_victim)} live sessions")
    await wait_until(
        lambda: all(
            c.done.is_set()
            or (
                c.current is not None
                and c.current.admitted
                and c.current.closed_at is None
                and len(c.records) >= 2
            )
            for c in on_victim
        ),
        120,
        "the killed instance's clients back",
        every=0.1,
    )
    back = time.monotonic() - killed_at
    lost_codes = collections.Counter(c.records[-2].close_code for c in on_victim)
    print(
        f"  every client of {victim.name} reconnected through HAProxy {back:.1f} s after the "
        f"kill (closes seen: {dict(lost_codes)})"
    )

    async def reaped() -> bool:
        return not any(r.open for r in await ledger_rows(dsn) if r.instance == victim.name)

    await wait_until(reaped, 10 * args.lease + 60, "the dead instance's sessions reaped", every=0.5)
    print(
        f"  its sessions reaped as 'lost' {time.monotonic() - killed_at:.1f} s after the kill "
        f"(lease {args.lease:g} s)"
    )

    # every session to its end
    await asyncio.gather(*tasks, quota_task)
    wall = time.monotonic() - started
    print()
    print_cpu(f"CPU over the whole run ({wall:.0f} s)", cores(run_cpu, processes.cpu(), wall))
    await print_ledger_table(dsn)

    async def all_ended() -> bool:
        return not any(r.open for r in await ledger_rows(dsn))

    await wait_until(all_ended, 60, "every end in the ledger", every=0.5)
    rows = await ledger_rows(dsn)
    sent = await upstream.sent(http)
    report(args, clients, metered, rows, sent, victim, instances, quota)
    for instance in instances:
        if instance is victim:
            continue
        async with http.get(f"{instance.http_url}/metrics") as response:
            values = parse_metrics(await response.text())
        mine = [r for r in rows if r.instance == instance.name]
        total = values["decart_proxy_sessions_total"]
        print(
            f"  {instance.name} /metrics: sessions_total {total:.0f}"
            f" (ledger rows {len(mine)}), generation_seconds_total "
            f"{values['decart_proxy_generation_seconds_total']:.0f} (ledger "
            f"{sum(r.seconds for r in mine):.0f}), prompts_total "
            f"{values['decart_proxy_prompts_total']:.0f} (service received "
            f"{sum(sent[r.upstream_session_id]['prompts'] for r in mine)})"
        )


def report(
    args: argparse.Namespace,
    clients: list[LoadClient],
    metered: list[LoadClient],
    rows: list[LedgerSession],
    sent: dict[str, dict[str, object]],
    victim: ProxyProcess,
    instances: list[ProxyProcess],
    quota: float,
) -> None:
    by_upstream = {r.upstream_session_id: r for r in rows}
    metered_rows = [r for r in rows if r.user == "metered"]
    print(
        f"\nquota {quota:g} s: sessions closed with "
        f"{[c.records[0].close_code for c in metered]}, ledger total "
        f"{sum(r.seconds for r in metered_rows):g} s on "
        f"{len({r.instance for r in metered_rows})} instances"
    )
    admitted = [r for c in clients for r in c.records if r.admitted]
    load_rows = [r for r in rows if r.user.startswith("user")]
    exact = lost_extra = mismatched = 0
    for record in admitted:
        row = by_upstream.get(record.upstream_id)
        if row is None:
            mismatched += 1
            continue
        service = float(sent[row.upstream_session_id]["seconds"])  # type: ignore[arg-type]
        if row.seconds == record.seconds and row.seconds <= service:
            exact += 1
        elif row.instance == victim.name and row.seconds - record.seconds == 1:
            lost_extra += 1
        else:
            mismatched += 1
    unfinished = sum(1 for c in clients if c.records[-1].ended != args.ticks)
    print("\naccounting once every session ended:")
    print(f"  ledger rows {len(load_rows)} for {len(admitted)} admitted connections")
    print(
        f"  seconds: ledger {sum(r.seconds for r in load_rows):.0f}, clients saw "
        f"{sum(r.seconds for r in admitted):.0f}; rows equal to their client's last tick "
        f"{exact}, killed rows one committed-unforwarded tick ahead {lost_extra}, "
        f"other mismatches {mismatched}"
    )
    reasons = collections.Counter(r.end_reason for r in load_rows)
    print(f"  end reasons {dict(reasons)}; sessions that did not run to their end: {unfinished}")
    print(
        f"  seconds the service sent {sum(float(v['seconds']) for v in sent.values()):.0f} "  # type: ignore[arg-type]
        f"(all sessions, probes included), ledger {sum(r.seconds for r in rows):.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--prompt-every", type=float, default=5.0)
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between ticks")
    parser.add_argument("--ticks", type=int, default=120, help="session length in ticks")
    parser.add_argument("--ramp", type=float, default=250.0, help="sessions opened a second")
    parser.add_argument("--window", type=float, default=10.0, help="steady window (s)")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds between the ramp and the window"
    )
    parser.add_argument(
        "--kill-after",
        type=float,
        default=20.0,
        help="SIGKILL this long after the last session opened (s)",
    )
    parser.add_argument("--lease", type=float, default=10.0, help="--lease-seconds")
    parser.add_argument(
        "--admit-timeout", type=float, default=120.0, help="seconds for every session to open"
    )
    args = parser.parse_args()
    random.seed(1)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
