"""Slow upgrades against the proxy process under a low file-descriptor limit (issue 14's probe:
half-sent WebSocket upgrades were held forever; with 256 descriptors, 300 of them made /healthz
and real sessions hang, the proxy spin and write megabytes of "Too many open files" tracebacks).

The proxy runs as a real subprocess with ``RLIMIT_NOFILE`` = 256 and a 2 s handshake deadline.
Hostile connections come from other loopback addresses (127.0.1.x) than the operator's own
checks (127.0.0.1), as they would from the internet. Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from proxy_kit import SECRET, ProxyFactory, connect, prompt_round_trip, run_emulator

from decart_widget.emulator import Emulator
from decart_widget.proxy import issue_token

ROOT = Path(__file__).resolve().parents[2]
FD_LIMIT = 256
HANDSHAKE = 2.0
HOSTILE = 300
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    yield from run_emulator(max_concurrent_sessions=16)


def _limit_descriptors() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


class LimitedProxy:
    """``python -m decart_widget.proxy`` with 256 descriptors; stderr kept in a file."""

    def __init__(self, emu: Emulator, **env: str) -> None:
        environ = dict(
            os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
        )
        environ.pop("DECART_API_KEY", None)
        environ["DECART_PROXY_HANDSHAKE_TIMEOUT"] = str(HANDSHAKE)
        environ.update(env)
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "decart_widget.proxy", "--port", "0",
                "--upstream-url", emu.realtime_url, "--api-key", emu.api_key,
                "--secret", SECRET, "--ledger", ":memory:", "--heartbeat", "0",
            ],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=environ,
            preexec_fn=_limit_descriptors,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise AssertionError(f"the proxy did not start: {line}{self.stderr()}")
        self.ws_url = line.split("listening on ", 1)[1].strip().removesuffix("/v1/stream")
        self.port = int(self.ws_url.rsplit(":", 1)[1])
        self.http_url = self.ws_url.replace("ws://", "http://")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def limited_proxy(emu: Emulator, **env: str) -> Iterator[LimitedProxy]:
    proxy = LimitedProxy(emu, **env)
    try:
        yield proxy
    finally:
        proxy.stop()


def half_sent_upgrades(port: int, count: int, addresses: int) -> list[socket.socket]:
    """``count`` connections, each sending a WebSocket upgrade without its final blank line,
    spread over ``addresses`` source addresses 127.0.1.1...; those the proxy does not accept in
    time are left out."""
    request = (
        f"GET /v1/stream?model=lucy-2.1&token=x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    ).encode()
    held = []
    for index in range(count):
        source = f"127.0.1.{index % addresses + 1}"
        try:
            sock = socket.create_connection(("127.0.0.1", port), 1.0, (source, 0))
            sock.sendall(request)
        except OSError:
            continue
        held.append(sock)
    return held


def refused_upgrades(port: int, count: int, addresses: int) -> list[socket.socket]:
    """``count`` complete upgrades with a bad token whose senders never read again, so never
    answer the proxy's close (second adversarial pass)."""
    request = (
        f"GET /v1/stream?model=lucy-2.1&token=bad HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ).encode()
    held = []
    for index in range(count):
        try:
            sock = socket.create_connection(
                ("127.0.0.1", port), 1.0, (f"127.0.1.{index % addresses + 1}", 0)
            )
            sock.sendall(request)
        except OSError:
            continue
        held.append(sock)
    return held


def still_open(sockets: list[socket.socket]) -> int:
    """How many of ``sockets`` the proxy has not closed."""
    count = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            if sock.recv(4096):  # an answer (e.g. 400) without a close counts as open
                count += 1
        except BlockingIOError:
            count += 1
        except OSError:
            pass
    return count


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def health(proxy: LimitedProxy, timeout: float = 5.0) -> int:
    with httpx.Client(trust_env=False, timeout=timeout) as http:
        return http.get(f"{proxy.http_url}/healthz").status_code


async def a_session_works(proxy: LimitedProxy, user: str) -> None:
    async with await connect(
        f"{proxy.ws_url}/v1/stream?model=lucy-2.1&token={issue_token(user, SECRET)}",
        open_timeout=5,
    ) as ws:
        ack = await prompt_round_trip(ws, "Anime")
        assert ack["success"] is True


def check_logs(text: str) -> list[dict[str, object]]:
    """Every line one JSON object; no flood, no traceback storm."""
    assert len(text) < 100_000, f"{len(text)} bytes of logs"
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line[:300]!r}")
    assert text.count("Too many open files") <= 3, text[-3000:]
    assert sum(1 for r in records if "exc" in r) <= 3, text[-3000:]
    return records


