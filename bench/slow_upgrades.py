"""Slow upgrades against the proxy process, at the scale of issue 14's probe.

``python bench/slow_upgrades.py [--connections 2000] [--fd-limit 256] [--addresses 20]
[--seconds 20] [--handshake-timeout 10] [--unguarded] [--refused]``

Starts the emulator (upstream) in this process and ``python -m decart_widget.proxy`` as a child
with ``RLIMIT_NOFILE`` = ``--fd-limit`` (0: unchanged), opens ``--connections`` WebSocket
upgrades that never send their final blank line, from ``--addresses`` loopback source addresses
(127.0.1.x), then samples once a second for ``--seconds``: how many are still held by the proxy,
the ``/healthz`` latency (``timeout`` after 3 s), whether a real session (token, prompt, ack)
completes, the proxy's CPU in that second, and its log bytes so far. ``--unguarded`` turns the
connection guard off (no caps, a one-hour deadline) to show what the guard prevents.
``--refused`` sends complete upgrades with a bad token instead, from senders that never read
again (so never answer the proxy's close).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

from decart_widget.emulator import Emulator
from decart_widget.proxy import issue_token

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-slow-upgrades-secret-0123456789"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def start_proxy(
    emu: Emulator, fd_limit: int, handshake: float, unguarded: bool, log: object
) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("DECART_API_KEY", None)
    extra = ["--handshake-timeout", str(handshake)]
    if unguarded:
        extra = [
            "--handshake-timeout", "3600", "--max-connections", "0",
            "--max-connections-per-address", "0",
        ]  # fmt: skip

    def limit() -> None:
        if fd_limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    process = subprocess.Popen(
        [
            sys.executable, "-m", "decart_widget.proxy", "--port", "0",
            "--upstream-url", emu.realtime_url, "--api-key", emu.api_key, "--secret", SECRET,
            "--ledger", ":memory:", "--heartbeat", "0", "--max-sessions-per-user", "0", *extra,
        ],
        stdout=subprocess.PIPE, stderr=log, text=True, env=env, preexec_fn=limit,  # type: ignore[arg-type]
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"the proxy did not start: {line}")
    return process, int(line.rsplit(":", 1)[1].split("/", 1)[0])


def open_half_sent(
    port: int, count: int, addresses: int, complete: bool = False
) -> list[socket.socket]:
    request = (
        f"GET /v1/stream?model=lucy-2.1&token=x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + ("\r\n" if complete else "")
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
        sock.setblocking(False)
        held.append(sock)
    return held


def still_open(sockets: list[socket.socket]) -> int:
    count = 0
    for sock in sockets:
        try:
            if sock.recv(4096):
                count += 1
        except BlockingIOError:
            count += 1
        except OSError:
            pass
    return count


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def health_ms(port: int) -> str:
    started = time.monotonic()
    try:
        with httpx.Client(trust_env=False, timeout=3.0) as http:
            status = http.get(f"http://127.0.0.1:{port}/healthz").status_code
    except httpx.HTTPError:
        return "timeout"
    return f"{(time.monotonic() - started) * 1000:.0f} ms ({status})"


async def session_ok(port: int) -> str:
    url = f"ws://127.0.0.1:{port}/v1/stream?model=lucy-2.1&token={issue_token('bench', SECRET)}"
    try:
        async with websockets.connect(url, open_timeout=3, close_timeout=1) as ws:
            await ws.send('{"type": "prompt", "prompt": "Anime", "enhance_prompt": false}')
            while True:
                frame = await asyncio.wait_for(ws.recv(), 3)
                if '"prompt_ack"' in str(frame):
                    return "ok"
    except Exception as exc:  # any failure is the figure
        return type(exc).__name__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--fd-limit", type=int, default=256)
    parser.add_argument("--addresses", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--handshake-timeout", type=float, default=10.0)
    parser.add_argument("--unguarded", action="store_true")
    parser.add_argument("--refused", action="store_true")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.connections + 512)), hard))

    with Emulator(max_concurrent_sessions=64) as emu, tempfile.TemporaryFile("w+") as log:
        process, port = start_proxy(emu, args.fd_limit, args.handshake_timeout, args.unguarded, log)
        try:
            print(
                f"{args.connections} {'refused' if args.refused else 'half-sent'} upgrades "
                f"from {args.addresses} addresses, proxy "
                f"fd limit {args.fd_limit or 'unchanged'}, "
                f"{'unguarded' if args.unguarded else f'deadline {args.handshake_timeout:g} s'}"
            )
            opened = time.monotonic()
            hostile = open_half_sent(port, args.connections, args.addresses, args.refused)
            print(f"opened {len(hostile)} in {time.monotonic() - opened:.1f} s\n")
            print(f"{'t (s)':>5}  {'held':>5}  {'healthz':>14}  {'session':>14}  {'cpu':>5}  log")
            cpu = cpu_seconds(process.pid)
            for second in range(1, args.seconds + 1):
                tick = time.monotonic()
                health = health_ms(port)
                session = asyncio.run(session_ok(port))
                time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
                now_cpu = cpu_seconds(process.pid)
                print(
                    f"{second:>5}  {still_open(hostile):>5}  {health:>14}  {session:>14}  "
                    f"{now_cpu - cpu:>5.2f}  {os.fstat(log.fileno()).st_size} B"
                )
                cpu = now_cpu
            for sock in hostile:
                sock.close()
        finally:
            process.terminate()
            process.wait(10)
        log.seek(0)
        text = log.read()
    print(
        f"\nlog: {len(text)} bytes, {text.count(chr(10))} lines, "
        f"{text.count('Too many open files')} mention 'Too many open files', "
        f"{text.count('Traceback')} tracebacks"
    )


if __name__ == "__main__":
    main()
