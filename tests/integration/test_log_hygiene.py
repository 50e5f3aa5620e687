"""Every log record of the proxy and emulator processes is redacted, escaped and in the chosen
format, including the tracebacks aiohttp writes for request lines it cannot parse (issue 14's
probe: a NUL byte or a request line over 8190 bytes logged the whole token or key).

The commands run as real subprocesses; their stderr is read after they stop."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import websockets
from proxy_kit import WAIT

ROOT = Path(__file__).resolve().parents[2]
PROXY_KEY = "dct_probe_proxy_key_7f3a9c"
EMULATOR_KEY = "probe-permanent-key-5b1e8d2f"  # no dct_ prefix: found by value, not by shape
USER_TOKEN = "dwp1.eyJzdWIiOiJwcm9iZSJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
SECRET = "log-hygiene-test-secret-0123456789"


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("DECART_API_KEY", None)
    return env


@contextlib.contextmanager
def running(command: list[str], ready: str) -> Iterator[tuple[str, list[str]]]:
    """Run ``command``; yield (its first stdout line containing ``ready``, its stderr lines,
    filled in when it has stopped)."""
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=_env())
    lines: list[str] = []
    try:
        assert process.stdout is not None
        line = ""
        for _ in range(10):
            line = process.stdout.readline()
            if ready in line or not line:
                break
        if ready not in line:
            raise AssertionError(f"did not start: {line!r}")
        yield line, lines
    finally:
        process.terminate()
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(WAIT)
        log.seek(0)
        lines.extend(log.read().splitlines())
        log.close()


def raw_request(port: int, request: bytes) -> bytes:
    """Send bytes as an HTTP request; the first bytes of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(request)
        return sock.recv(200)


def hostile_requests(secret_param: str, secret: str) -> list[bytes]:
    return [
        # a NUL byte after the secret: aiohttp's parser error quotes the request line
        f"GET /v1/stream?model=x&{secret_param}={secret}\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
        # a request line over 8190 bytes
        f"GET /v1/stream?{secret_param}={secret}&pad={'a' * 9000} HTTP/1.1\r\nHost: a\r\n\r\n",
        # the secret's parameter name itself broken: only the value's shape or value is left
        f"GET /v1/stream?model=x&{secret_param[:2]}\x00{secret_param[2:]}={secret} HTTP/1.1\r\n"
        "Host: a\r\n\r\n",
    ]


OPAQUE = "opaque-session-value-4c9e1d7a"  # a custom authenticate hook's credential: no shape


def hostile_headers() -> list[bytes]:
    """Header lines aiohttp's parser refuses and quotes in its error (second adversarial pass)."""
    return [
        f"GET /v1/stream HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {OPAQUE}{'a' * 9000}\r\n\r\n",
        f"GET /v1/stream HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {OPAQUE}\x00\r\n\r\n",
        f"GET /v1/stream HTTP/1.1\r\nHost: a\r\nCookie: session={OPAQUE}\x01\r\n\r\n",
    ]


def test_the_proxy_process_logs_library_tracebacks_as_redacted_json_lines() -> None:
    command = [
        sys.executable, "-m", "decart_widget.proxy", "--port", "0",
        "--upstream-url", "ws://127.0.0.1:9", "--api-key", PROXY_KEY, "--secret", SECRET,
        "--ledger", ":memory:",
    ]  # fmt: skip
    with running(command, "listening on") as (line, stderr):
        port = int(line.rsplit(":", 1)[1].split("/", 1)[0])
        requests = hostile_requests("token", USER_TOKEN) + hostile_requests("api_key", PROXY_KEY)
        for request in [*requests, *hostile_headers()]:
            assert raw_request(port, request.encode("latin-1")).startswith(b"HTTP/1.")
    assert stderr, "the proxy logged nothing"
    records = []
    for text in stderr:
        try:
            records.append(json.loads(text))
        except ValueError:
            pytest.fail(f"not a JSON log line: {text!r}")
    errors = [r for r in records if r["logger"].startswith("aiohttp")]
    assert errors, "aiohttp's parser errors were not logged"
    assert all("exc" in r or "error" in r["event"].lower() for r in errors)
    whole = "\n".join(stderr)
    for secret in (USER_TOKEN, USER_TOKEN.split(".")[2], PROXY_KEY, SECRET, OPAQUE):
        assert secret not in whole


def test_the_emulator_process_logs_no_key_and_no_forged_line() -> None:
    command = [
        sys.executable, "-m", "decart_widget", "emulator", "--port", "0",
        "--api-key", EMULATOR_KEY,
    ]  # fmt: skip
    forged = "2026-01-01 00:00:00,000 INFO decart_widget.emulator._app: FORGED admin logged in"
    with running(command, "API URL") as (line, stderr):
        port = int(line.rsplit(":", 1)[1])
        for request in hostile_requests("api_key", EMULATOR_KEY):
            assert raw_request(port, request.encode("latin-1")).startswith(b"HTTP/1.")
        model = quote(f"lucy-2.1\n{forged}\r\n{forged}", safe="")
        url = f"ws://127.0.0.1:{port}/v1/stream?api_key={EMULATOR_KEY}&model={model}"

        async def refused() -> int | None:
            async with websockets.connect(url) as ws:
                with contextlib.suppress(websockets.ConnectionClosed):
                    while True:
                        await ws.recv()
            return ws.close_code

        import asyncio

        assert asyncio.run(refused()) == 4004
    assert stderr, "the emulator logged nothing"
    whole = "\n".join(stderr)
    assert EMULATOR_KEY not in whole
    assert "Error handling request" in whole  # the parser errors were logged, cleaned
    assert not any(text.lstrip().startswith(forged[:24]) for text in stderr), whole
    assert "FORGED admin logged in" in whole  # still there, escaped on the refusal's line