def test_slow_upgrades_are_capped_and_cut_off_and_health_answers(emulator: Emulator) -> None:
    with limited_proxy(emulator) as proxy:
        cpu_before = proxy.cpu_seconds()
        hostile = half_sent_upgrades(proxy.port, HOSTILE, addresses=10)
        try:
            assert health(proxy) == 200  # at once, while the upgrades are held
            asyncio.run(a_session_works(proxy, "during"))
            # the deadline closes every half-sent upgrade
            wait_until(lambda: still_open(hostile) == 0, HANDSHAKE + 8, "the deadline")
            asyncio.run(a_session_works(proxy, "after"))
            assert health(proxy) == 200
        finally:
            for sock in hostile:
                sock.close()
        cpu = proxy.cpu_seconds() - cpu_before
        proxy.stop()
        records = check_logs(proxy.stderr())
    assert cpu < 5.0, f"{cpu:.1f} cpu-s"  # a busy spin would take every second of the run
    refused = [r for r in records if r["event"] == "connections_refused"]
    assert refused, "the refusals were not logged"
    assert len(refused) <= 3  # rate-limited


def test_refused_upgrades_that_never_answer_the_close_do_not_lock_anyone_out(
    emulator: Emulator,
) -> None:
    with limited_proxy(emulator) as proxy:
        hostile = refused_upgrades(proxy.port, HOSTILE, addresses=10)
        try:
            assert health(proxy) == 200
            asyncio.run(a_session_works(proxy, "during"))
            assert health(proxy) == 200
        finally:
            for sock in hostile:
                sock.close()
        proxy.stop()
        check_logs(proxy.stderr())


def test_at_the_descriptor_limit_sessions_go_on_and_health_answers(emulator: Emulator) -> None:
    # No caps: the flood reaches the process's descriptor limit itself.
    with limited_proxy(
        emulator,
        DECART_PROXY_MAX_CONNECTIONS="100000",
        DECART_PROXY_MAX_CONNECTIONS_PER_ADDRESS="0",
    ) as proxy:

        async def scenario() -> None:
            token = issue_token("resident", SECRET)
            async with await connect(
                f"{proxy.ws_url}/v1/stream?model=lucy-2.1&token={token}", open_timeout=5
            ) as resident:
                await prompt_round_trip(resident, "Anime")
                hostile = await asyncio.to_thread(half_sent_upgrades, proxy.port, HOSTILE, 10)
                try:
                    assert len(hostile) > FD_LIMIT - 60, len(hostile)  # the limit was reached
                    # the open session carries on at the limit
                    assert (await prompt_round_trip(resident, "Noir"))["success"] is True
                    assert await asyncio.to_thread(health, proxy, 8.0) == 200
                    await asyncio.to_thread(
                        wait_until, lambda: still_open(hostile) == 0, HANDSHAKE + 8, "deadline"
                    )
                finally:
                    for sock in hostile:
                        sock.close()
                assert (await prompt_round_trip(resident, "Sketch"))["success"] is True

        cpu_before = proxy.cpu_seconds()
        asyncio.run(scenario())
        cpu = proxy.cpu_seconds() - cpu_before
        proxy.stop()
        records = check_logs(proxy.stderr())
    assert cpu < 5.0, f"{cpu:.1f} cpu-s"
    exhausted = [r for r in records if r["event"] == "file_descriptors_exhausted"]
    assert 1 <= len(exhausted) <= 3, exhausted


