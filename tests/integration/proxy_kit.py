"""Test kit for the proxy's integration tests (no tests here).

* `emulator` / `proxy_factory` fixtures: a local emulator upstream (fast ticks) and proxies on
  loopback, started on the test's loop and stopped after it;
* `PostgresCluster`: a throwaway PostgreSQL server in a temp dir on a loopback port, from Debian's
  binaries (``apt-get install postgresql``); tests that need it skip only when they are absent;
* small helpers: a raw WebSocket client, waiting for a close, waiting on conditions.

Every wait is a condition with a timeout; nothing sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from decart_widget.emulator import Emulator
from decart_widget.proxy import ProxyServer

WAIT = 10.0
TICK = 0.05
SECRET = "integration-test-secret-0123456789"


# ---- waiting ------------------------------------------------------------------------------------


async def wait_for(
    predicate: Callable[[], object] | Callable[[], Awaitable[object]],
    timeout: float = WAIT,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` (sync or async) until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)


# ---- raw clients --------------------------------------------------------------------------------


async def connect(url: str, **kwargs: Any) -> ClientConnection:
    return await websockets.connect(url, max_size=None, compression=None, **kwargs)


async def closed_with(ws: ClientConnection, timeout: float = WAIT) -> tuple[int, str]:
    """Read until the proxy closes the socket; its close code and reason."""

    async def drain() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await ws.recv()

    await asyncio.wait_for(drain(), timeout)
    assert ws.close_code is not None, "closed without a close frame"
    return ws.close_code, ws.close_reason or ""


async def receive_type(ws: ClientConnection, kind: str, timeout: float = WAIT) -> dict[str, Any]:
    """The next message of type ``kind`` (others are skipped)."""

    async def find() -> dict[str, Any]:
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") == kind:
                return message  # type: ignore[no-any-return]

    return await asyncio.wait_for(find(), timeout)


async def prompt_round_trip(ws: ClientConnection, text: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "prompt", "prompt": text, "enhance_prompt": False}))
    return await receive_type(ws, "prompt_ack")


# ---- fixture bodies (each test module wraps them in its own fixtures) --------------------------


def run_emulator(**kwargs: Any) -> Iterator[Emulator]:
    kwargs.setdefault("tick_seconds", TICK)
    kwargs.setdefault("max_concurrent_sessions", 8)
    emu = Emulator(**kwargs).start()
    try:
        yield emu
    finally:
        emu.stop()


ProxyFactory = Callable[..., Awaitable[ProxyServer]]


async def run_proxies(emu: Emulator) -> AsyncIterator[ProxyFactory]:
    """``await make(**kwargs)``: a started `ProxyServer` in front of ``emu``; all stopped after."""
    started: list[ProxyServer] = []

    async def make(**kwargs: Any) -> ProxyServer:
        kwargs.setdefault("secret", SECRET)
        kwargs.setdefault("heartbeat", None)
        kwargs.setdefault("close_timeout", 1.0)
        server = ProxyServer(upstream=kwargs.pop("upstream", emu), **kwargs)
        await server.astart()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in reversed(started):
            await server.astop()


def live_upstream_sessions(emu: Emulator) -> int:
    return sum(1 for record in emu.sessions if record.live)


# ---- PostgreSQL ---------------------------------------------------------------------------------


def postgres_bin() -> str | None:
    """The directory of Debian's PostgreSQL server binaries (newest version), if installed."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0,
    )
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """A throwaway PostgreSQL server: ``initdb`` in a temp dir, loopback only, trust auth.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` account
    (created by Debian's package) or, failing that, ``nobody``.
    """

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.root = tempfile.mkdtemp(prefix="decart-proxy-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        self.user = "decart"
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            account = "postgres"
            try:
                pwd.getpwnam(account)
            except KeyError:
                account = "nobody"
            self._run_as = ["runuser", "-u", account, "--"]
            entry = pwd.getpwnam(account)
            os.chmod(self.root, 0o700)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self._run_as, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stdout}\n{result.stderr}")

    def start(self) -> PostgresCluster:
        self._run(
            os.path.join(self.bindir, "initdb"),
            "-D", self.data, "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-locale",
        )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=50 -c shared_buffers=16MB"
        )
        self._run(
            os.path.join(self.bindir, "pg_ctl"),
            "-D", self.data, "-o", options, "-l", os.path.join(self.root, "log"), "-w", "-t", "60",
            "start",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "immediate",
                      "-w", "stop")  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)

    def reset(self) -> None:
        """Drop the ledger tables, so each test starts empty."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for table in ("decart_proxy_sessions", "decart_proxy_quotas", "decart_proxy_schema"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")


_cluster: PostgresCluster | None = None


def shared_postgres() -> PostgresCluster:
    """One throwaway PostgreSQL server for the whole test run (stopped at exit); skips the
    calling test when Debian's server binaries are not installed."""
    global _cluster
    if _cluster is None:
        bindir = postgres_bin()
        if bindir is None:
            pytest.skip(
                "PostgreSQL server binaries not found: apt-get install postgresql "
                "(Debian puts initdb and pg_ctl in /usr/lib/postgresql/<version>/bin)"
            )
        cluster = PostgresCluster(bindir)
        atexit.register(cluster.stop)
        _cluster = cluster.start()
    return _cluster


def fresh_postgres_dsn() -> str:
    """The shared server's DSN, with the ledger tables dropped."""
    cluster = shared_postgres()
    cluster.reset()
    return cluster.dsn
