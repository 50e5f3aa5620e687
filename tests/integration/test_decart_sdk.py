"""Decart's own Python SDK (``decart[realtime]`` 0.2.x, unmodified) completes a realtime session
against the emulator, directly and through the proxy: Gen-B handshake with
``livekit_early_room_info``, its initial prompt after the room info, LiveKit room, pixels
transformed, ``set_prompt`` changing them, ticks.

The SDK is not a dependency of this project. The test runs decart_sdk_session.py in the
interpreter named by ``DECART_SDK_PYTHON`` (e.g. a throwaway venv:
``python -m venv /tmp/decart-venv && /tmp/decart-venv/bin/pip install 'decart[realtime]' numpy``),
or in this one when it has the SDK; otherwise it skips.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from proxy_kit import run_emulator, run_proxies, wait_for

from decart_widget.emulator import Emulator

SCRIPT = Path(__file__).with_name("decart_sdk_session.py")


def _sdk_python() -> str:
    named = os.environ.get("DECART_SDK_PYTHON")
    if named:
        return named
    if importlib.util.find_spec("decart") is not None:
        return sys.executable
    pytest.skip("Decart's Python SDK is not installed (DECART_SDK_PYTHON: a venv that has it)")


async def _run_sdk(api_url: str, realtime_url: str, api_key: str) -> list[dict[str, Any]]:
    """Run decart_sdk_session.py; its steps, after checking it passed them all."""
    process = await asyncio.create_subprocess_exec(
        _sdk_python(),
        str(SCRIPT),
        api_url,
        realtime_url,
        api_key,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    steps = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert process.returncode == 0, (steps, err.decode()[-2000:])
    assert [step["step"] for step in steps] == [
        "connected",
        "initial prompt applied",
        "set_prompt acked",
        "prompt changed the pixels",
        "generating",
        "disconnected",
    ]
    return steps


async def test_decarts_python_sdk_completes_a_session() -> None:
    _sdk_python()
    with Emulator() as emu:
        steps = await _run_sdk(emu.api_url, emu.realtime_url, emu.api_key)
        session = emu.sessions[0]
        assert session.transport == "livekit"
        assert steps[0]["session_id"] == session.id
        assert session.prompts_applied[:2] == ["invert", "noir"]
        assert session.user_agent is not None and "decart" in session.user_agent.lower()
        emu.wait_until(lambda: emu.sessions[0].end_reason is not None)


async def test_decarts_python_sdk_through_the_proxy() -> None:
    _sdk_python()
    emulator = run_emulator()
    emu = next(emulator)
    proxies = run_proxies(emu)
    try:
        proxy = await (await anext(proxies))()
        # The SDK sends the proxy's user token as its api_key; the media goes to the room.
        await _run_sdk(emu.api_url, proxy.realtime_url, proxy.issue_token("sdk-user"))
        session = emu.sessions[0]
        assert (session.transport, session.key_kind) == ("livekit", "permanent")

        async def ended() -> bool:
            rows = await proxy.ledger.sessions("sdk-user")
            return bool(rows) and rows[0].ended_at is not None

        await wait_for(ended, what="the proxy's ledger to record the session's end")
        [row] = await proxy.ledger.sessions("sdk-user")
        assert row.upstream_session_id == session.id
        assert row.seconds >= 1
    finally:
        await proxies.aclose()
        emulator.close()