# ---- the caps and the deadline in process (small numbers, no descriptor limit) -----------------


async def _open_half_sent(port: int, source: str) -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: never finished
    await writer.drain()
    return reader, writer


async def _closed_by_peer(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the proxy closes the connection within ``timeout`` (whatever it sent first)."""
    try:
        await asyncio.wait_for(reader.read(), timeout)  # returns at end of stream
    except ConnectionError:
        return True
    except asyncio.TimeoutError:
        return False
    return True


async def test_the_per_address_cap_refuses_only_that_address(proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(max_connections_per_address=3, handshake_timeout=30)
    port = proxy.port
    held = [await _open_half_sent(port, "127.0.2.1") for _ in range(3)]
    extra_reader, extra_writer = await _open_half_sent(port, "127.0.2.1")
    assert await _closed_by_peer(extra_reader, 5)  # the fourth from that address
    async with httpx.AsyncClient(trust_env=False) as http:  # another address gets in
        assert (await http.get(f"{proxy.http_url}/healthz")).status_code == 200
        metrics = (await http.get(f"{proxy.http_url}/metrics")).text
    assert 'decart_proxy_connections_refused_total{reason="per_address"} 1' in metrics
    for _, writer in [*held, (extra_reader, extra_writer)]:
        writer.close()


async def test_at_the_total_cap_the_oldest_idle_connection_makes_room(
    proxy_factory: ProxyFactory,
) -> None:
    proxy = await proxy_factory(max_connections=4, handshake_timeout=30)
    async with await connect(proxy.stream_url(proxy.issue_token("busy"))) as session:
        await prompt_round_trip(session, "Anime")  # one busy connection: never evicted
        idle = [await _open_half_sent(proxy.port, "127.0.2.2") for _ in range(3)]
        async with httpx.AsyncClient(trust_env=False) as http:
            assert (await http.get(f"{proxy.http_url}/healthz")).status_code == 200
        assert await _closed_by_peer(idle[0][0], 5)  # the oldest idle one made room
        assert (await prompt_round_trip(session, "Noir"))["success"] is True
    for _, writer in idle:
        writer.close()


async def test_a_keep_alive_connection_idle_past_the_deadline_is_closed(
    proxy_factory: ProxyFactory,
) -> None:
    proxy = await proxy_factory(handshake_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # served...
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ...then a second request, half-sent
    await writer.drain()
    assert await _closed_by_peer(reader, 5)
    writer.close()
    # a WebSocket session is a request in progress: the deadline never cuts it
    async with await connect(proxy.stream_url(proxy.issue_token("long"))) as ws:
        await prompt_round_trip(ws, "Anime")
        await asyncio.sleep(1.5)  # three deadlines pass while the session is open
        assert (await prompt_round_trip(ws, "Noir"))["success"] is True


async def test_behind_a_balancer_the_cap_counts_the_forwarded_address(
    proxy_factory: ProxyFactory,
) -> None:
    proxy = await proxy_factory(trust_forwarded=True, max_connections_per_address=2)
    url = proxy.stream_url(proxy.issue_token("nat"))
    # The client wrote its own X-Forwarded-For; the balancer appended what it saw.
    spoofed = {"X-Forwarded-For": "1.1.1.1, 203.0.113.7"}
    first = await connect(url, additional_headers=spoofed)
    second = await connect(url, additional_headers={"X-Forwarded-For": "9.9.9.9, 203.0.113.7"})
    await prompt_round_trip(first, "Anime")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect(url, additional_headers={"X-Forwarded-For": "203.0.113.7"})
    assert refused.value.response.status_code == 429
    other = await connect(url, additional_headers={"X-Forwarded-For": "198.51.100.1"})
    await prompt_round_trip(other, "Anime")
    for ws in (first, second, other):
        await ws.close()
