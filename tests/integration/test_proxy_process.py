"""The proxy as a separate process (the CLI), killed with SIGKILL mid-session, on both ledgers;
and several proxies sharing one PostgreSQL ledger."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from proxy_kit import (
    SECRET,
    WAIT,
    ProxyFactory,
    closed_with,
    connect,
    fresh_postgres_dsn,
    live_upstream_sessions,
    prompt_round_trip,
    wait_for,
)

import decart_widget as dw
from decart_widget.emulator import Emulator
from decart_widget.protocol._session import RetryPolicy
from decart_widget.proxy import Limits, ProxyBackend, codes, issue_token
from decart_widget.proxy._ledger import Ledger, open_ledger

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def postgres_dsn() -> str:
    return fresh_postgres_dsn()


class ProxyProcess:
    """``python -m decart_widget.proxy`` on a free port; the URL is read from its stdout."""

    def __init__(self, emu: Emulator, ledger: str, *extra: str) -> None:
        env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        env.pop("DECART_API_KEY", None)
        # stderr (JSON logs) goes to a file, so a full pipe can never block the proxy.
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "decart_widget.proxy", "--port", "0",
                "--upstream-url", emu.realtime_url, "--api-key", emu.api_key,
                "--secret", SECRET, "--ledger", ledger, "--heartbeat", "0",
                "--lease-seconds", "1", "--log-level", "warning", *extra,
            ],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until the proxy listens (or dies)
        if "listening on" not in line:
            self.process.kill()
            self.process.wait(WAIT)
            self.log.seek(0)
            raise AssertionError(f"the proxy did not start: {line}{self.log.read()}")
        self.url = line.split("listening on ", 1)[1].strip().removesuffix("/v1/stream")

    def backend(self, user: str) -> ProxyBackend:
        return ProxyBackend(self.url.replace("ws", "http", 1), self.url, issue_token(user, SECRET))

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(WAIT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WAIT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.sqlite3")
    else:
        yield request.getfixturevalue("postgres_dsn")


async def test_sigkill_mid_session_loses_no_tick_and_a_restart_serves_again(
    emulator: Emulator, ledger_spec: str
) -> None:
    first = ProxyProcess(emulator, ledger_spec)
    try:
        ticks: list[int] = []
        session = await dw.RealtimeSession.connect(
            backend=first.backend("alice"), prompt="Anime", retry=RetryPolicy(delays=())
        )
        session.on("generation_tick", ticks.append)
        try:
            # 0.5 s of ticks on a quiet machine; a loaded one (fsync, 2 cores) takes far longer
            await wait_for(lambda: len(ticks) >= 10, 30, what="ten ticks")
            first.kill()
            await wait_for(lambda: session.connection_state == "disconnected", what="the loss")
        finally:
            await session.disconnect()
    finally:
        first.stop()
    # The upstream session ended with the proxy (the kernel closed its sockets).
    await wait_for(lambda: live_upstream_sessions(emulator) == 0, what="the upstream end")

    # Every tick any client saw is in the ledger: ticks are committed before they are forwarded.
    ledger: Ledger = open_ledger(ledger_spec)
    async with ledger:
        [row] = await ledger.sessions("alice")
        assert row.seconds >= ticks[-1] and row.ticks >= len(ticks)
        assert row.open  # nobody could record the end

    # A restarted proxy on the same ledger serves again, and ends the dead session (lease 1 s).
    second = ProxyProcess(emulator, ledger_spec)
    try:
        token = issue_token("alice", SECRET)
        async with await connect(f"{second.url}/v1/stream?model=lucy-2.1&token={token}") as ws:
            assert (await prompt_round_trip(ws, "Noir"))["success"] is True
        async with open_ledger(ledger_spec) as ledger:

            async def reaped() -> bool:
                rows = {r.id: r for r in await ledger.sessions("alice")}
                return rows[row.id].end_reason == "lost"

            await wait_for(reaped, what="the dead session to be reaped")
            rows = {r.id: r for r in await ledger.sessions("alice")}
            assert rows[row.id].seconds == row.seconds  # the total is untouched
    finally:
        second.stop()
    assert second.process.returncode == 0  # SIGTERM drains and exits cleanly


async def test_sigterm_drains_with_1001(emulator: Emulator, tmp_path: Path) -> None:
    proxy = ProxyProcess(emulator, str(tmp_path / "l.sqlite3"), "--drain-seconds", "0")
    try:
        token = issue_token("bob", SECRET)
        async with await connect(f"{proxy.url}/v1/stream?model=lucy-2.1&token={token}") as ws:
            await prompt_round_trip(ws, "Anime")
            proxy.process.send_signal(signal.SIGTERM)
            assert await closed_with(ws) == (1001, "proxy shutting down")
        await asyncio.to_thread(proxy.process.wait, WAIT)
        assert proxy.process.returncode == 0
    finally:
        proxy.stop()


def test_the_cli_refuses_to_start_without_a_key_or_secret(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for name in ("DECART_API_KEY", "DECART_PROXY_SECRET"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "decart_widget.proxy", "--ledger", str(tmp_path / "x.db")],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "DECART_API_KEY" in result.stderr


async def test_proxies_sharing_a_postgres_ledger_share_limits_and_usage(
    emulator: Emulator, proxy_factory: ProxyFactory, postgres_dsn: str
) -> None:
    limits = Limits(max_sessions_per_user=1)
    a = await proxy_factory(ledger=postgres_dsn, limits=limits, instance="proxy-a")
    b = await proxy_factory(ledger=postgres_dsn, limits=limits, instance="proxy-b")
    ticks: list[int] = []
    session = await dw.RealtimeSession.connect(backend=a.backend_for("carol"), prompt="Anime")
    session.on("generation_tick", ticks.append)
    try:
        await wait_for(lambda: len(ticks) >= 3, what="ticks")
        # The same user on the other instance is over the limit; another user is not.
        async with await connect(b.stream_url(b.issue_token("carol"))) as ws:
            code, reason = await closed_with(ws)
        assert code == codes.CONCURRENCY_LIMIT and "for this user" in reason
        async with await connect(b.stream_url(b.issue_token("dan"))) as ws:
            assert (await prompt_round_trip(ws, "Noir"))["success"] is True
    finally:
        await session.disconnect()
    await wait_for(lambda: a.service is not None and not a.service.relays, WAIT, "session end")
    rows = {row.user: row for row in await b.ledger.sessions()}
    assert rows["carol"].instance == "proxy-a" and rows["carol"].seconds >= ticks[-1]
    assert rows["carol"].end_reason == "client_closed"
    assert rows["dan"].instance == "proxy-b"
    assert await b.ledger.usage("carol") == rows["carol"].seconds
    # Once carol's session ended on A, B serves her.
    async with await connect(b.stream_url(b.issue_token("carol"))) as ws:
        assert (await prompt_round_trip(ws, "Noir"))["success"] is True
