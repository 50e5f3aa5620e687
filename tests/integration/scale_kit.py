"""Kit for the proxy's scale-out runs (no tests here): real processes on loopback.

* `ProxyProcess`: one ``decart-widget proxy`` (``python -m decart_widget.proxy``) with the shared
  PostgreSQL ledger, killable with SIGKILL; its ``/metrics`` parsed;
* `Balancer`: HAProxy from Debian's package (``apt-get install haproxy``), WebSocket-aware, in
  front of the instances, health-checking ``/healthz``; `HAPROXY_CONFIG` is the configuration
  docs/proxy.md shows;
* `TickingUpstream`: ``ticking_upstream.py`` in a child process (ticks without media);
* `LoadClient`: a control session through the balancer that prompts every few seconds, records
  what it saw (the service's session id, the last tick, acks, the close), and reconnects after a
  close it can act on, as the project's clients do (`ConnectionRecord`).

`bench/scale_out.py` (5,000 sessions) and `test_proxy_scale_out.py` (60) both use it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from decart_widget.proxy import issue_token

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
API_KEY = "dct_scale_out_upstream_key"
SECRET = "scale-out-secret-0123456789abcdef"
MODEL = "lucy-2.1"
#: Closes after which a client reconnects (the session was lost, not refused or ended): no close
#: frame at all (an instance or the balancer died), the proxy going away, a server error.
RETRYABLE = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next(
        (path for path in ("/usr/sbin/haproxy",) if os.access(path, os.X_OK)), None
    )


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


async def wait_until(predicate: Any, timeout: float, what: str, every: float = 0.05) -> None:
    """Poll ``predicate`` (sync or async) until it is true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(every)


# ---- the upstream -------------------------------------------------------------------------------


