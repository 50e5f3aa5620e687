"""Lifecycle: start/stop from sync and async code, clean shutdown (no thread, task or socket left),
the CLI entry point, and no key in any log line."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from test_emulator_kit import StreamClient, mint

from decart_widget.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]


def _threads() -> set[tuple[int | None, str]]:
    return {(t.ident, t.name) for t in threading.enumerate()}


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_stop_closes_sessions_and_leaves_nothing_behind() -> None:
    before = _threads()
    emu = Emulator(tick_seconds=0.2).start()
    assert any(name.startswith("decart-emulator-") for _, name in _threads())

    async def scenario() -> tuple[tuple[int | None, str | None], ...]:
        media = await StreamClient.connect(emu)
        control = await StreamClient.connect(emu)
        await media.prompt("invert")
        await media.offer()
        await media.frame()
        await control.prompt("just control")
        await asyncio.to_thread(emu.stop)  # stop() blocks: keep this loop serving the clients
        closes = (await media.wait_closed(), await control.wait_closed())
        await media.close()
        await control.close()
        return closes

    closes = asyncio.run(scenario())
    assert closes == ((1001, "server_shutdown"), (1001, "server_shutdown"))
    assert [(s.end_reason, s.close_code) for s in emu.sessions] == [
        ("server_shutdown", 1001),
        ("server_shutdown", 1001),
    ]
    assert _threads() == before  # the loop thread, executor and decoder threads are all gone
    assert _refuses(emu.port)
    emu.stop()  # idempotent


def test_start_is_idempotent_and_the_context_manager_stops() -> None:
    with Emulator() as emu:
        assert emu.start() is emu
        port = emu.port
        assert emu.api_url == f"http://127.0.0.1:{port}"
        assert emu.realtime_url == f"ws://127.0.0.1:{port}"
        assert httpx.get(f"{emu.api_url}/health", trust_env=False).status_code == 200
        assert "dct_local_emulator" not in repr(emu)
    assert not emu.running
    assert _refuses(port)
    assert not any(name.startswith("decart-emulator") for _, name in _threads())


def test_urls_before_start_need_a_port() -> None:
    with pytest.raises(RuntimeError, match="start"):
        _ = Emulator().api_url
    assert Emulator(port=8123).realtime_url == "ws://127.0.0.1:8123"


def test_a_taken_port_fails_start_clearly() -> None:
    with Emulator() as first:
        second = Emulator(port=first.port)
        with pytest.raises(OSError):
            second.start()
        assert not second.running
    assert not any(name.startswith("decart-emulator") for _, name in _threads())


async def test_works_from_async_code_and_can_restart() -> None:
    emu = Emulator()
    for _ in range(2):
        await asyncio.to_thread(emu.start)
        client = await StreamClient.connect(emu)
        assert (await client.prompt("hi"))["success"] is True
        await client.close()
        await asyncio.to_thread(emu.stop)
    assert [s.end_reason for s in emu.sessions] == ["disconnect", "disconnect"]


async def test_no_key_reaches_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with Emulator() as emu:
        token = await mint(emu)
        client = await StreamClient.connect(emu, api_key=token)
        await client.prompt("anime")
        await client.offer()
        await client.frame()
        await client.close()
        bad = await StreamClient.connect(emu, api_key="dct_wrong_key_value")
        await bad.wait_closed()
        await emu.wait_until_async(lambda: emu.sessions[0].end_reason is not None)
    ours = [r for r in caplog.records if r.name.startswith(("decart_widget", "aiohttp"))]
    assert any(r.name == "decart_widget.emulator.access" for r in ours)
    text = "\n".join(r.getMessage() for r in ours)
    for secret in (token, token[3:], emu.api_key, "dct_wrong_key_value", "api_key="):
        assert secret not in text


def test_serve_forever_prints_where_and_which_key_then_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = (
        "from decart_widget.emulator import serve_forever; "
        "serve_forever('127.0.0.1', 0, 'dct_cli_test_key')"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline().strip() for _ in range(3)]
            assert lines[0].startswith("API URL:      http://127.0.0.1:"), lines
            api_url = lines[0].split()[-1]
            assert lines[1] == "Realtime URL: " + api_url.replace("http://", "ws://")
            assert lines[2] == "API key:      dct_cli_test_key"
            response = httpx.get(
                f"{api_url}/v1/realtime/quota",
                headers={"X-API-KEY": "dct_cli_test_key"},
                trust_env=False,
            )
            assert response.status_code == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