class TickingUpstream:
    """``ticking_upstream.py`` in a child process; ``sent()`` is its ``/sessions`` record."""

    def __init__(self, *, tick: float, ticks: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "ticking_upstream.py"), "--key", API_KEY,
             "--tick", str(tick), "--ticks", str(ticks)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env(),
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("ws://"):
            self.stop()
            raise RuntimeError(f"the ticking upstream did not start: {line!r}")
        self.realtime_url = line
        self.http_url = "http" + line[2:]

    async def sent(self, http: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
        async with http.get(f"{self.http_url}/sessions") as response:
            result: dict[str, dict[str, Any]] = await response.json()
            return result

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---- proxy instances ----------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as ``{"name{label=\"v\"}": value}`` (comments skipped)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


class ProxyProcess:
    """One ``decart-widget proxy`` child process; its log goes to ``workdir/<name>.log``."""

    def __init__(
        self,
        name: str,
        port: int,
        *,
        upstream_url: str,
        ledger: str,
        workdir: Path,
        flags: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.port = port
        self.http_url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "decart_widget.proxy", "--host", "127.0.0.1",
             "--port", str(port), "--upstream-url", upstream_url, "--ledger", ledger,
             "--instance", name, "--trust-forwarded", *flags],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            env=_env({"DECART_API_KEY": API_KEY, "DECART_PROXY_SECRET": SECRET}),
        )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    async def healthy(self, http: aiohttp.ClientSession) -> bool:
        if not self.alive:
            raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
        try:
            async with http.get(f"{self.http_url}/healthz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        async with http.get(f"{self.http_url}/metrics") as response:
            return parse_metrics(await response.text())

    def kill(self) -> None:
        """SIGKILL: no drain, no close frames, no ledger writes."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# ---- the balancer -------------------------------------------------------------------------------

#: HAProxy's configuration: ``{port}``, ``{maxconn}`` and ``{servers}`` filled in. WebSockets
#: need nothing special in HTTP mode: after the upgrade the connection is a tunnel
#: (``timeout tunnel``). ``leastconn`` spreads long-lived sessions; ``redispatch`` with
#: ``retries`` sends a connection refused by a dead instance to another one before the health
#: check has noticed. The health check allows 3 s (``timeout check``) and three failures: a busy
#: instance's ``/healthz`` is slower, and a tight check takes every busy instance out at once.
#: ``maxconn`` bounds HAProxy's connections (it raises its own descriptor limit to fit, two a
#: session); the ``stats socket`` answers ``show stat`` (`Balancer.stats`).
HAPROXY_CONFIG = """\
global
    maxconn {maxconn}
    stats socket {stats_socket} mode 600 level user

defaults
    mode http
    option forwardfor
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 5s
    timeout check 3s
    timeout tunnel 1h
    timeout client-fin 5s
    retries 3
    option redispatch 1

frontend realtime
    bind 127.0.0.1:{port} backlog 4096
    maxconn {maxconn}
    default_backend proxies

backend proxies
    balance leastconn
    option httpchk GET /healthz
    http-check expect status 200
    default-server check inter 1s fastinter 250ms downinter 1s fall 3 rise 2
{servers}
"""


class Balancer:
    """HAProxy in the foreground (``-db``) in front of ``instances``."""

    def __init__(
        self, port: int, instances: Iterable[ProxyProcess], workdir: Path, maxconn: int = 4096
    ) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("HAProxy not found: apt-get install haproxy")
        self.port = port
        self.url = f"ws://127.0.0.1:{port}"
        self.http_url = f"http://127.0.0.1:{port}"
        servers = "\n".join(
            f"    server {p.name} 127.0.0.1:{p.port} maxconn {maxconn}" for p in instances
        )
        self.stats_socket = workdir / "haproxy.sock"
        self.config = HAPROXY_CONFIG.format(
            port=port, maxconn=maxconn, servers=servers, stats_socket=self.stats_socket
        )
        self.config_path = workdir / "haproxy.cfg"
        self.config_path.write_text(self.config)
        self.log_path = workdir / "haproxy.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [binary, "-f", str(self.config_path), "-db"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
        )  # fmt: skip

    async def serving(self, http: aiohttp.ClientSession) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"haproxy exited: {self.log_path.read_text()[-2000:]}")
        try:
            async with http.get(f"{self.http_url}/healthz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def stats(self) -> list[dict[str, str]]:
        """``show stat``: one row per frontend, server and backend (``pxname``, ``svname``,
        ``scur``, ``smax``, ``stot``, ``econ``, ``wretr``, ``wredis``, ``status``...)."""
        reader, writer = await asyncio.open_unix_connection(str(self.stats_socket))
        writer.write(b"show stat\n")
        await writer.drain()
        text = (await reader.read()).decode()
        writer.close()
        lines = [line for line in text.splitlines() if line]
        header = lines[0].lstrip("# ").split(",")
        return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# ---- load ---------------------------------------------------------------------------------------


@dataclass
class ConnectionRecord:
    """What a client saw on one connection."""

    user: str
    upstream_id: str | None = None
    #: The last ``generation_tick`` seen (cumulative seconds).
    seconds: float = 0.0
    ended: float | None = None  # generation_ended's seconds
    close_code: int | None = None
    close_reason: str = ""
    handshake_status: int | None = None  # the balancer refused the upgrade (no instance)
    prompts: int = 0
    acks: int = 0
    opened_at: float = field(default_factory=time.monotonic)
    admitted_at: float | None = None  # when the service's session id came
    closed_at: float | None = None

    @property
    def admitted(self) -> bool:
        return self.upstream_id is not None


@dataclass
class LoadClient:
    """One user's session through the balancer, reconnecting after a lost connection."""

    url: str
    user: str
    prompt_every: float
    reconnect_delay: float = 0.2
    max_connections: int = 5
    records: list[ConnectionRecord] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: If given, each prompt's round trip (seconds, to its ``prompt_ack``) is appended to it.
    round_trips: list[float] | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = field(default=None, repr=False)
    _leaving: bool = field(default=False, repr=False)
    _sent_at: collections.deque[float] = field(default_factory=collections.deque, repr=False)

    def stream_url(self, ttl: float = 3600.0) -> str:
        token = issue_token(self.user, SECRET, ttl)
        return f"{self.url}/v1/stream?{urlencode({'model': MODEL, 'token': token})}"

    @property
    def current(self) -> ConnectionRecord | None:
        return self.records[-1] if self.records else None

    async def run(self, http: aiohttp.ClientSession) -> None:
        """Connect until the session ends by itself, is refused (4013, 4002, ...) or `leave`
        is called."""
        try:
            while len(self.records) < self.max_connections:
                record = ConnectionRecord(self.user)
                self.records.append(record)
                await self._connect_once(http, record)
                if self._leaving:
                    return
                if record.ended is not None or not self._retryable(record):
                    return
                await asyncio.sleep(self.reconnect_delay * (1 + random.random()))
        finally:
            self.done.set()

    @staticmethod
    def _retryable(record: ConnectionRecord) -> bool:
        if record.handshake_status is not None:
            return record.handshake_status >= 500
        return record.close_code in RETRYABLE

    async def leave(self) -> None:
        """Close the session from the client's side (close 1000) and stop reconnecting."""
        self._leaving = True
        if self._ws is not None:
            await self._ws.close()
        await self.done.wait()

    async def _connect_once(self, http: aiohttp.ClientSession, record: ConnectionRecord) -> None:
        try:
            ws = await http.ws_connect(
                self.stream_url(), autoping=True, heartbeat=None, compress=0, max_msg_size=0
            )
        except aiohttp.WSServerHandshakeError as exc:
            record.handshake_status = exc.status
            record.closed_at = time.monotonic()
            return
        except (aiohttp.ClientError, OSError):
            record.close_code = 1006
            record.closed_at = time.monotonic()
            return
        self._ws = ws
        self._sent_at.clear()
        prompter = asyncio.create_task(self._prompt(ws, record))
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    data = msg.json()
                    self._seen(record, data)
                    if data.get("type") == "prompt_ack" and self._sent_at:
                        sent_at = self._sent_at.popleft()
                        if self.round_trips is not None:
                            self.round_trips.append(time.monotonic() - sent_at)
                elif msg.type is aiohttp.WSMsgType.CLOSE:
                    record.close_reason = msg.extra if isinstance(msg.extra, str) else ""
                    break
                elif msg.type is not aiohttp.WSMsgType.BINARY:  # CLOSING, CLOSED, ERROR
                    break
        except (aiohttp.ClientError, ConnectionError):
            pass
        finally:
            self._ws = None
            prompter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prompter
            record.close_code = ws.close_code if ws.close_code is not None else 1006
            record.closed_at = time.monotonic()
            if not ws.closed:
                await ws.close()

    @staticmethod
    def _seen(record: ConnectionRecord, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "generation_tick":
            record.seconds = float(data["seconds"])
        elif kind == "prompt_ack":
            record.acks += 1
        elif kind == "session_id":
            record.upstream_id = data["session_id"]
            record.admitted_at = time.monotonic()
        elif kind == "generation_ended":
            record.ended = float(data["seconds"])

    async def _prompt(self, ws: aiohttp.ClientWebSocketResponse, record: ConnectionRecord) -> None:
        await asyncio.sleep(random.random() * self.prompt_every)
        with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            while not ws.closed:
                self._sent_at.append(time.monotonic())  # before: the ack may come first
                record.prompts += 1
                await ws.send_json({"type": "prompt", "prompt": f"scene {record.prompts}",
                                    "enhance_prompt": False})  # fmt: skip
                await asyncio.sleep(self.prompt_every)
